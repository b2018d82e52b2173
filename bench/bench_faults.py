"""Faults on the testbed: the edge killed, the link down, the link starved.

One run of the pipeline (camera 5 Hz, deadline 200 ms, link 10 Mbit/s so the
planner sends frames to the edge, device layers slowed 20x) through three
faults in turn, each followed by its recovery:

1. SIGKILL of the edge side, 20 frames, the edge started again;
2. the link down (ip link set down), 20 frames, up again;
3. the link shaped to 4 kbit/s, 20 frames, back to 10 Mbit/s.

For each: frames answered during it, how many on the device alone, how many
late, how soon after the fault the first frame was answered alone, the worst
latency, and how soon after the recovery frames came from the edge again.
Every frame the device took must have an answer (no gap in its numbers).

Run as root: scripts/run.sh python bench/bench_faults.py
Writes docs/reliability.md, docs/reliability.png and bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine
from tqdm import tqdm

from edgent_ros import testbed
from edgent_ros.demo.faults import analyse, run_scenario
from edgent_ros.demo.pipeline import emulated_device_overrides

DOCS = Path(__file__).resolve().parent.parent / 'docs'
RATE_KBIT = 10000.0
DEADLINE_MS = 200.0
SLOWDOWN = 20.0
STEPS = [('remote', 10),
         ('kill_edge',), ('frames', 20), ('start_edge',), ('remote', 10),
         ('link', False), ('frames', 20), ('link', True), ('remote', 10),
         ('rate', 4), ('frames', 20), ('rate', RATE_KBIT), ('remote', 10)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=3,
                        help='runs of the whole scenario, each on a fresh testbed (default 3)')
    args = parser.parse_args()
    why = testbed.available()
    if why:
        print(f'bench_faults: skipped: the testbed cannot run here: {why}')
        return 0
    overrides = emulated_device_overrides(SLOWDOWN, 5.0, deadline_ms=DEADLINE_MS,
                                          initial_kbps=RATE_KBIT)
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    runs, first_frames = [], []
    for i in tqdm(range(args.runs), desc='fault runs', unit='run'):
        with testbed.Testbed(RATE_KBIT) as bed:
            run = run_scenario(bed, STEPS, overrides=overrides,
                               log_dir=Path(f'/tmp/edgent_faults/run{i + 1}'),
                               step_timeout_s=120)
        result = analyse(run, DEADLINE_MS)
        result['events'] = run.events
        runs.append(result)
        first_frames = first_frames or run.frames
    out = {'machine': machine(), 'started': started, 'runs': runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'faults.json').write_text(json.dumps(out, indent=1))
    report(out, first_frames)
    return 0


def report(out: dict, frames: list[dict]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    runs = out['runs']
    t0 = min(f['received_s'] for f in frames)
    fig, ax = plt.subplots(figsize=(10, 4))
    for label, pick, style in (('from the edge', lambda f: f['remote'], 'b.'),
                               ('device (plan)', lambda f: not f['remote'] and
                                not f['fallback'], 'g.'),
                               ('device alone (edge not answering)', lambda f: f['fallback'],
                                'rx')):
        mine = [f for f in frames if pick(f)]
        ax.plot([f['received_s'] - t0 for f in mine], [f['latency_ms'] for f in mine], style,
                ms=4, label=label)
    for when, what in runs[0]['events']:
        ax.axvline(when - t0, color='k', alpha=0.3)
        ax.text(when - t0, ax.get_ylim()[1] * 0.9, what, rotation=90, fontsize=7)
    ax.axhline(DEADLINE_MS, color='r', ls=':', label='deadline')
    ax.set_yscale('log')
    ax.set_xlabel('time, s (run 1)')
    ax.set_ylabel('latency, ms')
    ax.legend(fontsize=7, loc='upper right')
    fig.tight_layout()
    DOCS.mkdir(exist_ok=True)
    fig.savefig(DOCS / 'reliability.png', dpi=110)
    m = out['machine']

    def secs(v: float | None) -> str:
        return '-' if v is None else f'{v:.2f} s'

    served = [f['edge_again_after_serving_s'] for r in runs for f in r['faults']
              if f['fault'] == 'kill_edge']
    lines = ['# Reliability: faults on the testbed', '',
             f"Measured {out['started']} on {m['cpu']} ({m['cpus']} cores): camera 5 Hz, "
             f"deadline {DEADLINE_MS:g} ms, link {RATE_KBIT:g} kbit/s (tc tbf), device layers "
             f"slowed {SLOWDOWN:g}x; {len(runs)} runs, each on a fresh testbed. Command: "
             f"`scripts/run.sh python bench/bench_faults.py --runs {len(runs)}` (as root).", '',
             'Frames from the edge again after the restarted edge logged that it serves, '
             'every run: ' + ', '.join(secs(v) for v in served) + '.', '',
             '| run | frames | gaps | alone | late | skipped | deadline met | latest answer | '
             'bound (deadline + one fallback run) |',
             '|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    lines += [f"| {i} | {r['frames']} | {len(r['missing_seqs'])} | {r['answered_alone']} | "
              f"{r['late']} | {r['skipped']} | {100 * r.get('met_share', 0):.1f}% | "
              f"{r.get('worst_latency_ms', 0):.0f} ms | "
              f"{DEADLINE_MS + r.get('fallback_run_ms', 0):.0f} ms |"
              for i, r in enumerate(runs, 1)]
    lines += ['', '| run | fault | frames during | answered alone | late | first alone after | '
              'worst latency | edge again after recovery | ... after the edge serves |',
              '|---:|---|---:|---:|---:|---:|---:|---:|---:|']
    lines += [f"| {i} | {f['fault']} | {f['frames_during']} | {f['answered_alone']} | "
              f"{f['late']} | {secs(f['first_alone_after_s'])} | {f['worst_latency_ms']:.0f} ms | "
              f"{secs(f['edge_again_after_recovery_s'])} | "
              f"{secs(f.get('edge_again_after_serving_s'))} |"
              for i, r in enumerate(runs, 1) for f in r['faults']]
    lines += ['', 'Recovery is timed to the first frame answered by the edge; "after the edge '
              'serves" from the edge\'s own log line (the edge side loads torch first, about '
              '1.5 s here).', '', '![faults](reliability.png) (run 1)', '']
    (DOCS / 'reliability.md').write_text('\n'.join(lines))
    print('\n'.join(lines))


if __name__ == '__main__':
    raise SystemExit(main())
