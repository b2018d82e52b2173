"""Camera-sized images delivered to the device node, with and without edgent_ros's DDS profile.

An independent publisher process (edgent_ros.demo.image_stream: plain rclpy,
sensor-data QoS, as a camera driver publishes) sends bgr8 frames at 640x480
and 1280x720, 10 and 30 Hz, to the device node (``edgent-bringup --role
device --only device``) in another process on this machine. The device
node's /diagnostics key ``received`` counts the images that arrive (before
any is dropped for the node being behind); the bench takes its increase over
each stream.

Modes: ``profile`` (config/fastdds.xml in both processes), ``defaults``
(Fast DDS's defaults in both: EDGENT_DDS_PROFILE=none) and ``device-only``
(the profile in the device node only, as with a camera driver started
without it).

Run: scripts/run.sh python bench/bench_delivery.py [--frames 100] [--modes profile,defaults]
Writes bench/results/delivery.json and docs/delivery.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write

from edgent_ros import dds_profile

DOCS = Path(__file__).resolve().parent.parent / 'docs'
SIZES = ((640, 480), (1280, 720))
RATES = (10.0, 30.0)
MODES = ('profile', 'defaults', 'device-only')
DEVICE = '/device/device'
DDS_VARS = (dds_profile.FASTDDS_VAR, dds_profile.FASTRTPS_VAR, dds_profile.CHOICE_VAR,
            'FASTDDS_BUILTIN_TRANSPORTS')


def base_env(domain: int) -> dict[str, str]:
    """This environment without any DDS profile choice, on a domain of the bench's own."""
    env = {k: v for k, v in os.environ.items() if k not in DDS_VARS}
    env.update({'ROS_DOMAIN_ID': str(domain), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
                'PYTHONUNBUFFERED': '1', 'PYTHONSAFEPATH': '1'})
    return env


def with_profile(env: dict[str, str], on: bool) -> dict[str, str]:
    env = dict(env)
    if on:
        dds_profile.apply(env)
    else:
        env[dds_profile.CHOICE_VAR] = 'none'
    return env


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f'bench_delivery: {name} not found; run through scripts/run.sh')
    return path


