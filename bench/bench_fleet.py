"""Bench: several robots sharing one or two edges, on the fleet testbed (root).

Each robot is a network namespace of its own, its link to the LAN shaped on
its own (``--rate-kbit``, 2 Mbit/s), running camera, device node (layers
emulated ``--slowdown`` times slower than this CPU), planner and bandwidth
monitor in one process (edgent-bringup --single-process), at ``--fps``. The
edges are namespaces of their own on the same LAN. For 1, 2, 4 and 8 robots
on one edge it runs two variants:

- ``shared``: what issue 19 built: the edge serves earliest deadline first
  and answers at once what cannot meet its deadline, batches what is
  measured to pay, publishes its load; planners add its wait (load_aware);
- ``alone``: both switched off, as before: first in first out, every tensor
  computed, no batch, planners blind to the load.

Then 8 robots on two edges (edges:=auto), and the fault: one of the two
edges killed mid-run. Figures (deadline hit rate, accuracy, edge throughput,
the edge node's CPU and memory per robot served) go to
bench/results/fleet.json, the plot to bench/results/fleet.png, the report to
docs/fleet.md.

    scripts/run.sh python bench/bench_fleet.py                 # everything (~25 min)
    scripts/run.sh python bench/bench_fleet.py --devices 8 --variants shared --no-two-edges
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from edgent_ros import testbed
from edgent_ros.demo.pipeline import emulated_device_overrides, tool, wait_for_line

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    'shared': {'edge': ['edge.service:=edf', 'edge.max_batch:=8'],
               'planner': ['planner.load_aware:=true']},
    'alone': {'edge': ['edge.service:=fifo', 'edge.max_batch:=1'],
              'planner': ['planner.load_aware:=false']},
}


def edge_pid(session: int) -> int | None:
    """The edge_node process started under edgent-bringup's session ``session``."""
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            cmdline = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
        except (OSError, ProcessLookupError):
            continue
        if 'edge_node' in cmdline and 'bringup' not in cmdline:
            return int(entry.name)
    return None


def cpu_s(pid: int | None) -> float:
    if pid is None:
        return float('nan')
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except OSError:
        return float('nan')


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return float('nan')
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def run_one(args: argparse.Namespace, robots: int, edges: int, variant: str, *,
            fault: bool = False, edge_slowdown: float | None = None) -> dict:
    label = f'{robots}robots_{edges}edges_{variant}' + ('_fault' if fault else '') + \
        (f'_edge_x{edge_slowdown:g}' if edge_slowdown else '')
    logs = Path(args.logs) / label
    logs.mkdir(parents=True, exist_ok=True)
    bringup = tool('edgent-bringup')
    v = VARIANTS[variant]
    device_sets = emulated_device_overrides(
        args.slowdown, args.fps, model=args.model, deadline_ms=args.deadline_ms,
        initial_kbps=args.rate_kbit) + v['planner'] + ['planner.edge_hold_s:=3.0']
    with testbed.Fleet(devices=robots, edges=edges, rate_kbit=args.rate_kbit) as fleet:
        edge_procs = []
        for j in range(edges):
            cmd = [bringup, '--role', 'edge', f'namespace:=/edge{j}', f'model:={args.model}']
            cmd += [a for s in v['edge'] for a in ('--set', s)]
            if edge_slowdown:  # a smaller edge: its tails emulated that much slower
                cmd += ['--set', f'edge.emulated_slowdown:={edge_slowdown}']
            edge_procs.append(fleet.spawn(('edge', j), cmd,
                                          stdout=open(logs / f'edge{j}.log', 'w'),
                                          stderr=subprocess.STDOUT))
        for j in range(edges):
            if not wait_for_line(str(logs / f'edge{j}.log'), 'serving model', timeout_s=90.0):
                raise RuntimeError(f'edge {j} did not start: see {logs}/edge{j}.log')
        which = ['edges:=auto'] if edges > 1 else ['edge_namespace:=/edge0']
        for i in range(robots):
            cmd = [bringup, '--role', 'device', '--single-process', f'namespace:=/robot{i}',
                   f'model:={args.model}', 'camera_size:=64x64', *which]
            cmd += [a for s in device_sets for a in ('--set', s)]
            fleet.spawn(('device', i), cmd, stdout=open(logs / f'robot{i}.log', 'w'),
                        stderr=subprocess.STDOUT)
        out = logs / 'collected.json'
        total = args.warmup + args.seconds
        collector = fleet.spawn(
            ('edge', 0), [sys.executable, str(ROOT / 'bench' / 'fleet_collect.py'),
                          '--robots', str(robots), '--edges', str(edges),
                          '--seconds', str(total + 300), '--out', str(out)],
            stdout=open(logs / 'collector.log', 'w'), stderr=subprocess.STDOUT)
        pids = [edge_pid(p.pid) for p in edge_procs]
        # The robots start together on a shared CPU (a minute for eight): the
        # warm-up counts from the last one taking images.
        for i in range(robots):
            if not wait_for_line(str(logs / f'robot{i}.log'), 'taking images', timeout_s=240.0):
                raise RuntimeError(f'robot {i} did not start: see {logs}/robot{i}.log')
        time.sleep(args.warmup)
        t0 = time.monotonic()
        cpu0 = [cpu_s(p) for p in pids]
        killed_at = None
        if fault:
            time.sleep(args.seconds / 2)
            killed_at = time.monotonic()
            fleet.kill(edge_procs[0])
            time.sleep(args.seconds / 2)
        else:
            time.sleep(args.seconds)
        t1 = time.monotonic()
        cpu1 = [cpu_s(p) for p in pids]
        rss = [rss_mb(p) for p in pids]
        collector.send_signal(2)
        collector.wait(timeout=30)
    data = json.loads(out.read_text())
    out = analyse(data, robots, edges, variant, t0, t1, killed_at,
                  [(c1 - c0) / (t1 - t0) for c0, c1 in zip(cpu0, cpu1, strict=True)], rss,
                  label)
    out['edge_slowdown'] = edge_slowdown
    return out


