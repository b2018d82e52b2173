"""Where the planner cuts a network on the emulated testbed, at several bandwidths.

Issue 16, item 4: with a network at camera resolution (default: the shipped
ResNet-18 at 64x64, fed 640x480 camera frames), the planner should pick cuts
inside the network where the activation that crosses is smaller than the
input. The whole pipeline runs for real (two network namespaces joined by a
tc-tbf link, device stages slowed ``--slowdown`` times, the planner on this
machine's profiles for the model); a driver inside the device namespace sets
each bandwidth, lets the estimate settle, replays the same frames and records
the plan the frames ran and their latencies.

Run as root: scripts/run.sh python bench/bench_cuts.py [--model NAME]
Writes bench/results/cuts_<model>.json, docs/cuts_<model>.png and docs/cuts.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_testbed
from common import RESULTS, machine

from edgent_ros import testbed
from edgent_ros.card import load_card, resolve_model_path
from edgent_ros.demo.pipeline import emulated_device_overrides, start_on_testbed
from edgent_ros.report import cut_text

DOCS = Path(__file__).resolve().parent.parent / 'docs'


def run_driver(args: argparse.Namespace) -> int:
    bench_testbed.RATE_HZ = args.rate
    driver = bench_testbed.Driver(args.testbed_name)
    rows = []
    for mode in args.modes:
        driver.set(latency_requirement_ms=args.deadline_ms, mode=mode)
        for kbps in args.bandwidths:
            driver.bed.set_rate(kbps)
            row = {'mode': mode, 'bandwidth_kbps': kbps,
                   **driver.level(args.frames, args.settle)}
            rows.append(row)
            print(f'bench_cuts {mode} {kbps:g} kbps: {row}', flush=True)
    Path(args.out).write_text(json.dumps(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='resnet18_digits64')
    parser.add_argument('--bandwidths', type=float, nargs='+',
                        default=[500.0, 1000.0, 2000.0, 5000.0])
    parser.add_argument('--deadline-ms', type=float, default=400.0)
    parser.add_argument('--modes', nargs='+', default=['edgent', 'partition_only'],
                        choices=['edgent', 'partition_only', 'device_only', 'edge_only'],
                        help='planner modes (partition_only: the final exit, best cut)')
    parser.add_argument('--slowdown', type=float, default=20.0)
    parser.add_argument('--rate', type=float, default=2.0, help='camera frames per second')
    parser.add_argument('--frames', type=int, default=10, help='frames per bandwidth')
    parser.add_argument('--settle', type=float, default=10.0, help='seconds before each level')
    parser.add_argument('--driver', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--testbed-name', default='', help=argparse.SUPPRESS)
    parser.add_argument('--out', default='/tmp/edgent_cuts.json')
    args = parser.parse_args(argv)
    if args.driver:
        return run_driver(args)
    why = testbed.available()
    if why:
        print(f'bench_cuts: skipped: the testbed cannot run here: {why}')
        return 0
    card = load_card(resolve_model_path(args.model))
    overrides = emulated_device_overrides(args.slowdown, args.rate, initial_kbps=2000.0,
                                          deadline_ms=args.deadline_ms, model=args.model)
    log_dir = Path('/tmp/edgent_cuts')
    log_dir.mkdir(exist_ok=True)
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    with testbed.Testbed(2000.0) as bed, open(log_dir / 'device.log', 'w') as dlog, \
            open(log_dir / 'edge.log', 'w') as elog:
        start_on_testbed(bed, overrides, None, dlog, elog, model=args.model)
        driver = bed.spawn('device', [
            sys.executable, __file__, '--driver', '--testbed-name', bed.name, '--out', args.out,
            '--rate', str(args.rate), '--frames', str(args.frames), '--settle',
            str(args.settle), '--deadline-ms', str(args.deadline_ms), '--modes', *args.modes,
            '--bandwidths',
            *[str(b) for b in args.bandwidths]])
        if driver.wait() != 0:
            print(f'bench_cuts: the driver failed; logs in {log_dir}')
            return 1
    rows = json.loads(Path(args.out).read_text())
    for row in rows:
        if row.get('frames'):
            layers = card.exit(row['exit']).layers
            row['num_layers'] = len(layers)  # the driver's is the last plan's, not this one's
            p = row['partition']
            row['cut'] = cut_text(card, row['exit'], p)
            row['crossing_bytes'] = layers[p - 1].out_bytes if 0 < p < len(layers) else (
                card.input_bytes if p == 0 else 0)
    report(card, rows, args, started)
    return 0


def report(card: object, rows: list[dict], args: argparse.Namespace, started: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    facts = machine()
    out = {'model': card.name, 'started': started, 'machine': facts, 'args': {
        k: v for k, v in vars(args).items() if k not in ('driver', 'testbed_name')},
        'input_bytes': card.input_bytes, 'rows': rows}
    (RESULTS / f'cuts_{card.name}.json').write_text(json.dumps(out, indent=1))
    ok = [r for r in rows if r.get('frames')]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['mode']}\n{r['bandwidth_kbps']:g} kbps" for r in ok]
    ax.bar(labels, [r['crossing_bytes'] / 1000 for r in ok], color='tab:blue',
           label='bytes that cross at the chosen cut')
    ax.axhline(card.input_bytes / 1000, color='tab:red', ls='--', label='the float input')
    ax.set_ylabel('KB per frame')
    ax.set_title(f'{card.name}: the cut the planner chose (deadline {args.deadline_ms:g} ms)',
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / f'cuts_{card.name}.png', dpi=110)
    lines = [f'# Where the planner cuts {card.name}', '',
             f'Measured {started} on {facts["cpu"]} ({facts["cpus"]} cores): the whole pipeline '
             f'on the emulated testbed (tc tbf link, device stages slowed {args.slowdown:g}x), '
             f'deadline {args.deadline_ms:g} ms, camera at {args.rate:g} Hz, {args.frames} '
             f'frames per bandwidth. Command: `scripts/run.sh python bench/bench_cuts.py '
             f'--model {card.name}` (as root). The input tensor is '
             f'{card.input_bytes / 1000:.1f} KB.', '',
             'Modes: `edgent` (Algorithm 1: exit and cut) and `partition_only` (the final '
             'exit, its best cut: Neurosurgeon).', '',
             '| mode | link | estimate | plan (exit, partition) | where | crosses | predicted | '
             'measured | deadline met | accuracy |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if not r.get('frames'):
            lines.append(f"| {r['mode']} | {r['bandwidth_kbps']:g} kbps | no frames "
                         "| | | | | | | |")
            continue
        lines.append(
            f"| {r['mode']} | {r['bandwidth_kbps']:g} kbps | "
            f"{r['bandwidth_estimate_kbps']:.0f} kbps | "
            f"{r['exit']}, {r['partition']}/{r['num_layers']} | {r['cut']} | "
            f"{r['crossing_bytes'] / 1000:.1f} KB | {r['predicted_ms']:.0f} ms | "
            f"{r['measured_ms']:.0f} ms | {100 * r['deadline_hit_rate']:.0f}% | "
            f"{100 * r['accuracy']:.0f}% |")
    lines += ['', f'![cuts](cuts_{card.name}.png)', '']
    (DOCS / 'cuts.md').write_text('\n'.join(lines))
    print('\n'.join(lines))


if __name__ == '__main__':
    raise SystemExit(main())
