"""A stand-in for a third-party camera driver, and a frame counter.

Plain rclpy, sensor-data QoS (best effort, depth 5), ``sensor_msgs/Image``
bgr8, as a camera driver publishes: it does NOT apply edgent_ros's DDS
profile itself. Whatever Fast DDS configuration it runs with comes from the
environment its caller gives it (FASTDDS_DEFAULT_PROFILES_FILE), exactly as
for a driver started with ``ros2 run``. Used by the delivery test and bench.

    python -m edgent_ros.demo.image_stream publish --width 640 --height 480 --rate 10 --count 30
    python -m edgent_ros.demo.image_stream count --timeout 20

``publish`` waits for ``--subscribers`` matched subscriptions (and a short
settle, so the subscriber has matched it too), sends ``--count`` frames at
``--rate`` Hz (header.frame_id = the frame's index) and exits. ``count``
counts frames until SIGINT, ``--expect`` frames or ``--timeout`` seconds,
then prints one JSON line: received, distinct frames, mean latency (header
stamp to arrival, same clock), first and last index.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time


def _node(name: str) -> object:
    import rclpy
    from rclpy.node import Node

    rclpy.init(args=None)
    return Node(name)


def publish(args: argparse.Namespace) -> int:
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    node = _node('image_stream_publisher')
    pub = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
    deadline = time.monotonic() + args.match_timeout
    while pub.get_subscription_count() < args.subscribers:
        if time.monotonic() > deadline:
            print(f'image_stream: no subscriber on {args.topic} after {args.match_timeout} s',
                  file=sys.stderr, flush=True)
            node.destroy_node()
            rclpy.try_shutdown()
            return 3
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(args.settle)
    msg = Image(height=args.height, width=args.width, encoding='bgr8', is_bigendian=0,
                step=3 * args.width)
    # Fixed content: what is measured is delivery, not the cost of making pixels.
    msg.data = np.random.default_rng(0).integers(
        0, 256, args.height * args.width * 3, dtype=np.uint8).tobytes()
    period = 1.0 / args.rate
    start = time.monotonic()
    for i in range(args.count):
        delay = start + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = str(i)
        pub.publish(msg)
    time.sleep(args.linger)  # best effort: stay until the last frames left
    print(json.dumps({'sent': args.count, 'seconds': round(time.monotonic() - start, 3)}),
          flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def count(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    node = _node('image_stream_counter')
    seen: set[int] = set()
    latencies: list[float] = []
    received = [0]

    def on_image(msg: Image) -> None:
        now = node.get_clock().now().nanoseconds
        received[0] += 1
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies.append((now - stamp) / 1e6)
        try:
            seen.add(int(msg.header.frame_id))
        except ValueError:
            pass

    node.create_subscription(Image, args.topic, on_image, qos_profile_sensor_data)
    stop = {'now': False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__('now', True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__('now', True))
    deadline = time.monotonic() + args.timeout
    print('ready', flush=True)
    while not stop['now'] and time.monotonic() < deadline and \
            not (args.expect and received[0] >= args.expect):
        rclpy.spin_once(node, timeout_sec=0.05)
    latencies.sort()
    print(json.dumps({
        'received': received[0], 'distinct': len(seen),
        'first': min(seen) if seen else None, 'last': max(seen) if seen else None,
        'latency_ms_median': round(latencies[len(latencies) // 2], 2) if latencies else None,
    }), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='image_stream', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='mode', required=True)
    p = sub.add_parser('publish', help='send bgr8 frames')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--rate', type=float, default=10.0, help='frames per second')
    p.add_argument('--count', type=int, default=30)
    p.add_argument('--subscribers', type=int, default=1,
                   help='matched subscriptions to wait for before sending')
    p.add_argument('--match-timeout', type=float, default=15.0)
    p.add_argument('--settle', type=float, default=1.0,
                   help='seconds between matching and the first frame')
    p.add_argument('--linger', type=float, default=0.5)
    p.add_argument('--topic', default='image')
    c = sub.add_parser('count', help='count frames received')
    c.add_argument('--expect', type=int, default=0, help='stop after this many (0: never)')
    c.add_argument('--timeout', type=float, default=60.0)
    c.add_argument('--topic', default='image')
    args = parser.parse_args(argv)
    if args.mode == 'publish':
        if args.width < 1 or args.height < 1 or args.rate <= 0 or args.count < 1:
            parser.error('--width, --height, --rate and --count must be positive')
        return publish(args)
    return count(args)


if __name__ == '__main__':
    raise SystemExit(main())
