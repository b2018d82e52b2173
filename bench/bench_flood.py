"""A flood of big frames into the device node: latency and memory of the normal frames.

The camera node sends its normal frames (32x32 digits, 5 Hz, frame id
``camera``) to the device node, which answers them alone (no edge: the
default device-only plan). After ``--phase`` seconds a second publisher
process floods the same image topic with ``--flood-side`` x 3/4 of it bgr8
frames (default 4000x3000, 12 megapixels, 36 MB each) at ``--flood-hz`` (30)
for ``--phase`` seconds; then ``--phase`` seconds more without it. For each
phase: the normal frames answered out of those sent, their latency (median,
p95, worst) and the device node's resident memory (VmRSS, sampled 5 times a
second), plus the device's own counts (dropped on arrival as oversized,
dropped behind).

Three cases (case_limits): the flood filtered out by DDS (its frames are
wider and taller than the default max_image_width x max_image_height,
3840x2160: the device's reader has a content filter), refused by the node
(width and height raised: it takes each frame and drops it by its bytes, over
max_image_bytes, a 4K RGBA frame), and accepted (every limit raised: each
flood frame is converted and competes with the camera's for the
newest-frame slot). Frames this large only arrive with
a shared-memory segment that holds several, so every process here loads a
Fast DDS profile made for the bench from config/fastdds.xml: shared memory
only, a 256 MB segment
(with UDPv4 beside it, as in config/fastdds.xml, Fast DDS cut every frame into
64 KB fragments and the device node's own memory grew by about 380 MB during
the flood instead of about 140 MB: measured once, 5 s phases).

    scripts/run.sh python bench/bench_flood.py [--phase 10] [--label after]
        [--cases filtered,refused,accepted]

Writes bench/results/flood.json (one entry per --label) and docs/flood.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine
from tqdm import tqdm

DOCS = Path(__file__).resolve().parent.parent / 'docs'
NS = '/flood'
CAMERA_HZ = 5.0
SEGMENT_BYTES = 256 * 1024 * 1024

def bench_profile() -> str:
    """config/fastdds.xml with shared memory only and a SEGMENT_BYTES segment
    (everything else as shipped)."""
    from edgent_ros import dds_profile
    text = dds_profile.shipped_profile().read_text()
    text = re.sub(r'<segment_size>\d+</segment_size>',
                  f'<segment_size>{SEGMENT_BYTES}</segment_size>', text)
    users = re.search(r'<userTransports>.*?</userTransports>', text, re.S)
    kept = users.group(0).replace('<transport_id>edgent_udp</transport_id>', '')
    return text[:users.start()] + kept + text[users.end():]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) in MB: all resident pages, and the process's own
    (VmRSS also counts the pages of other processes' shared-memory segments
    it has read, which DDS maps in)."""
    found = {}
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            name = line.split(':')[0]
            if name in ('VmRSS', 'RssAnon'):
                found[name] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return found.get('VmRSS', 0.0), found.get('RssAnon', 0.0)


