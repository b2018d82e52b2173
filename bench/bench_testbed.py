"""The paper's Figures 6 to 9, and a dynamic trace, measured on the emulated testbed.

Everything runs for real: the device and edge sides in two network
namespaces joined by a tc-tbf link, the planner on this machine's profiles.
The device's layers run SLOWDOWN times slower than this CPU (the device
node's emulated_slowdown: each run of layers takes f x that run's median
CPU time), so the final exit takes about 0.6 s on the device alone, a
Pi-3-class device for this small network (the paper's Pi 3 needs more than
2 s for full AlexNet, its Fig. 2). Frames skipped by a device that fell
behind (results marked skipped) count as missed deadlines. Before the
figures the pipeline runs device only, then edge only, for a few frames, so
the planner's online calibration (device compute factor, per-frame
overhead) has seen both sides. Each level replays the
same held-out frames (the camera's next_index is reset), so modes that choose
the same plan score the same.
A driver process inside the device namespace changes the link rate (tc) and
the planner's parameters (deadline, mode) between levels and records what
the pipeline did:

- fig67: deadline 1000 ms, bandwidth 50 kbps .. 2 Mbps: plan, predicted and
  measured latency (the paper's Figs. 6 and 7);
- fig8: 500 kbps, deadline 100 .. 1000 ms: plan (Fig. 8);
- fig9: 400 kbps, deadline 100 .. 1000 ms: accuracy within the deadline of
  Edgent, device only, edge only, partition only (Fig. 9);
- dynamic: a bandwidth trace with steps and fluctuations: deadline hit rate
  and time from each step to the next plan.

Run as root: scripts/run.sh python bench/bench_testbed.py [--only fig8 ...]
Writes docs/evaluation.md and docs/eval_<name>.{csv,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from common import machine

from edgent_ros import testbed
from edgent_ros.demo.faults import lateness
from edgent_ros.demo.pipeline import emulated_device_overrides, start_on_testbed

DOCS = Path(__file__).resolve().parent.parent / 'docs'
SLOWDOWN = 250.0
RATE_HZ = 1.0
FRAMES = 30
MODEL = ''  # the default model
BANDWIDTHS = [50, 100, 200, 400, 600, 800, 1000, 1500, 2000]
DEADLINES = [100, 200, 300, 400, 500, 700, 1000]
# Edgent (exit, partition and codec), the paper's three baselines (raw float32
# as the paper sends it), sc2bench's JPEG edge only, Neurosurgeon with codecs.
MODES = ['edgent', 'device_only', 'edge_only', 'partition_only', 'jpeg_edge_only',
         'partition_only_codec']
PAPER_MODES = MODES[:4]
DYNAMIC_DEADLINE_MS = 1000.0
# Steps that change the plan (edge <-> device) and fluctuations that must not;
# the last four steps fall at other moments of the 1 s frame period.
TRACE = [(0, 2000), (20, 80), (40, 1000), (55, 800), (60, 1200), (65, 900), (70, 100),
         (90, 600), (105, 2000), (117.3, 100), (129.6, 1500), (141.2, 80), (153.7, 800)]
FIGURES = ('fig67', 'fig8', 'fig9', 'dynamic', 'points')


# --- the driver, inside the device namespace ---------------------------------------
class Driver:
    """Changes conditions and records results, from inside the device namespace."""

    def __init__(self, bed_name: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter_client import AsyncParameterClient

        from edgent_ros.qos import LATCHED_QOS
        from edgent_ros_interfaces.msg import BandwidthEstimate, InferenceResult, Plan

        rclpy.init()
        self.node = Node('bench_driver')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.results: list = []
        self.plans: list = []
        self.bandwidth = float('nan')
        self.estimates: list[tuple[float, float]] = []
        self.node.create_subscription(InferenceResult, '/device/result',
                                      lambda m: self.results.append((time.monotonic(), m)), 50)
        self.node.create_subscription(Plan, '/device/plan',
                                      lambda m: self.plans.append((time.monotonic(), m)),
                                      LATCHED_QOS)
        self.node.create_subscription(BandwidthEstimate, '/device/bandwidth', self.on_bw,
                                      LATCHED_QOS)
        self.calibration: dict[str, float] = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics, 50)
        self.params = AsyncParameterClient(self.node, '/device/planner')
        self.camera = AsyncParameterClient(self.node, '/device/camera')
        self.bed = testbed.Testbed(rate_kbit=1.0, name=bed_name)
        if not (self.params.wait_for_services(timeout_sec=60) and
                self.camera.wait_for_services(timeout_sec=60)):
            raise RuntimeError('planner or camera parameter services not found')
        self.spin(lambda: len(self.results) >= 5, 120)
        for mode in ('device_only', 'edge_only', 'edgent'):  # calibration warm-up
            self.set(mode=mode)
            self.spin(lambda: False, 12.0 if mode != 'edgent' else 0.0)

    def on_diagnostics(self, msg: object) -> None:
        """Keep the planner's online calibration (for bench_advantage)."""
        for status in msg.status:
            if status.name.endswith('/planner: plan'):
                values = {kv.key: kv.value for kv in status.values}
                for key in ('device_scale', 'frame_overhead_ms', 'transfer_scale',
                            'planning_margin'):
                    try:
                        self.calibration[key] = float(values[key])
                    except (KeyError, ValueError):
                        pass

    def on_bw(self, msg: object) -> None:
        self.bandwidth = float(msg.bandwidth_kbps)
        self.estimates.append((time.monotonic(), self.bandwidth))

    def spin(self, until: object, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if until():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(until())

    def set(self, client: object = None, **params: object) -> None:
        from rclpy.parameter import Parameter

        future = (client or self.params).set_parameters(
            [Parameter(k, value=v) for k, v in params.items()])
        self.executor.spin_until_future_complete(future, timeout_sec=20)
        for r in future.result().results:
            if not r.successful:
                raise RuntimeError(f'refused {params}: {r.reason}')

    def level(self, frames: int, settle_s: float) -> dict[str, object]:
        """Let conditions settle, rewind the camera, record the next frames' results."""
        from collections import Counter

        self.spin(lambda: False, settle_s)
        plan = self.plans[-1][1] if self.plans else None
        self.set(self.camera, next_index=0)
        rewound = time.time()
        start = len(self.results)

        def mine() -> list:
            return [r for _, r in self.results[start:]
                    if r.header.stamp.sec + r.header.stamp.nanosec * 1e-9 >= rewound]

        self.spin(lambda: len(mine()) >= frames, 20 + frames / RATE_HZ * 3)
        taken = mine()[:frames]
        rows = [r for r in taken if not r.skipped]  # skipped frames count as missed
        skipped = len(taken) - len(rows)
        if not rows:
            return {'frames': 0, 'skipped': skipped}
        (exit_point, partition), count = Counter(
            (r.exit_point, r.partition_point) for r in rows).most_common(1)[0]
        measured = [r.latency_ms for r in rows]
        predicted = [r.predicted_latency_ms for r in rows]
        labelled = [r for r in rows if r.label >= 0]
        codecs = Counter(p.codec for t, p in self.plans if t >= rewound - 1.0) or \
            Counter([plan.codec if plan else ''])
        return {
            'frames': len(rows), 'skipped': skipped, 'exit': exit_point, 'partition': partition,
            'codec': plan.codec if plan else '', 'codecs_planned': dict(codecs),
            'upload_bytes': plan.upload_bytes if plan else 0,
            'expected_accuracy': plan.expected_accuracy if plan else 0.0,
            'plan_share': count / len(rows),
            'fallback_share': sum(r.fallback for r in rows) / len(rows),
            'num_layers': plan.num_layers if plan else 0,
            'feasible': bool(plan.deadline_met) if plan else False,
            'bandwidth_estimate_kbps': self.bandwidth,
            'predicted_ms': statistics.median(predicted),
            'measured_ms': statistics.median(measured),
            'prediction_error': statistics.median(
                abs(p - m) / m for p, m in zip(predicted, measured, strict=True)),
            'deadline_hit_rate': sum(r.deadline_met for r in rows) / (len(rows) + skipped),
            'accuracy': sum(r.label == r.class_id for r in labelled) / max(1, len(labelled)),
            'accuracy_within_deadline': sum(r.label == r.class_id and r.deadline_met
                                            for r in labelled) / (max(1, len(labelled)) +
                                                                  skipped),
        }

    def fig67(self) -> list[dict[str, object]]:
        self.set(latency_requirement_ms=1000.0, mode='edgent')
        rows = []
        for bw in BANDWIDTHS:
            self.bed.set_rate(bw)
            rows.append({'bandwidth_kbps': bw, **self.level(FRAMES, 8.0)})
            print(f'fig67 {bw} kbps: {rows[-1]}', flush=True)
        return rows

    def fig8(self) -> list[dict[str, object]]:
        self.bed.set_rate(500)
        self.set(mode='edgent')
        self.spin(lambda: False, 8.0)
        rows = []
        for deadline in DEADLINES:
            self.set(latency_requirement_ms=float(deadline))
            rows.append({'deadline_ms': deadline, **self.level(FRAMES, 1.5)})
            print(f'fig8 {deadline} ms: {rows[-1]}', flush=True)
        return rows

    def fig9(self) -> list[dict[str, object]]:
        self.bed.set_rate(400)
        self.spin(lambda: False, 8.0)
        rows = []
        for mode in MODES:
            self.set(mode=mode)
            for deadline in DEADLINES:
                self.set(latency_requirement_ms=float(deadline))
                rows.append({'mode': mode, 'deadline_ms': deadline,
                             **self.level(FRAMES, 1.5)})
                print(f'fig9 {mode} {deadline} ms: {rows[-1]}', flush=True)
        self.set(mode='edgent')
        return rows

    def points(self) -> list[dict[str, object]]:
        """The points bench_advantage proposes (where Edgent is predicted
        strictly more accurate than every baseline), each in every mode."""
        proposed = json.loads(advantage_path().read_text())['proposed']
        rows = []
        for point in proposed:
            self.bed.set_rate(point['bandwidth_kbps'])
            self.set(latency_requirement_ms=float(point['deadline_ms']))
            self.spin(lambda: False, 8.0)
            for mode in MODES:
                self.set(mode=mode)
                rows.append({'mode': mode, 'point': f"{point['bandwidth_kbps']:.0f} kbps, "
                                                     f"{point['deadline_ms']:.0f} ms",
                             'bandwidth_kbps': point['bandwidth_kbps'],
                             'deadline_ms': point['deadline_ms'],
                             'predicted': point['edgent'] if mode == 'edgent'
                             else point['baselines'][mode], **self.level(FRAMES, 3.0)})
                print(f"points {point['bandwidth_kbps']:.0f} kbps {point['deadline_ms']:.0f} ms "
                      f'{mode}: {rows[-1]}', flush=True)
        self.set(mode='edgent')
        return rows

    def dynamic(self) -> dict[str, object]:
        self.set(latency_requirement_ms=DYNAMIC_DEADLINE_MS, mode='edgent')
        self.bed.set_rate(TRACE[0][1])
        self.spin(lambda: False, 10.0)
        start = len(self.results)
        plans_before = len(self.plans)
        estimates_before = len(self.estimates)
        replay = self.bed.replay(TRACE)
        self.spin(lambda: False, TRACE[-1][0] + 15)
        replay.stop()
        rows = [r for _, r in self.results[start:] if not r.skipped]
        skipped = sum(r.skipped for _, r in self.results[start:])
        plans = self.plans[plans_before:]
        estimates = self.estimates[estimates_before:]
        steps = []
        applied = replay.applied
        for i, (when, rate) in enumerate(applied[1:], start=1):
            before = ([(p.exit_point, p.partition_point, p.codec) for t, p in self.plans
                       if t < when] or [None])[-1]
            end = applied[i + 1][0] if i + 1 < len(applied) else float('inf')
            new = [(t, p) for t, p in plans if when <= t < end and
                   (p.exit_point, p.partition_point, p.codec) != before]
            tracked = [t for t, kbps in estimates
                       if when <= t < end and abs(kbps - rate) <= 0.35 * rate]
            steps.append({
                'from_kbps': applied[i - 1][1], 'rate_kbps': rate,
                'estimate_within_35pct_s': (tracked[0] - when) if tracked else None,
                'replan_s': (new[0][0] - when) if new else None,
                'plan_before': before,
                'plan_after': (new[0][1].exit_point, new[0][1].partition_point,
                               new[0][1].codec) if new else None})
        every = [{'latency_ms': r.latency_ms, 'fallback': r.fallback, 'skipped': r.skipped,
                  'device_ms': r.device_ms, 'deadline_met': r.deadline_met}
                 for _, r in self.results[start:]]
        fallback = [p.predicted_fallback_ms for _, p in plans if p.predicted_fallback_ms > 0]
        return {**lateness(every, DYNAMIC_DEADLINE_MS,
                           statistics.median(fallback) if fallback else 0.0),
                'frames': len(rows), 'skipped': skipped, 'deadline_ms': DYNAMIC_DEADLINE_MS,
                'deadline_hit_rate': sum(r.deadline_met for r in rows) /
                max(1, len(rows) + skipped),
                'steps': steps,
                'timeline': [(t - replay.start_time, r.latency_ms, r.exit_point,
                              r.partition_point, r.deadline_met, r.device_ms, r.transfer_ms,
                              r.predicted_latency_ms)
                             for t, r in self.results[start:] if not r.skipped],
                'estimates': [(t - replay.start_time, kbps) for t, kbps in estimates],
                'trace': TRACE}


def run_driver(args: argparse.Namespace) -> int:
    driver = Driver(args.testbed_name)
    out = {}
    for name in args.only:
        out[name] = getattr(driver, name)()
        out.setdefault('calibration', {})[name] = dict(driver.calibration)
    Path(args.out).write_text(json.dumps(out))
    return 0


def advantage_path() -> Path:
    from edgent_ros import card

    name = card.load_card(card.resolve_model_path(MODEL or card.DEFAULT_MODEL)).name
    return Path(__file__).resolve().parent / 'results' / f'advantage_{name}.json'


def suffix() -> str:
    """What the default model's file names lack: _<model> for another."""
    return f'_{Path(MODEL).stem}' if MODEL else ''


def configure(args: argparse.Namespace) -> None:
    global SLOWDOWN, FRAMES, MODEL, RATE_HZ, BANDWIDTHS
    SLOWDOWN, FRAMES, MODEL, RATE_HZ = args.slowdown, args.frames, args.model, args.rate_hz
    BANDWIDTHS = list(args.bandwidths)


# --- the main process: testbed, pipeline, reports --------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', choices=FIGURES, default=list(FIGURES))
    parser.add_argument('--driver', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--testbed-name', default='', help=argparse.SUPPRESS)
    parser.add_argument('--out', default='/tmp/edgent_eval.json')
    parser.add_argument('--previous', default='',
                        help='JSON of an earlier run whose other figures the report keeps')
    parser.add_argument('--model', default='', help='a model other than the default')
    parser.add_argument('--slowdown', type=float, default=SLOWDOWN,
                        help='the emulated device\'s slowdown (default %(default)s)')
    parser.add_argument('--frames', type=int, default=FRAMES, help='frames per level')
    parser.add_argument('--rate-hz', type=float, default=RATE_HZ, help='camera rate')
    parser.add_argument('--bandwidths', type=float, nargs='+', default=BANDWIDTHS,
                        metavar='KBPS', help='fig67\'s link rates, kbit/s (default %(default)s)')
    args = parser.parse_args(argv)
    configure(args)
    if args.driver:
        return run_driver(args)
    why = testbed.available()
    if why:
        print(f'bench_testbed: skipped: the testbed cannot run here: {why}')
        return 0
    previous = Path(args.previous) if args.previous else None
    # Read before the run: --out may be the same file, which the run rewrites.
    kept = json.loads(previous.read_text()) if previous and previous.is_file() else {}
    overrides = emulated_device_overrides(SLOWDOWN, RATE_HZ, initial_kbps=2000.0, model=MODEL)
    log_dir = Path(f'/tmp/edgent_eval{suffix()}')
    log_dir.mkdir(exist_ok=True)
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    with testbed.Testbed(2000.0) as bed, open(log_dir / 'device.log', 'w') as dlog, \
            open(log_dir / 'edge.log', 'w') as elog:
        start_on_testbed(bed, overrides, None, dlog, elog, model=MODEL)
        driver = bed.spawn('device', [sys.executable, __file__, '--driver', '--testbed-name',
                                      bed.name, '--out', args.out, '--only', *args.only,
                                      '--model', MODEL, '--slowdown', str(SLOWDOWN),
                                      '--frames', str(FRAMES), '--rate-hz', str(RATE_HZ),
                                      '--bandwidths', *map(str, BANDWIDTHS)])
        if driver.wait() != 0:
            print(f'bench_testbed: the driver failed; logs in {log_dir}')
            return 1
    data = json.loads(Path(args.out).read_text())
    if kept:  # keep the figures not re-run this time
        calibration = {**kept.get('calibration', {}), **data.get('calibration', {})}
        data = {**kept, **data, 'calibration': calibration}
        Path(args.out).write_text(json.dumps(data))
    report(data, started)
    return 0


def write_csv(name: str, rows: list[dict[str, object]]) -> Path:
    path = DOCS / f'eval_{name}{suffix()}.csv'
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def cli_args() -> str:
    out = f' --model {MODEL}' if MODEL else ''
    out += f' --slowdown {SLOWDOWN:g}' if SLOWDOWN != 250.0 else ''
    return out


def never_worse(rows: list[dict[str, object]], key: str, strict: bool = False) -> list[str]:
    """Edgent's accuracy within the deadline against every baseline's at each
    level (``strict``: and whether it is above the best one with >= 95% met)."""
    out = []
    for level in dict.fromkeys(r[key] for r in rows):
        mine = {r['mode']: r for r in rows if r[key] == level}
        if 'edgent' not in mine:
            continue
        e = mine['edgent'].get('accuracy_within_deadline', 0.0)
        others = {m: r.get('accuracy_within_deadline', 0.0) for m, r in mine.items()
                  if m != 'edgent'}
        best = max(others, key=others.__getitem__) if others else None
        worse = [m for m, a in others.items() if a > e]
        text = f'- {key} {level}: Edgent {100 * e:.1f}%'
        if best is not None:
            text += f', best baseline {best} {100 * others[best]:.1f}%'
        paper = max((others[m] for m in PAPER_MODES if m in others), default=0.0)
        text += f' (paper\'s three: {100 * paper:.1f}%)'
        text += f'; worse than {worse}' if worse else '; never worse'
        if strict and best is not None:
            met = mine['edgent'].get('deadline_hit_rate', 0.0)
            text += (f'; strictly better with {100 * met:.0f}% met: '
                     f'{"yes" if e > others[best] and met >= 0.95 else "NO"}')
        out.append(text)
    return out


def report(data: dict[str, object], started: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    DOCS.mkdir(exist_ok=True)
    facts = machine()
    model = MODEL or 'branchy_alexnet_digits (the default model)'
    lines = [f'# Evaluation on the emulated testbed: {model}', '',
             f'Measured {started} on {facts["cpu"]} ({facts["cpus"]} cores), device layers '
             f'slowed {SLOWDOWN:g}x (emulated_slowdown), link shaped with tc tbf, camera at '
             f'{RATE_HZ:g} Hz, {FRAMES} frames per level (the same held-out frames each), '
             'this machine\'s profiles. Command: '
             f'`scripts/run.sh python bench/bench_testbed.py{cli_args()}` (as root). Plans '
             'choose exit, partition and codec (issue 17); the baselines are the paper\'s '
             'three (raw float32), JPEG edge only (sc2bench\'s bar) and partition only with '
             'the best codec.', '']
    errors = []
    if 'fig67' in data:
        rows = data['fig67']
        write_csv('fig67', rows)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        bws = [r['bandwidth_kbps'] for r in rows]
        axes[0].step(bws, [r.get('exit', 0) for r in rows], where='mid', label='exit point')
        axes[0].step(bws, [r.get('partition', 0) for r in rows], where='mid',
                     label='partition point')
        axes[0].set_xscale('log')
        axes[0].set_title('Fig. 6: selection vs bandwidth (deadline 1000 ms)', fontsize=9)
        axes[1].plot(bws, [r.get('predicted_ms', 0) for r in rows], 'o-', label='predicted')
        axes[1].plot(bws, [r.get('measured_ms', 0) for r in rows], 's-', label='measured')
        axes[1].set_xscale('log')
        axes[1].set_title('Fig. 7: latency vs bandwidth', fontsize=9)
        for ax in axes:
            ax.set_xlabel('bandwidth, kbps')
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        axes[1].set_ylabel('ms')
        fig.tight_layout()
        fig.savefig(DOCS / f'eval_fig67{suffix()}.png', dpi=110)
        errors += [r['prediction_error'] for r in rows if r.get('frames')]
        lines += ['## Figures 6 and 7: deadline 1000 ms, bandwidth 50 kbps to 2 Mbps', '',
                  '| kbps | exit | partition | codec | bytes up | predicted ms | measured ms '
                  '| error | deadline met |',
                  '|---:|---:|---:|---|---:|---:|---:|---:|---:|']
        lines += [f"| {r['bandwidth_kbps']} | {r.get('exit')} | {r.get('partition')}/"
                  f"{r.get('num_layers')} | {r.get('codec') or '-'} | {r.get('upload_bytes', 0)} "
                  f"| {r.get('predicted_ms', 0):.1f} | "
                  f"{r.get('measured_ms', 0):.1f} | {100 * r.get('prediction_error', 0):.0f}% | "
                  f"{100 * r.get('deadline_hit_rate', 0):.0f}% |" for r in rows]
        exits = [r.get('exit', 0) for r in rows if r.get('frames')]
        rises = all(b >= a for a, b in itertools.pairwise(exits))
        lines += ['', f'Exit point by bandwidth: {exits} ('
                  f'{"never falls as the bandwidth rises" if rises else "NOT monotone"}).',
                  '', f'![Figs 6-7](eval_fig67{suffix()}.png)', '']
    if 'fig8' in data:
        rows = data['fig8']
        write_csv('fig8', rows)
        fig, ax = plt.subplots(figsize=(6, 4))
        ds = [r['deadline_ms'] for r in rows]
        ax.step(ds, [r.get('exit', 0) for r in rows], where='mid', label='exit point')
        ax.step(ds, [r.get('partition', 0) for r in rows], where='mid', label='partition point')
        ax.set_xlabel('deadline, ms')
        ax.set_title('Fig. 8: selection vs deadline (500 kbps)', fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(DOCS / f'eval_fig8{suffix()}.png', dpi=110)
        errors += [r['prediction_error'] for r in rows if r.get('frames')]
        lines += ['## Figure 8: 500 kbps, deadline 100 to 1000 ms', '',
                  '| deadline ms | exit | partition | codec | predicted ms | measured ms | '
                  'deadline met |', '|---:|---:|---:|---|---:|---:|---:|']
        lines += [f"| {r['deadline_ms']} | {r.get('exit')} | {r.get('partition')}/"
                  f"{r.get('num_layers')} | {r.get('codec') or '-'} | "
                  f"{r.get('predicted_ms', 0):.1f} | "
                  f"{r.get('measured_ms', 0):.1f} | {100 * r.get('deadline_hit_rate', 0):.0f}% |"
                  for r in rows]
        lines += ['', f'![Fig 8](eval_fig8{suffix()}.png)', '']
    if 'fig9' in data:
        rows = data['fig9']
        write_csv('fig9', rows)
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode in MODES:
            mine = [r for r in rows if r['mode'] == mode]
            ax.plot([r['deadline_ms'] for r in mine],
                    [100 * r.get('accuracy_within_deadline', 0) for r in mine], 'o-', label=mode)
        ax.set_xlabel('deadline, ms')
        ax.set_ylabel('accuracy within the deadline, %')
        ax.set_title('Fig. 9: 400 kbps', fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(DOCS / f'eval_fig9{suffix()}.png', dpi=110)
        lines += ['## Figure 9: 400 kbps, accuracy within the deadline', '',
                  '| deadline ms | ' + ' | '.join(MODES) + ' |',
                  '|---:|' + '---:|' * len(MODES)]
        for d in DEADLINES:
            cells = []
            for mode in MODES:
                r = next((r for r in rows if r['mode'] == mode and r['deadline_ms'] == d), {})
                cells.append(f"{100 * r.get('accuracy_within_deadline', 0):.0f}%")
            lines.append(f'| {d} | ' + ' | '.join(cells) + ' |')
        lines += ['', 'Edgent\'s plans: ' + ', '.join(
            f"{r['deadline_ms']} ms: exit {r.get('exit')}, partition {r.get('partition')}/"
            f"{r.get('num_layers')}, {r.get('codec') or 'device only'}"
            for r in rows if r['mode'] == 'edgent') + '.', '']
        lines += never_worse(rows, 'deadline_ms')
        lines += ['', f'![Fig 9](eval_fig9{suffix()}.png)', '']
    if 'points' in data and not data['points']:
        lines += ['## Where Edgent is predicted strictly better: verified', '',
                  '`bench/bench_advantage.py` proposed no point for this model: nowhere on its '
                  'map is Edgent predicted strictly better than every baseline with a safety '
                  'margin (`bench/results/advantage_*.{json,png}`; docs/runs.md says why).', '']
    elif 'points' in data:
        rows = data['points']
        write_csv('points', [{k: v for k, v in r.items() if k != 'predicted'} for r in rows])
        lines += ['## Where Edgent is predicted strictly better: verified', '',
                  'Points proposed by `bench/bench_advantage.py` (its map: '
                  f'`bench/results/advantage_*.png`), each run in every mode, {FRAMES} frames.',
                  '', '| kbps | deadline ms | mode | plan | predicted ms | measured ms | '
                  'deadline met | accuracy within deadline |',
                  '|---:|---:|---|---|---:|---:|---:|---:|']
        lines += [f"| {r['bandwidth_kbps']:.0f} | {r['deadline_ms']:.0f} | {r['mode']} | "
                  f"{r.get('exit')}/{r.get('partition')}/{r.get('codec') or '-'} | "
                  f"{r.get('predicted_ms', 0):.0f} | {r.get('measured_ms', 0):.0f} | "
                  f"{100 * r.get('deadline_hit_rate', 0):.0f}% | "
                  f"{100 * r.get('accuracy_within_deadline', 0):.1f}% |" for r in rows]
        lines += ['', *never_worse(rows, 'point', strict=True), '']
    if 'dynamic' in data:
        dyn = data['dynamic']
        write_csv('dynamic', [{'t_s': t, 'latency_ms': lat, 'exit': e, 'partition': p,
                               'deadline_met': ok} for t, lat, e, p, ok, *_ in dyn['timeline']])
        deadline = dyn.get('deadline_ms', DYNAMIC_DEADLINE_MS)
        fig, (ax, bx) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        t = [row[0] for row in dyn['timeline']]
        ok = [row[4] for row in dyn['timeline']]
        lat_ms = [row[1] for row in dyn['timeline']]
        ax.plot([x for x, k in zip(t, ok, strict=True) if k],
                [y for y, k in zip(lat_ms, ok, strict=True) if k], '.', ms=4, label='met')
        ax.plot([x for x, k in zip(t, ok, strict=True) if not k],
                [y for y, k in zip(lat_ms, ok, strict=True) if not k], 'rx', ms=5,
                label='missed')
        ax.axhline(deadline, color='r', ls=':', label='deadline')
        ax.set_ylabel('latency, ms')
        ax.legend(fontsize=8)
        trace_t = [w for w, _ in dyn['trace']] + [t[-1] if t else dyn['trace'][-1][0]]
        trace_r = [r for _, r in dyn['trace']]
        bx.step(trace_t, trace_r + trace_r[-1:], where='post', label='link rate (tc)')
        if dyn.get('estimates'):
            bx.plot([e[0] for e in dyn['estimates']], [e[1] for e in dyn['estimates']], '-',
                    lw=1, label='estimate')
        bx.set_yscale('log')
        bx.set_ylabel('kbps')
        bx2 = bx.twinx()
        bx2.plot(t, [row[2] for row in dyn['timeline']], 'g.', ms=3, label='exit point')
        bx2.set_ylabel('exit point')
        bx.set_xlabel('time since the trace started, s')
        bx.legend(fontsize=8, loc='upper left')
        fig.tight_layout()
        fig.savefig(DOCS / f'eval_dynamic{suffix()}.png', dpi=110)
        replans = [s['replan_s'] for s in dyn['steps'] if s['replan_s'] is not None]
        tracked = [s['estimate_within_35pct_s'] for s in dyn['steps']
                   if s.get('estimate_within_35pct_s') is not None]
        lines += [f'## Dynamic bandwidth (deadline {deadline:g} ms)', '',
                  f"Trace (s, kbps): {dyn['trace']}. Frames: {dyn['frames']}, deadline met in "
                  f"{100 * dyn['deadline_hit_rate']:.1f}%.", '']
        if 'worst_latency_ms' in dyn:
            lines += [f"Latest answer {dyn['worst_latency_ms']:.0f} ms after capture; the bound "
                      f"(deadline + one fallback run of {dyn['fallback_run_ms']:.0f} ms, the "
                      f"median measured or predicted) is "
                      f"{deadline + dyn['fallback_run_ms']:.0f} ms "
                      f"({dyn['beyond_bound_ms']:.0f} ms beyond it). Answered at once as late, "
                      f"not run: {dyn['late_unrun']}.", '']
        lines += ['| step (kbps) | estimate within 35% after | new plan after | plan before '
                  '-> after |', '|---|---:|---:|---|']

        def secs(value: object) -> str:
            return '-' if value is None else f'{value:.2f} s'

        lines += [f"| {s.get('from_kbps', '?')} -> {s['rate_kbps']} | "
                  f"{secs(s.get('estimate_within_35pct_s'))} | {secs(s['replan_s'])} | "
                  f"{s.get('plan_before')} -> {s.get('plan_after') or 'kept'} |"
                  for s in dyn['steps']]
        if replans:
            lines += ['', f'Time from a step to the new plan, where the plan changed: median '
                      f'{statistics.median(replans):.2f} s, max {max(replans):.2f} s. '
                      f'Estimate within 35% of the new rate: median '
                      f'{statistics.median(tracked) if tracked else float("nan"):.2f} s.']
        lines += ['', f'![dynamic](eval_dynamic{suffix()}.png)', '']
    if errors:
        lines += ['## Predicted vs measured', '',
                  f'Median of the per-level median prediction errors (Figs. 6-8): '
                  f'{100 * statistics.median(errors):.1f}%.', '']
    if data.get('calibration'):
        lines += ['## The planner\'s online calibration after each figure', '',
                  '```', json.dumps(data['calibration'], indent=1), '```', '']
    (DOCS / f'evaluation{suffix()}.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    raise SystemExit(main())