def analyse(data: dict, robots: int, edges: int, variant: str, t0: float, t1: float,
            killed_at: float | None, cpu_share: list[float], rss: list[float],
            label: str) -> dict:
    rs = [r for r in data['results'] if t0 <= r['t'] <= t1]
    n = len(rs)
    labelled = [r for r in rs if r['label'] >= 0]
    per_robot = {}
    for i in range(robots):
        mine = [r for r in rs if r['robot'] == i]
        per_robot[i] = sum(r['met'] for r in mine) / len(mine) if mine else 0.0
    edge_frames = [r for r in rs if not r['fallback'] and r['partition'] < 1000 and
                   r['edge_ms'] > 0]
    loads = [x for x in data['loads'] if t0 <= x['t'] <= t1]
    out = {
        'label': label, 'robots': robots, 'edges': edges, 'variant': variant,
        'seconds': t1 - t0, 'frames': n,
        'deadline_hit_rate': sum(r['met'] for r in rs) / n if n else 0.0,
        'worst_robot_hit_rate': min(per_robot.values()) if per_robot else 0.0,
        'accuracy': (sum(r['class_id'] == r['label'] for r in labelled) / len(labelled)
                     if labelled else float('nan')),
        'fallback_share': sum(r['fallback'] for r in rs) / n if n else 0.0,
        'edge_frames_per_s': len(edge_frames) / (t1 - t0),
        'latency_ms_median': statistics.median(r['latency_ms'] for r in rs) if rs else 0.0,
        'edge_busy_share_mean': statistics.fmean(x['busy'] for x in loads) if loads else 0.0,
        'edge_wait_ms_mean': statistics.fmean(x['wait_ms'] for x in loads) if loads else 0.0,
        'edge_cpu_share': cpu_share, 'edge_rss_mb': rss,
        'edge_cpu_share_per_robot': sum(c for c in cpu_share if c == c) / robots,
        'exits': {str(e): sum(r['exit'] == e for r in rs) for e in sorted({r['exit'] for r in rs})},
    }
    if killed_at is not None:
        out.update(fault_figures(data['results'], robots, killed_at))
    return out


