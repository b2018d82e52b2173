"""Planner decision time (Algorithm 1), and the paper-profile decisions as plots.

Decision time: one ``Planner.plan`` call (bandwidth and deadline varying
from call to call) for the default model (5 exits, 89 partition points), for
a synthetic model of 20 exits and 1000 layers in all, and for the built-in
ResNet-18 and MobileNetV3-Small with exits at 224x224 (their real stages).
Goals: median at most 20 us and at most 1 ms (issue 5); at most 50 us for
the largest built-in model (issue 16).
Run: make bench   (or: scripts/run.sh python bench/bench_planner.py)
Writes bench/results/planner.json and bench/results/planner_table2.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write

from edgent_ros import latency as lat
from edgent_ros import model as m
from edgent_ros.planner import ExitCosts, Planner

GOALS_US = {'default model': 20.0, 'default model, every codec': 50.0,
            'synthetic 20 exits, 1000 layers': 1000.0,
            'resnet18 224x224': 50.0, 'mobilenet_v3_small 224x224': 50.0}


def built_in(architecture: str, size: int = 224) -> Planner:
    """A planner for a built-in architecture with exits: its real stages and
    bytes (read off the traced network), stage latencies in proportion to
    their FLOPs (decision time does not depend on the values)."""
    net = m.BranchyNetwork(architecture, 10, (3, size, size))
    costs = []
    for e in range(1, net.num_exits + 1):
        infos = m.layer_infos(net, e)
        flops = np.array([max(1, i.flops) for i in infos], dtype=float)
        costs.append(ExitCosts(
            exit_point=e, accuracy=0.6 + 0.1 * e, device_layers_ms=flops / 2e7,
            edge_layers_ms=flops / 4e8,
            upload_bytes=[infos[0].in_bytes, *[i.out_bytes for i in infos[:-1]], 0],
            result_bytes=40))
    return Planner(costs, message_ms=2.0)


def synthetic(exits: int = 20, layers: int = 1000, seed: int = 0) -> Planner:
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(layers - exits, np.ones(exits) / exits) + 1
    costs = []
    for e, n in enumerate(sizes, start=1):
        costs.append(ExitCosts(
            exit_point=e, accuracy=0.5 + 0.4 * e / exits,
            device_layers_ms=rng.uniform(0.1, 20, n), edge_layers_ms=rng.uniform(0.01, 2, n),
            upload_bytes=[*rng.integers(1000, 200_000, n), 0], result_bytes=40))
    return Planner(costs, message_ms=2.0)


def decision_times(planner: Planner, repeats: int = 20000) -> dict[str, float]:
    rng = np.random.default_rng(1)
    bws = rng.uniform(20, 5000, repeats)
    deadlines = rng.uniform(50, 2000, repeats)
    for i in range(200):
        planner.plan(float(bws[i]), float(deadlines[i]))
    samples = np.empty(repeats)
    clock = time.perf_counter_ns
    for i in range(repeats):
        b, d = float(bws[i]), float(deadlines[i])
        start = clock()
        planner.plan(b, d)
        samples[i] = (clock() - start) / 1e3
    return {'median_us': float(np.median(samples)), 'p90_us': float(np.percentile(samples, 90)),
            'p99_us': float(np.percentile(samples, 99)), 'layers': planner.total_layers,
            'configurations': len(planner.configurations),
            'exits': len(planner.exits)}


def main() -> int:
    card = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))
    device = lat.load_profile(lat.resolve_profile_path('paper_pi3_device'))
    edge = lat.load_profile(lat.resolve_profile_path('paper_desktop_edge'))
    paper = Planner.from_latency(lat.SubModelLatency(card, device, edge), message_ms=2.0,
                                 codecs=())
    coded = Planner.from_latency(lat.SubModelLatency(
        card, lat.with_codec_fallback(device)[0], lat.with_codec_fallback(edge)[0]),
        message_ms=2.0)
    codecs = sorted({c for _, _, c in coded.configurations} - {''})
    rows = {'default model': decision_times(paper),
            'default model, every codec': {**decision_times(coded), 'codecs': codecs},
            'synthetic 20 exits, 1000 layers': decision_times(synthetic(), repeats=5000),
            'resnet18 224x224': decision_times(built_in('resnet18')),
            'mobilenet_v3_small 224x224': decision_times(built_in('mobilenet_v3_small'))}
    print(f'{"planner":34} {"exits":>5} {"configs":>7} {"median us":>10} {"p90 us":>8} '
          f'{"p99 us":>8} {"goal us":>8}')
    met = True
    for label, r in rows.items():
        r['goal_us'] = GOALS_US[label]
        r['met'] = r['median_us'] <= r['goal_us']
        met = met and r['met']
        print(f'{label:34} {r["exits"]:5d} {r["configurations"]:7d} {r["median_us"]:10.1f} '
              f'{r["p90_us"]:8.1f} {r["p99_us"]:8.1f} {r["goal_us"]:8.0f}')
    print(f'goals: {"met" if met else "MISSED"}')
    path = write('planner', {'bench': 'planner', 'machine': machine(), 'rows': rows,
                             'met': met, 'command': 'scripts/run.sh python bench/bench_planner.py'})
    print(f'wrote {path}')
    plot(paper)
    return 0


def plot(planner: Planner) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    bws = np.linspace(50, 2000, 80)
    deadlines = np.linspace(100, 1000, 80)
    by_bw = [planner.plan(float(b), 1000.0) for b in bws]
    by_deadline = [planner.plan(500.0, float(t)) for t in deadlines]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, xs, ds, xlabel, title in (
            (axes[0], bws, by_bw, 'uplink bandwidth, kbps', 'deadline 1000 ms'),
            (axes[1], deadlines, by_deadline, 'deadline, ms', 'bandwidth 500 kbps')):
        ax.step(xs, [d.exit_point if d.feasible else 0 for d in ds], where='post',
                label='exit point (0 = none meets the deadline)')
        ax.step(xs, [d.partition for d in ds], where='post', label='partition point')
        ax2 = ax.twinx()
        ax2.plot(xs, [d.total_ms for d in ds], 'k:', lw=1, label='predicted latency')
        ax2.set_ylabel('predicted latency, ms')
        ax.set_xlabel(xlabel)
        ax.set_title(f'Table II profiles, default model, {title}', fontsize=9)
        ax.legend(fontsize=7, loc='center right')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = RESULTS / 'planner_table2.png'
    fig.savefig(out, dpi=120)
    print(f'wrote {out}')


if __name__ == '__main__':
    raise SystemExit(main())
