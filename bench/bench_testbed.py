"""The paper's Figures 6 to 9, and a dynamic trace, measured on the emulated testbed.

Everything runs for real: the device and edge sides in two network
namespaces joined by a tc-tbf link, the device's inference node under a
cgroup CPU quota (15% of one core), the planner on this machine's profiles.
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
from common import machine

from edgent_ros import testbed
from edgent_ros.demo.pipeline import ensure_profile, start_on_testbed

DOCS = Path(__file__).resolve().parent.parent / 'docs'
QUOTA = 0.15
RATE_HZ = 5.0
BANDWIDTHS = [50, 100, 200, 400, 600, 800, 1000, 1500, 2000]
DEADLINES = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
MODES = ['edgent', 'device_only', 'edge_only', 'partition_only']
TRACE = [(0, 2000), (20, 300), (40, 30000), (55, 25000), (60, 35000), (70, 500), (90, 2000)]
FIGURES = ('fig67', 'fig8', 'fig9', 'dynamic')


# --- the driver, inside the device namespace ---------------------------------------
class Driver:
    """Changes conditions and records results, from inside the device namespace."""

    def __init__(self, bed_name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter_client import AsyncParameterClient

        from edgent_ros.msg import BandwidthEstimate, InferenceResult, Plan
        from edgent_ros.qos import LATCHED_QOS

        rclpy.init()
        self.node = Node('bench_driver')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.results: list = []
        self.plans: list = []
        self.bandwidth = float('nan')
        self.node.create_subscription(InferenceResult, '/device/result',
                                      lambda m: self.results.append((time.monotonic(), m)), 50)
        self.node.create_subscription(Plan, '/device/plan',
                                      lambda m: self.plans.append((time.monotonic(), m)),
                                      LATCHED_QOS)
        self.node.create_subscription(BandwidthEstimate, '/device/bandwidth', self.on_bw,
                                      LATCHED_QOS)
        self.params = AsyncParameterClient(self.node, '/device/planner')
        self.bed = testbed.Testbed(rate_kbit=1.0, name=bed_name)
        if not self.params.wait_for_services(timeout_sec=60):
            raise RuntimeError('planner parameter services not found')
        self.spin(lambda: len(self.results) >= 5, 120)

    def on_bw(self, msg: object) -> None:
        self.bandwidth = float(msg.bandwidth_kbps)

    def spin(self, until: object, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if until():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(until())

    def set(self, **params: object) -> None:
        from rclpy.parameter import Parameter

        future = self.params.set_parameters([Parameter(k, value=v) for k, v in params.items()])
        self.executor.spin_until_future_complete(future, timeout_sec=20)
        for r in future.result().results:
            if not r.successful:
                raise RuntimeError(f'planner refused {params}: {r.reason}')

    def level(self, frames: int, settle_s: float) -> dict[str, object]:
        """Let conditions settle, then record the next frames run under one plan."""
        self.spin(lambda: False, settle_s)
        plan = self.plans[-1][1] if self.plans else None
        key = (plan.exit_point, plan.partition_point) if plan else None
        start = len(self.results)

        def mine() -> list:
            return [r for _, r in self.results[start:]
                    if (r.exit_point, r.partition_point) == key]

        self.spin(lambda: len(mine()) >= frames, 10 + frames / RATE_HZ * 2)
        rows = mine()
        if not rows:
            return {'frames': 0}
        measured = [r.latency_ms for r in rows]
        predicted = [r.predicted_latency_ms for r in rows]
        labelled = [r for r in rows if r.label >= 0]
        return {
            'frames': len(rows), 'exit': rows[-1].exit_point,
            'partition': rows[-1].partition_point,
            'num_layers': plan.num_layers if plan else 0,
            'feasible': bool(plan.deadline_met) if plan else False,
            'bandwidth_estimate_kbps': self.bandwidth,
            'predicted_ms': statistics.median(predicted),
            'measured_ms': statistics.median(measured),
            'prediction_error': statistics.median(
                abs(p - m) / m for p, m in zip(predicted, measured, strict=True)),
            'deadline_hit_rate': sum(r.deadline_met for r in rows) / len(rows),
            'accuracy': sum(r.label == r.class_id for r in labelled) / max(1, len(labelled)),
            'accuracy_within_deadline': sum(r.label == r.class_id and r.deadline_met
                                            for r in labelled) / max(1, len(labelled)),
        }

    def fig67(self) -> list[dict[str, object]]:
        self.set(latency_requirement_ms=1000.0, mode='edgent')
        rows = []
        for bw in BANDWIDTHS:
            self.bed.set_rate(bw)
            rows.append({'bandwidth_kbps': bw, **self.level(10, 8.0)})
            print(f'fig67 {bw} kbps: {rows[-1]}', flush=True)
        return rows

    def fig8(self) -> list[dict[str, object]]:
        self.bed.set_rate(500)
        self.set(mode='edgent')
        self.spin(lambda: False, 8.0)
        rows = []
        for deadline in DEADLINES:
            self.set(latency_requirement_ms=float(deadline))
            rows.append({'deadline_ms': deadline, **self.level(10, 1.5)})
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
                rows.append({'mode': mode, 'deadline_ms': deadline, **self.level(10, 1.5)})
                print(f'fig9 {mode} {deadline} ms: {rows[-1]}', flush=True)
        self.set(mode='edgent')
        return rows

    def dynamic(self) -> dict[str, object]:
        self.set(latency_requirement_ms=100.0, mode='edgent')
        self.bed.set_rate(TRACE[0][1])
        self.spin(lambda: False, 8.0)
        start = len(self.results)
        plans_before = len(self.plans)
        replay = self.bed.replay(TRACE)
        self.spin(lambda: False, TRACE[-1][0] + 15)
        replay.stop()
        rows = [r for _, r in self.results[start:]]
        steps = []
        for when, rate in replay.applied[1:]:
            after = [(t, p) for t, p in self.plans[plans_before:] if t >= when]
            steps.append({'rate_kbps': rate, 'replan_s': (after[0][0] - when) if after
                          else None, 'plan': (after[0][1].exit_point, after[0][1].partition_point)
                          if after else None})
        return {'frames': len(rows),
                'deadline_hit_rate': sum(r.deadline_met for r in rows) / max(1, len(rows)),
                'steps': steps,
                'timeline': [(t - replay.start_time, r.latency_ms, r.exit_point,
                              r.partition_point, r.deadline_met)
                             for t, r in self.results[start:]],
                'trace': TRACE}


def run_driver(args: argparse.Namespace) -> int:
    driver = Driver(args.testbed_name)
    out = {name: getattr(driver, name)() for name in args.only}
    Path(args.out).write_text(json.dumps(out))
    return 0


# --- the main process: testbed, pipeline, reports --------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', choices=FIGURES, default=list(FIGURES))
    parser.add_argument('--driver', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--testbed-name', default='', help=argparse.SUPPRESS)
    parser.add_argument('--out', default='/tmp/edgent_eval.json')
    parser.add_argument('--previous', default='',
                        help='JSON of an earlier run whose other figures the report keeps')
    args = parser.parse_args(argv)
    if args.driver:
        return run_driver(args)
    why = testbed.available()
    if why:
        print(f'bench_testbed: skipped: the testbed cannot run here: {why}')
        return 0
    device_profile = ensure_profile('device', QUOTA, False)
    edge_profile = ensure_profile('edge', None, False)
    overrides = [f'planner.device_profile:={device_profile}',
                 f'planner.edge_profile:={edge_profile}', f'camera.rate_hz:={RATE_HZ}',
                 'planner.initial_bandwidth_kbps:=2000.0']
    log_dir = Path('/tmp/edgent_eval')
    log_dir.mkdir(exist_ok=True)
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    with testbed.Testbed(2000.0) as bed, open(log_dir / 'device.log', 'w') as dlog, \
            open(log_dir / 'edge.log', 'w') as elog:
        start_on_testbed(bed, overrides, QUOTA, dlog, elog)
        driver = bed.spawn('device', [sys.executable, __file__, '--driver', '--testbed-name',
                                      bed.name, '--out', args.out, '--only', *args.only])
        if driver.wait() != 0:
            print('bench_testbed: the driver failed; logs in /tmp/edgent_eval')
            return 1
    data = json.loads(Path(args.out).read_text())
    previous = Path(args.previous) if args.previous else None
    if previous and previous.is_file():  # keep the figures not re-run this time
        data = {**json.loads(previous.read_text()), **data}
    report(data, started)
    return 0


def write_csv(name: str, rows: list[dict[str, object]]) -> Path:
    path = DOCS / f'eval_{name}.csv'
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def report(data: dict[str, object], started: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    DOCS.mkdir(exist_ok=True)
    facts = machine()
    lines = ['# Evaluation on the emulated testbed', '',
             f'Measured {started} on {facts["cpu"]} ({facts["cpus"]} cores), device inference '
             f'node under a {100 * QUOTA:.0f}% CPU quota, link shaped with tc tbf, camera at '
             f'{RATE_HZ:g} Hz, this machine\'s profiles. Command: '
             '`scripts/run.sh python bench/bench_testbed.py` (as root).', '']
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
        fig.savefig(DOCS / 'eval_fig67.png', dpi=110)
        errors += [r['prediction_error'] for r in rows if r.get('frames')]
        lines += ['## Figures 6 and 7: deadline 1000 ms, bandwidth 50 kbps to 2 Mbps', '',
                  '| kbps | exit | partition | predicted ms | measured ms | error | deadline met |',
                  '|---:|---:|---:|---:|---:|---:|---:|']
        lines += [f"| {r['bandwidth_kbps']} | {r.get('exit')} | {r.get('partition')}/"
                  f"{r.get('num_layers')} | {r.get('predicted_ms', 0):.1f} | "
                  f"{r.get('measured_ms', 0):.1f} | {100 * r.get('prediction_error', 0):.0f}% | "
                  f"{100 * r.get('deadline_hit_rate', 0):.0f}% |" for r in rows]
        lines += ['', '![Figs 6-7](eval_fig67.png)', '']
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
        fig.savefig(DOCS / 'eval_fig8.png', dpi=110)
        errors += [r['prediction_error'] for r in rows if r.get('frames')]
        lines += ['## Figure 8: 500 kbps, deadline 100 to 1000 ms', '',
                  '| deadline ms | exit | partition | predicted ms | measured ms | deadline met |',
                  '|---:|---:|---:|---:|---:|---:|']
        lines += [f"| {r['deadline_ms']} | {r.get('exit')} | {r.get('partition')}/"
                  f"{r.get('num_layers')} | {r.get('predicted_ms', 0):.1f} | "
                  f"{r.get('measured_ms', 0):.1f} | {100 * r.get('deadline_hit_rate', 0):.0f}% |"
                  for r in rows]
        lines += ['', '![Fig 8](eval_fig8.png)', '']
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
        fig.savefig(DOCS / 'eval_fig9.png', dpi=110)
        lines += ['## Figure 9: 400 kbps, accuracy within the deadline', '',
                  '| deadline ms | ' + ' | '.join(MODES) + ' |',
                  '|---:|' + '---:|' * len(MODES)]
        for d in DEADLINES:
            cells = []
            for mode in MODES:
                r = next((r for r in rows if r['mode'] == mode and r['deadline_ms'] == d), {})
                cells.append(f"{100 * r.get('accuracy_within_deadline', 0):.0f}%")
            lines.append(f'| {d} | ' + ' | '.join(cells) + ' |')
        lines += ['', '![Fig 9](eval_fig9.png)', '']
    if 'dynamic' in data:
        dyn = data['dynamic']
        write_csv('dynamic', [{'t_s': t, 'latency_ms': lat, 'exit': e, 'partition': p,
                               'deadline_met': ok} for t, lat, e, p, ok in dyn['timeline']])
        fig, ax = plt.subplots(figsize=(9, 4))
        t = [row[0] for row in dyn['timeline']]
        ax.plot(t, [row[1] for row in dyn['timeline']], '.', ms=3, label='measured latency, ms')
        ax.plot(t, [10 * row[3] for row in dyn['timeline']], '-', lw=1,
                label='partition point x10')
        for when, rate in dyn['trace']:
            ax.axvline(when, color='k', alpha=0.2)
            ax.text(when, ax.get_ylim()[1] * 0.95, f'{rate} kbps', fontsize=7, rotation=90)
        ax.axhline(100, color='r', ls=':', label='deadline')
        ax.set_xlabel('time since the trace started, s')
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(DOCS / 'eval_dynamic.png', dpi=110)
        replans = [s['replan_s'] for s in dyn['steps'] if s['replan_s'] is not None]
        lines += ['## Dynamic bandwidth (deadline 100 ms)', '',
                  f"Trace (s, kbps): {dyn['trace']}. Frames: {dyn['frames']}, deadline met in "
                  f"{100 * dyn['deadline_hit_rate']:.1f}%.", '',
                  '| step to kbps | next plan after | plan (exit, partition) |', '|---:|---:|---|']
        def after(step: dict[str, object]) -> str:
            return 'no new plan' if step['replan_s'] is None else f"{step['replan_s']:.2f} s"

        lines += [f"| {s['rate_kbps']} | {after(s)} | {s['plan']} |" for s in dyn['steps']]
        if replans:
            lines += ['', f'Median time to re-plan where the plan changed: '
                      f'{statistics.median(replans):.2f} s.']
        lines += ['', '![dynamic](eval_dynamic.png)', '']
    if errors:
        lines += ['## Predicted vs measured', '',
                  f'Median of the per-level median prediction errors (Figs. 6-8): '
                  f'{100 * statistics.median(errors):.1f}%.', '']
    (DOCS / 'evaluation.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    raise SystemExit(main())