def fault_figures(results: list[dict], robots: int, killed_at: float) -> dict:
    """No frame lost (each robot's frame numbers without a gap across the kill)
    and how long each robot went without an answer after it."""
    lost, silences = 0, []
    for i in range(robots):
        mine = sorted((r for r in results if r['robot'] == i), key=lambda r: r['seq'])
        seqs = [r['seq'] for r in mine]
        lost += sum(b - a - 1 for a, b in itertools.pairwise(seqs) if b > a + 1)
        after = sorted(r['t'] for r in mine if r['t'] >= killed_at - 0.5)
        ts = [killed_at] + [t for t in after if t >= killed_at]
        silences.append(max((b - a for a, b in itertools.pairwise(ts)), default=0.0))
    back = [min((r['t'] - killed_at for r in results if r['robot'] == i and
                 r['t'] > killed_at and not r['fallback']), default=float('inf'))
            for i in range(robots)]
    return {'frames_lost': lost, 'longest_silence_s': max(silences),
            'edge_again_s_max': max(back), 'edge_again_s_median': statistics.median(back)}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for variant, style in (('shared', 'o-'), ('alone', 's--')):
        name = {'shared': 'EDF + load-aware + batching', 'alone': 'both off (FIFO, blind)'}
        for slow, color in ((None, 'C0' if variant == 'shared' else 'C1'),
                             ('q', 'C2' if variant == 'shared' else 'C3')):
            mine = sorted((r for r in runs if r['variant'] == variant and r['edges'] == 1 and
                           'frames_lost' not in r and bool(r.get('edge_slowdown')) == bool(slow)),
                          key=lambda r: r['robots'])
            if not mine:
                continue
            label = name[variant] + (f", edge {mine[0]['edge_slowdown']:g}x slower"
                                     if slow else '')
            xs = [r['robots'] for r in mine]
            for ax, ys in zip(axes, ([100 * r['deadline_hit_rate'] for r in mine],
                                     [100 * r['accuracy'] for r in mine],
                                     [r['edge_frames_per_s'] for r in mine]), strict=True):
                ax.plot(xs, ys, style, color=color, label=label)
    for ax, title in zip(axes, ('deadline met (%)', 'accuracy (%)', 'frames the edge ran / s'),
                         strict=True):
        ax.set_xlabel('robots on one edge')
        ax.set_title(title)
        ax.set_xticks([1, 2, 4, 8])
        ax.grid(alpha=0.3)
    axes[0].axhline(95, color='grey', lw=0.8, ls=':')
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--devices', type=int, nargs='+', default=[1, 2, 4, 8])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--no-two-edges', action='store_true')
    parser.add_argument('--edge-slowdown', type=float, default=3.0,
                        dest='edge_slowdown',
                        help='also run the edge with its tails emulated this many times '
                             'slower (a small edge box that these robots saturate); 0: not')
    parser.add_argument('--slow-edge-devices', type=int, nargs='+', default=[4, 8])
    parser.add_argument('--model', default='resnet18_digits64')
    parser.add_argument('--rate-kbit', type=float, default=2000.0)
    parser.add_argument('--fps', type=float, default=10.0)
    parser.add_argument('--slowdown', type=float, default=20.0)
    parser.add_argument('--deadline-ms', type=float, default=60.0)
    parser.add_argument('--warmup', type=float, default=20.0)
    parser.add_argument('--seconds', type=float, default=40.0)
    parser.add_argument('--logs', default='/tmp/edgent_fleet')
    parser.add_argument('--keep', action='store_true',
                        help='add these runs to those already in --out (a run of the same '
                             'label replaced)')
    parser.add_argument('--only-slow-edge', action='store_true',
                        help='only the runs with the slower edge')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'fleet.json'))
    parser.add_argument('--doc', default=str(ROOT / 'docs' / 'fleet.md'))
    args = parser.parse_args()
    why = testbed.available()
    if why:
        print(f'bench_fleet: skipped: {why}')
        return 0
    plan = [] if args.only_slow_edge else \
        [(n, 1, v, False, None) for n in args.devices for v in args.variants]
    if not args.no_two_edges and not args.only_slow_edge:
        plan += [(8, 2, 'shared', False, None), (8, 2, 'shared', True, None)]
    if args.edge_slowdown:
        plan += [(n, 1, v, False, args.edge_slowdown) for n in args.slow_edge_devices
                 for v in args.variants]
    runs = []
    for robots, edges, variant, fault, slow in tqdm(plan, desc='fleet runs', unit='run'):
        r = run_one(args, robots, edges, variant, fault=fault, edge_slowdown=slow)
        runs.append(r)
        tqdm.write(f"{r['label']}: {r['frames']} frames, met {100 * r['deadline_hit_rate']:.1f}% "
                   f"(worst robot {100 * r['worst_robot_hit_rate']:.1f}%), accuracy "
                   f"{100 * r['accuracy']:.1f}%, edge ran {r['edge_frames_per_s']:.1f}/s, "
                   f"edge CPU {r['edge_cpu_share']}" +
                   (f", lost {r['frames_lost']}, longest silence {r['longest_silence_s']:.2f} s"
                    if fault else ''))
    machine = {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
               'python': platform.python_version(),
               'when': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
    if args.keep and Path(args.out).is_file():
        labels = {r['label'] for r in runs}
        runs = [r for r in json.loads(Path(args.out).read_text())['runs']
                if r['label'] not in labels] + runs
    result = {'machine': machine, 'args': vars(args), 'runs': runs}
    Path(args.out).write_text(json.dumps(result, indent=1))
    png = Path(args.out).with_suffix('.png')
    plot(runs, png)
    write_doc(Path(args.doc), result, png)
    print(f'wrote {args.out}, {png}, {args.doc}')
    return 0


def slow_text(run: dict) -> str:
    q = run.get('edge_slowdown')
    return f' ({q:g}x slower)' if q else ''


def killed(run: dict) -> str:
    return ' (one edge killed)' if 'frames_lost' in run else ''


def write_doc(path: Path, result: dict, png: Path) -> None:
    a = result['args']
    lines = [
        '# A fleet: robots sharing edges (bench_fleet.py)', '',
        f"Machine: {result['machine']['cores']} cores ({result['machine']['cpu']}), "
        f"{result['machine']['when']}. Command: `scripts/run.sh python bench/bench_fleet.py`"
        f" (model {a['model']}, each robot's link {a['rate_kbit']:g} kbit/s, {a['fps']:g} fps, "
        f"device layers {a['slowdown']:g}x slower than this CPU, deadline "
        f"{a['deadline_ms']:g} ms; {a['warmup']:g} s warm-up, then {a['seconds']:g} s "
        'measured). Everything, robots and edges, shares this machine\'s cores.', '',
        f'![fleet]({os.path.relpath(png, path.parent)})', '',
        '| robots | edges | variant | frames | deadline met | worst robot | accuracy | '
        'answered alone | edge ran /s | edge busy | edge CPU / robot | edge RSS MB |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in result['runs']:
        lines.append(
            f"| {r['robots']} | {r['edges']}{slow_text(r)} | {r['variant']}{killed(r)} | "
            f"{r['frames']} | {100 * r['deadline_hit_rate']:.1f}% | "
            f"{100 * r['worst_robot_hit_rate']:.1f}% | {100 * r['accuracy']:.1f}% | "
            f"{100 * r['fallback_share']:.1f}% | {r['edge_frames_per_s']:.1f} | "
            f"{100 * r['edge_busy_share_mean']:.0f}% | "
            f"{100 * r['edge_cpu_share_per_robot']:.1f}% | "
            f"{', '.join(f'{x:.0f}' for x in r['edge_rss_mb'])} |")
    faults = [r for r in result['runs'] if 'frames_lost' in r]
    for r in faults:
        lines += ['', f"Fault ({r['robots']} robots, two edges, edge 0 killed halfway): "
                  f"{r['frames_lost']} frames lost; the longest a robot went without an answer: "
                  f"{r['longest_silence_s']:.2f} s; an edge answered each robot again after "
                  f"{r['edge_again_s_median']:.2f} s (median), {r['edge_again_s_max']:.2f} s "
                  '(slowest).']
    path.write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    raise SystemExit(main())