def publish_flood(side: int, hz: float, seconds: float, start_at: float) -> int:
    """The flood publisher (run as its own process with --publish), from
    ``start_at`` (time.time()) for ``seconds``."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    from edgent_ros.qos import IMAGE_QOS

    rclpy.init()
    node = rclpy.create_node('flood_publisher')
    pub = node.create_publisher(Image, f'{NS}/image', IMAGE_QOS)
    width, height = side, side * 3 // 4
    msg = Image(height=height, width=width, encoding='bgr8', step=width * 3)
    msg.header.frame_id = 'flood'
    msg.data = np.random.default_rng(0).integers(0, 256, width * height * 3,
                                                 dtype=np.uint8).tobytes()
    time.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds
    next_at, sent = time.monotonic(), 0
    while time.monotonic() < end:
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        sent += 1
        next_at += 1.0 / hz
        time.sleep(max(0.0, next_at - time.monotonic()))
    node.destroy_node()
    rclpy.shutdown()
    print(f'sent {sent}', flush=True)
    return 0


CASES = ('filtered', 'refused', 'accepted')


def case_limits(case: str, side: int) -> dict[str, int]:
    """The device's image limits in each case, for a flood ``side`` wide:
    ``filtered``, the defaults (a 4000x3000 flood is wider and taller than
    3840x2160: the DDS content filter drops it); ``refused``, width and height
    raised to the flood's (it reaches the node, which drops it by its bytes);
    ``accepted``, all raised (every flood frame is converted and competes with
    the camera's for the newest-frame slot)."""
    default = {'max_image_bytes': 3840 * 2160 * 4, 'max_image_width': 3840,
               'max_image_height': 2160}
    wide = {'max_image_width': max(3840, side), 'max_image_height': max(2160, side * 3 // 4)}
    flood_bytes = side * (side * 3 // 4) * 3
    return {'filtered': default, 'refused': default | wide,
            'accepted': default | wide | {'max_image_bytes': 2 * flood_bytes}}[case]


def case_name(case: dict) -> str:
    limits = case.get('limits', {'max_image_bytes': case.get('max_image_bytes')})
    text = ', '.join(f'{k.removeprefix("max_image_")} {v:,}' for k, v in limits.items())
    return f"{case.get('case', 'max_image_bytes')} ({text})"


def run_case(case: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from edgent_ros.bringup import stop_processes
    from edgent_ros_interfaces.msg import FrameLabel, InferenceResult

    limits = case_limits(case, args.flood_side)
    device = subprocess.Popen(
        ['device_node', '--ros-args', '-r', f'__ns:={NS}', '-r', '__node:=device',
         *[a for k, v in limits.items() for a in ('-p', f'{k}:={v}')]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    camera = subprocess.Popen(
        ['camera_node', '--ros-args', '-r', f'__ns:={NS}', '-p', f'rate_hz:={CAMERA_HZ}'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = Node('flood_bench')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    answers: list[tuple[float, float]] = []  # (capture time, latency ms) of normal frames
    flood_answers: list[float] = []
    captured: list[float] = []  # the camera's frames (its FrameLabel, one per frame)
    counts: dict[str, str] = {}
    rss: list[tuple[float, float, float]] = []

    def stamp(header: object) -> float:
        return header.stamp.sec + header.stamp.nanosec * 1e-9

    def on_result(msg: InferenceResult) -> None:
        if msg.header.frame_id == 'flood':
            flood_answers.append(stamp(msg.header))
        else:
            answers.append((stamp(msg.header), float(msg.latency_ms)))

    def on_diag(msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.startswith(f'{NS}/device'):
                counts.update({kv.key: kv.value for kv in s.values})

    node.create_subscription(InferenceResult, f'{NS}/result', on_result, 200)
    node.create_subscription(FrameLabel, f'{NS}/labels',
                             lambda m: captured.append(stamp(m.header)), 200)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 20)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            rss.append((time.time(), *rss_mb(device.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    flood = None
    try:
        start = time.monotonic()
        while not answers and time.monotonic() - start < 120:  # warm
            executor.spin_once(timeout_sec=0.1)
        sampler.start()
        # Phases in wall time (the stamps of the frames, on the system clock).
        t0 = time.time() + 2.0
        bounds = [t0 + i * args.phase for i in range(4)]
        # Started now, flooding from the second phase on the dot.
        flood = subprocess.Popen(
            [sys.executable, __file__, '--publish', '--flood-side', str(args.flood_side),
             '--flood-hz', str(args.flood_hz), '--phase', str(args.phase),
             '--start-at', str(bounds[1])],
            env=env, stdout=subprocess.PIPE, text=True)
        with tqdm(total=round(bounds[3] + 3.0 - time.time()), unit='s',
                  desc=case) as bar:
            while (now := time.time()) < bounds[3] + 3.0:  # and answers still coming
                executor.spin_once(timeout_sec=0.05)
                if now - bar.start_t >= bar.n + 1:
                    bar.update(1)
        flood_sent = flood.communicate(timeout=60)[0] if flood is not None else ''
    finally:
        stop.set()
        stop_processes([p for p in (camera, device, flood) if p is not None])
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()

    phases = {}
    for name, (a, b) in zip(('before', 'during', 'after'), itertools.pairwise(bounds),
                            strict=True):
        lat = sorted(ms for t, ms in answers if a <= t < b)
        mem = [mb for t, mb, _ in rss if a <= t < b]  # sampled while it ran
        own = [mb for t, _, mb in rss if a <= t < b]
        phases[name] = {
            'answered': len(lat), 'sent': sum(a <= t < b for t in captured),
            'median_ms': statistics.median(lat) if lat else None,
            'p95_ms': lat[int(0.95 * (len(lat) - 1))] if lat else None,
            'worst_ms': lat[-1] if lat else None,
            'rss_max_mb': max(mem) if mem else None, 'rss_end_mb': mem[-1] if mem else None,
            'anon_max_mb': max(own) if own else None, 'anon_end_mb': own[-1] if own else None,
            'flood_answered': sum(a <= t < b for t in flood_answers)}
    sent = flood_sent.split()[-1] if flood_sent.strip() else '0'
    each_s = [(round(t - t0, 1), round(anon)) for t, _, anon in rss[::5]]  # about 1 s apart
    return {'case': case, 'limits': limits, 'phases': phases, 'flood_sent': int(sent),
            'anon_mb_by_s': each_s,
            'normal_latency': [(round(t - t0, 2), round(ms, 1)) for t, ms in answers
                               if t >= bounds[0]],
            'device_counts': {k: counts.get(k) for k in (
                'received', 'frames', 'oversized_images', 'dropped_behind', 'results')}}


def report(data: dict) -> None:
    lines = ['# Flood: big frames into the device node', '',
             'Normal frames: the camera node\'s 32x32 digits at 5 Hz, answered on the device '
             'alone. Flood: a second process publishing bgr8 frames on the same topic. Device '
             'memory is the node\'s VmRSS. Command: `scripts/run.sh python bench/bench_flood.py '
             '--label <label>`.', '']
    for label, entry in data.items():
        m = entry['machine']
        lines += [f"## {label}", '',
                  f"{entry['date']} on {m['cpu']} ({m['cpus']} cores), commit {entry['commit']}; "
                  f"flood {entry['flood']}.", '',
                  '| case (device limits) | phase | normal answered / sent | median | p95 | '
                  'worst | RSS max | RSS at end | own (anon) max | own at end | '
                  'flood frames answered |',
                  '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']

        def ms(v: float | None) -> str:
            return '-' if v is None else f'{v:.0f} ms'

        def mb(v: float | None) -> str:
            return '-' if v is None else f'{v:.0f} MB'

        for case in entry['cases']:
            for name, p in case['phases'].items():
                lines.append(f"| {case_name(case)} | {name} | {p['answered']} / "
                             f"{p['sent']} | {ms(p['median_ms'])} | {ms(p['p95_ms'])} | "
                             f"{ms(p['worst_ms'])} | {mb(p['rss_max_mb'])} | "
                             f"{mb(p['rss_end_mb'])} | {mb(p.get('anon_max_mb'))} | "
                             f"{mb(p.get('anon_end_mb'))} | {p['flood_answered']} |")
        lines += ['', 'Device counts at the end (received, computed, oversized, dropped '
                  'behind): ' + '; '.join(
                      f"{c.get('case', c.get('max_image_bytes'))}: {c['device_counts']}, "
                      f"flood frames sent {c['flood_sent']}" for c in entry['cases']), '']
    plot(data)
    lines += ['![flood](flood.png) (the newest label)', '']
    (DOCS / 'flood.md').write_text('\n'.join(lines))
    print('\n'.join(lines))


def plot(data: dict) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    entry = list(data.values())[-1]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for case, style in zip(entry['cases'], ('b', 'r', 'g'), strict=False):
        label = case_name(case)
        lat = case.get('normal_latency', [])
        ax.plot([t for t, _ in lat], [ms for _, ms in lat], style + '.', ms=4, label=label)
        mem = case.get('anon_mb_by_s', [])
        bx.plot([t for t, _ in mem], [mb for _, mb in mem], style + '-', label=label)
    phase = float(entry['flood'].split(' for ')[-1].rstrip(' s'))
    for a in (ax, bx):
        a.axvspan(phase, 2 * phase, color='k', alpha=0.08)
    ax.set_yscale('log')
    ax.set_ylabel('normal frame latency, ms')
    ax.legend(fontsize=7)
    bx.set_ylabel('device node memory (RssAnon), MB')
    bx.set_xlabel('time, s (grey: the flood)')
    fig.tight_layout()
    fig.savefig(DOCS / 'flood.png', dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--phase', type=float, default=10.0, help='seconds per phase')
    parser.add_argument('--flood-side', type=int, default=4000, help='flood frame width')
    parser.add_argument('--flood-hz', type=float, default=30.0)
    parser.add_argument('--label', default='after')
    parser.add_argument('--cases', default=','.join(CASES),
                        help='comma-separated, of: ' + ', '.join(CASES) +
                             ' (see case_limits; default: all)')
    parser.add_argument('--publish', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--start-at', type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        return publish_flood(args.flood_side, args.flood_hz, args.phase, args.start_at)
    flood_bytes = args.flood_side * (args.flood_side * 3 // 4) * 3
    with tempfile.NamedTemporaryFile('w', suffix='.xml', delete=False) as f:
        f.write(bench_profile())
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=f.name, PYTHONUNBUFFERED='1')
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = f.name
    try:
        chosen = [c for c in args.cases.split(',') if c]
        if not chosen or set(chosen) - set(CASES):
            parser.error(f'--cases: choose from {", ".join(CASES)}')
        cases = [run_case(c, args, env) for c in chosen]
    finally:
        os.unlink(f.name)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / 'flood.json'
    data = json.loads(out.read_text()) if out.is_file() else {}
    data[args.label] = {'machine': machine(), 'date': time.strftime('%Y-%m-%d %H:%M UTC',
                                                                    time.gmtime()),
                        'commit': commit, 'cases': cases,
                        'flood': f'{args.flood_side}x{args.flood_side * 3 // 4} bgr8 '
                                 f'({flood_bytes:,} bytes) at {args.flood_hz:g} Hz for '
                                 f'{args.phase:g} s'}
    out.write_text(json.dumps(data, indent=1))
    report(data)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
