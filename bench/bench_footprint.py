"""Footprint: resident memory per process and per role, and the device node's CPU per frame.

Starts ``edgent-bringup --role all`` (each node a process, the camera at its
configured rate, 32x32 frames), waits for the pipeline to settle, then over
``--window`` seconds reads every process's resident set (VmRSS) and CPU time
(/proc/<pid>/stat) and counts the frames answered on /device/result. The
device node's CPU per frame beyond the network is its CPU time per frame
minus the median compute the frames report (InferenceResult.device_ms).
Then the same with the device side in one process (``--single-process``),
the form the README recommends on a Pi.

    scripts/run.sh python bench/bench_footprint.py [--window 10] [--label after]

Prints a table and writes bench/results/footprint.json (one entry per
``--label``, so a before and an after run sit side by side) and
docs/footprint.md (every label in the JSON, as tables).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine

DOCS = Path(__file__).resolve().parent.parent / 'docs'

TICKS = os.sysconf('SC_CLK_TCK')
STARTED = re.compile(r'started (\S+) \(pid (\d+)\)')


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def measure(cmd: list[str], warmup_s: float, window_s: float, expect: int) -> dict[str, object]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from edgent_ros_interfaces.msg import InferenceResult

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    pids: dict[str, int] = {}
    if '--single-process' in cmd:
        pids['device side (one process)'] = proc.pid
    else:
        while len(pids) < expect:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f'bench_footprint: bringup ended early: {cmd}')
            match = STARTED.search(line)
            if match:
                pids[match.group(1)] = int(match.group(2))
    rclpy.init()
    node = Node('footprint_bench')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    results: list[InferenceResult] = []
    node.create_subscription(InferenceResult, '/device/result', results.append, 50)
    try:
        end = time.monotonic() + warmup_s
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        results.clear()
        cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        rss: dict[str, list[float]] = {name: [] for name in pids}
        while time.monotonic() < t0 + window_s:
            executor.spin_once(timeout_sec=0.05)
            if len(rss[next(iter(pids))]) < 10 * (time.monotonic() - t0):
                for name, pid in pids.items():
                    rss[name].append(rss_mb(pid))
        elapsed = time.monotonic() - t0
        cpu = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    frames = len(results)
    compute_ms = statistics.median(r.device_ms for r in results) if results else 0.0
    return {
        'command': ' '.join(Path(cmd[0]).name if i == 0 else a for i, a in enumerate(cmd)),
        'window_s': elapsed, 'frames': frames, 'fps': frames / elapsed,
        'compute_ms_per_frame': compute_ms,
        'processes': {name: {'rss_mb': max(rss[name]), 'cpu_share': cpu[name] / elapsed,
                             'cpu_ms_per_frame': 1e3 * cpu[name] / frames if frames else None}
                      for name in pids},
    }


def report(label: str, runs: dict[str, dict[str, object]]) -> None:
    for form, run in runs.items():
        print(f'\n[{label}] {form}: {run["command"]}')
        print(f'  {run["frames"]} frames in {run["window_s"]:.1f} s ({run["fps"]:.1f}/s), '
              f'compute {run["compute_ms_per_frame"]:.2f} ms/frame')
        total = cpu_total = 0.0
        for name, p in run['processes'].items():
            per = p['cpu_ms_per_frame']
            per_text = f'{per:6.1f} ms CPU/frame' if per is not None else ''
            print(f'  {name:34s} {p["rss_mb"]:7.0f} MB  {100 * p["cpu_share"]:5.1f}% CPU  '
                  f'{per_text}')
            if name.startswith('/device') or name.startswith('device side'):
                total += p['rss_mb']
                cpu_total += p['cpu_ms_per_frame'] or 0.0
        print(f'  device side total               {total:7.0f} MB  {cpu_total:6.1f} ms CPU/frame')
        run['device_side_rss_mb'] = total
        run['device_side_cpu_ms_per_frame'] = cpu_total
        device = run['processes'].get('/device/device')
        if device and device['cpu_ms_per_frame'] is not None:
            beyond = device['cpu_ms_per_frame'] - run['compute_ms_per_frame']
            run['device_cpu_ms_per_frame_beyond_compute'] = beyond
            print(f'  device CPU per frame beyond the network: {beyond:.1f} ms')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--window', type=float, default=10.0, help='steady-state window, s')
    parser.add_argument('--warmup', type=float, default=15.0, help='settling time, s')
    parser.add_argument('--label', default='current', help='name of this run in the results')
    parser.add_argument('--only', choices=('processes', 'single'), default=None,
                        help='measure one form only')
    args = parser.parse_args()
    bringup = 'edgent-bringup'
    runs = {}
    if args.only != 'single':
        runs['processes'] = measure([bringup, '--role', 'all'], args.warmup, args.window, 6)
    if args.only == 'processes':
        report(args.label, runs)
        return 0
    edge = subprocess.Popen([bringup, '--role', 'edge'], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        runs['device in one process'] = measure(
            [bringup, '--role', 'device', '--single-process'], args.warmup, args.window, 1)
    finally:
        os.killpg(edge.pid, signal.SIGINT)
        edge.wait(timeout=20)
    report(args.label, runs)
    path = RESULTS / 'footprint.json'
    previous = json.loads(path.read_text()) if path.is_file() else {}
    previous[args.label] = {'machine': machine(), 'runs': runs}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(previous, indent=1) + '\n')
    (DOCS / 'footprint.md').write_text(markdown(previous))
    print(f'\nwritten: {path}, {DOCS / "footprint.md"}')
    return 0


def markdown(all_runs: dict[str, dict[str, object]]) -> str:
    """docs/footprint.md: one table per labelled run."""
    lines = ['# Footprint: memory and CPU of each process', '',
             'Written by `scripts/run.sh python bench/bench_footprint.py --label LABEL` '
             '(`edgent-bringup` with the default parameter files: camera replaying digits at '
             '10 Hz, 32x32 frames; resident memory is the largest VmRSS seen over the window, '
             'CPU the process\'s user + system time over the window).', '']
    for label, entry in all_runs.items():
        m = entry['machine']
        lines += [f'## {label}', '', f'{m.get("date", "")}, {m.get("cpu", "")}, '
                  f'{m.get("cpus", "")} CPUs, torch {m.get("torch", "")}.', '']
        for form, run in entry['runs'].items():
            lines += [f'**{form}** (`{run["command"]}`): {run["frames"]} frames in '
                      f'{run["window_s"]:.0f} s; compute {run["compute_ms_per_frame"]:.2f} '
                      'ms per frame.', '',
                      '| process | resident MB | CPU | CPU ms per frame |',
                      '|---|---:|---:|---:|']
            for name, p in run['processes'].items():
                per = p['cpu_ms_per_frame']
                lines.append(f'| {name} | {p["rss_mb"]:.0f} | {100 * p["cpu_share"]:.1f}% | '
                             f'{per:.1f} |' if per is not None else
                             f'| {name} | {p["rss_mb"]:.0f} | {100 * p["cpu_share"]:.1f}% | |')
            lines.append(f'| **device side** | **{run.get("device_side_rss_mb", 0):.0f}** | | '
                         f'**{run.get("device_side_cpu_ms_per_frame", 0):.1f}** |')
            beyond = run.get('device_cpu_ms_per_frame_beyond_compute')
            if beyond is not None:
                lines += ['', f'Device node CPU per frame beyond the network: {beyond:.1f} ms.']
            lines.append('')
    return '\n'.join(lines)


if __name__ == '__main__':
    raise SystemExit(main())