class Diagnostics:
    """The device node's latest 'received' figure, from /diagnostics."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node

        rclpy.init()
        self.node = Node('bench_delivery')
        self.latest: tuple[float, int] | None = None
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.on_diag, 10)

    def on_diag(self, msg: object) -> None:
        for status in msg.status:
            if status.name.startswith(DEVICE + ':'):
                values = {kv.key: kv.value for kv in status.values}
                if 'received' in values:  # stamped by the device (same clock)
                    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                    self.latest = (stamp, int(values['received']))

    def fresh(self, timeout_s: float = 10.0) -> int:
        """The first figure the device published after now (messages queued
        before now are older, whenever they are taken)."""
        import rclpy

        since = time.time()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)
            if self.latest is not None and self.latest[0] > since:
                return self.latest[1]
        raise TimeoutError(f'no /diagnostics from {DEVICE} for {timeout_s:.0f} s')

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def stream(env: dict[str, str], width: int, height: int, rate: float, frames: int) -> dict:
    cmd = [sys.executable, '-m', 'edgent_ros.demo.image_stream', 'publish', '--topic',
           '/device/image', '--width', str(width), '--height', str(height), '--rate', str(rate),
           '--count', str(frames), '--match-timeout', '30']
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120 + frames / rate)
    if out.returncode != 0:
        raise RuntimeError(f'publisher failed ({out.returncode}): {out.stderr[-1500:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_mode(mode: str, env: dict[str, str], diag: Diagnostics, frames: int, log_dir: Path,
             bar: object) -> list[dict]:
    from edgent_ros.bringup import stop_processes

    device_env = with_profile(env, mode in ('profile', 'device-only'))
    publisher_env = with_profile(env, mode == 'profile')
    log = open(log_dir / f'device-{mode}.log', 'w')
    device = subprocess.Popen([tool('edgent-bringup'), '--role', 'device', '--only', 'device'],
                              env=device_env, stdout=log, stderr=subprocess.STDOUT)
    rows = []
    try:
        diag.fresh(timeout_s=90.0)  # the device node is up
        for width, height in SIZES:
            for rate in RATES:
                before = diag.fresh()
                sent = stream(publisher_env, width, height, rate, frames)
                time.sleep(1.0)
                after = diag.fresh()
                rows.append({'mode': mode, 'width': width, 'height': height, 'rate_hz': rate,
                             'bytes': width * height * 3, 'sent': sent['sent'],
                             'received': after - before, 'seconds': sent['seconds']})
                bar.set_postfix_str(f'{mode} {width}x{height}@{rate:g}: {after - before}/{frames}')
                bar.update(1)
    finally:
        stop_processes([device])
        log.close()
    return rows


def report(result: dict) -> Path:
    m = result['machine']
    lines = ['# Image delivery to the device node: the DDS profile', '',
             f"Measured {result['started']} on {m['cpu']} ({m['cpus']} cores), "
             f"{result['fastdds']}, net.core.rmem_max {result['rmem_max']}. "
             f"Command: `{result['command']}`.", '',
             'A plain rclpy publisher process (edgent_ros.demo.image_stream: sensor-data QoS, '
             'best effort, as a camera driver) sends bgr8 frames to the device node '
             '(`edgent-bringup --role device --only device`), another process on the same '
             'machine. Received: the increase of the device node\'s /diagnostics `received` '
             'count over the stream (images arriving, before any is dropped for the node '
             'being behind).', '',
             '- **profile**: config/fastdds.xml in both processes (what every edgent_ros process '
             'does by itself; the camera driver given it as the README says).',
             '- **defaults**: Fast DDS\'s defaults in both (`EDGENT_DDS_PROFILE=none`).',
             '- **device-only**: the profile in the device node only, the publisher without it.',
             '', '| mode | image | bytes | rate | sent | received | delivered |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: |']
    for r in result['rows']:
        lines.append(f"| {r['mode']} | {r['width']}x{r['height']} bgr8 | {r['bytes']:,} | "
                     f"{r['rate_hz']:g} Hz | {r['sent']} | {r['received']} | "
                     f"{100 * r['received'] / r['sent']:.0f}% |")
    lines += ['', 'How the profile\'s settings were chosen, and whether shared memory crosses '
              'the testbed\'s network namespaces: docs/design.md, "DDS profile".', '']
    path = DOCS / 'delivery.md'
    path.write_text('\n'.join(lines))
    return path


def fastdds_version() -> str:
    from importlib import metadata

    for dist, name in (('ros-fastdds', 'Fast DDS'), ('ros-fastrtps', 'Fast DDS')):
        try:
            return f'{name} {metadata.version(dist)}'
        except metadata.PackageNotFoundError:
            continue
    return 'Fast DDS (version unknown)'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=100, help='frames per stream (default 100)')
    parser.add_argument('--modes', default=','.join(MODES),
                        help=f'comma-separated, of {", ".join(MODES)} (default all)')
    parser.add_argument('--log-dir', type=Path, default=Path('/tmp/edgent_delivery'))
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(',') if m]
    if args.frames < 1 or not modes or any(m not in MODES for m in modes):
        parser.error(f'--frames must be positive and --modes of {", ".join(MODES)}')
    from tqdm import tqdm

    args.log_dir.mkdir(parents=True, exist_ok=True)
    domain = random.Random(os.getpid()).randint(101, 200)
    env = base_env(domain)
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    diag = Diagnostics()
    rows: list[dict] = []
    try:
        with tqdm(total=len(modes) * len(SIZES) * len(RATES), desc='delivery',
                  unit='stream') as bar:
            for mode in modes:
                rows += run_mode(mode, env, diag, args.frames, args.log_dir, bar)
    finally:
        diag.close()
    print(f'{"mode":12} {"image":>10} {"rate":>6} {"sent":>5} {"received":>9}')
    for r in rows:
        print(f"{r['mode']:12} {r['width']:>5}x{r['height']:<4} {r['rate_hz']:>4g}Hz "
              f"{r['sent']:>5} {r['received']:>9}")
    rmem = Path('/proc/sys/net/core/rmem_max')
    command = 'scripts/run.sh python bench/bench_delivery.py' + \
        ''.join(f' {a}' for a in (argv if argv is not None else sys.argv[1:]))
    result = {'bench': 'delivery', 'started': started, 'machine': machine(),
              'fastdds': fastdds_version(),
              'rmem_max': int(rmem.read_text()) if rmem.is_file() else None,
              'frames_per_stream': args.frames, 'command': command, 'rows': rows}
    path = write('delivery', result)
    print(f'wrote {path} and {report(result)}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
