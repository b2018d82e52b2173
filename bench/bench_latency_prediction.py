"""Predicted vs measured latency of the default model, per layer and per whole sub-model.

For each role (the edge: this machine unthrottled; the device: this machine
under a cgroup CPU quota, a Pi-class CPU) the bench profiles the machine with
edgent-profile's sweep, fits the Table I regressions, then times every layer
and every whole sub-model of the default model on real activations and
compares. Target (issue 4): whole-sub-model median absolute percentage
error at most 15%.

Run: make bench   (or: scripts/run.sh python bench/bench_latency_prediction.py)
The throttled role needs root; without it that role is skipped, and says so.
Writes bench/results/latency_prediction.{json,png} and the fitted profiles
bench/results/profile_<role>.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write

from edgent_ros import datasets
from edgent_ros import model as m
from edgent_ros.cpu_quota import QuotaError, cpu_quota
from edgent_ros.profiler import (
    Settings,
    footprint,
    layer_job,
    profile_machine,
    time_call,
    time_jobs,
)

TARGET = 0.15


def ape(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(predicted - measured) / measured


def measure_role(role: str, quota: float | None, net: m.BranchyAlexNet, card: m.ModelCard,
                 x: torch.Tensor, settings: Settings) -> dict[str, object]:
    context = cpu_quota(quota) if quota else contextlib.nullcontext()
    with context as group:
        if group is not None:
            print(f'{role}: under {group.describe()}', flush=True)
        profile = profile_machine(role, f'bench_{role}', card=card, settings=settings,
                                  threads=1, cpu_quota=quota)
        # Every layer of every exit on its real activation, timed the way the
        # profiler times its sweep; every whole sub-model back to back.
        layers, jobs, sizes = [], [], []
        whole = []
        with torch.inference_mode():
            for e in range(1, net.num_exits + 1):
                predicted = profile.predict(card.exit(e).layers)
                h = x
                for info, layer, pred in zip(card.exit(e).layers, net.layers(e), predicted,
                                             strict=True):
                    layers.append({'exit': e, 'layer': info.name, 'type': info.type,
                                   'predicted_ms': float(pred)})
                    jobs.append(layer_job(layer, h))
                    sizes.append(footprint(layer, h, layer(h)))
                    h = layer(h)
                whole.append({'exit': e, 'predicted_ms': float(predicted.sum()),
                              'measured_ms': time_call(lambda e=e: net.run(e, x), settings)})
            for row, ms in zip(layers, time_jobs(jobs, settings, footprints=sizes), strict=True):
                row['measured_ms'] = ms
    profile.save(RESULTS / f'profile_{role}.yaml')
    lp = np.array([r['predicted_ms'] for r in layers])
    lm = np.array([r['measured_ms'] for r in layers])
    wp = np.array([r['predicted_ms'] for r in whole])
    wm = np.array([r['measured_ms'] for r in whole])
    layer_err, whole_err = ape(lp, lm), ape(wp, wm)
    return {
        'role': role, 'cpu_quota': quota, 'layers': layers, 'whole': whole,
        'layer_ape_median': float(np.median(layer_err)),
        'layer_ape_p90': float(np.percentile(layer_err, 90)),
        'whole_ape_median': float(np.median(whole_err)),
        'whole_ape_p90': float(np.percentile(whole_err, 90)),
        'r2': {t: lm_.r2 for t, lm_ in profile.layers.items()},
    }


def pooled(runs: list[dict[str, object]], role: str) -> dict[str, object] | None:
    """One role's rows over every round, with its error figures."""
    mine = [r for r in runs if r['role'] == role]
    if not mine:
        return None
    layers = [row for r in mine for row in r['layers']]
    whole = [row for r in mine for row in r['whole']]
    le = ape(np.array([q['predicted_ms'] for q in layers]),
             np.array([q['measured_ms'] for q in layers]))
    we = ape(np.array([q['predicted_ms'] for q in whole]),
             np.array([q['measured_ms'] for q in whole]))
    return {'role': role, 'cpu_quota': mine[0]['cpu_quota'], 'rounds': len(mine),
            'layers': layers, 'whole': whole,
            'layer_ape_median': float(np.median(le)), 'layer_ape_p90': float(np.percentile(le, 90)),
            'whole_ape_median': float(np.median(we)), 'whole_ape_p90': float(np.percentile(we, 90))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quota', type=float, default=0.15,
                        help='CPU quota of the emulated device (fraction of one core)')
    parser.add_argument('--rounds', type=int, default=3,
                        help='profile-and-measure rounds (this VM drifts by 10-20%% between '
                             'runs; the figures pool every round)')
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net, card = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    split = datasets.load_split(card.dataset, seed=card.seed)
    x = datasets.to_model_input(split.test_images[:1])
    settings = Settings(repeats=9, min_sample_ms=5.0, random_configs=6) if args.quick \
        else Settings()
    runs = []
    device_ok = True
    for round_ in range(args.rounds):
        settings = Settings(**{**settings.__dict__, 'seed': round_})
        runs.append(measure_role('edge', None, net, card, x, settings))
        if device_ok:
            try:
                runs.append(measure_role('device', args.quota, net, card, x, settings))
            except QuotaError as exc:
                print(f'device role skipped: {exc}')
                device_ok = False
    print(f'{"round":>5} {"role":8} {"quota":>6} {"layer APE med":>14} {"p90":>7} '
          f'{"sub-model APE med":>18} {"p90":>7}')
    rounds = [r for r in runs if r['role'] == 'edge']
    for i, r in enumerate(runs):
        quota = f'{r["cpu_quota"]:.2f}' if r['cpu_quota'] else 'none'
        print(f'{i // (1 + device_ok):5d} {r["role"]:8} {quota:>6} '
              f'{100 * r["layer_ape_median"]:13.1f}% {100 * r["layer_ape_p90"]:6.1f}% '
              f'{100 * r["whole_ape_median"]:17.1f}% {100 * r["whole_ape_p90"]:6.1f}%')
    summary = [p for p in (pooled(runs, 'edge'), pooled(runs, 'device')) if p]
    for p in summary:
        print(f'  all {p["rounds"]} rounds, {p["role"]}: layer APE median '
              f'{100 * p["layer_ape_median"]:.1f}% (p90 {100 * p["layer_ape_p90"]:.1f}%), '
              f'whole sub-model APE median {100 * p["whole_ape_median"]:.1f}% '
              f'(p90 {100 * p["whole_ape_p90"]:.1f}%)')
        for w in p['whole'][-5:]:
            print(f'    last round, exit {w["exit"]}: predicted {w["predicted_ms"]:8.3f} ms, '
                  f'measured {w["measured_ms"]:8.3f} ms')
    met = all(p['whole_ape_median'] <= TARGET for p in summary)
    print(f'target: whole-sub-model median error <= {100 * TARGET:.0f}%: '
          f'{"met" if met else "MISSED"} ({len(rounds)} rounds pooled)')
    path = write('latency_prediction', {
        'bench': 'latency_prediction', 'model': card.name, 'machine': machine(),
        'target': TARGET, 'met': met, 'summary': summary, 'runs': runs,
        'command': 'scripts/run.sh python bench/bench_latency_prediction.py'})
    print(f'wrote {path}')
    plot(summary)
    return 0


def plot(runs: list[dict[str, object]]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.6), squeeze=False)
    for ax, r in zip(axes[0], runs, strict=True):
        for rows, label, marker in ((r['layers'], 'layer', '.'),
                                    (r['whole'], 'whole sub-model', 'o')):
            ax.scatter([q['measured_ms'] for q in rows], [q['predicted_ms'] for q in rows],
                       marker=marker, label=label, alpha=0.7)
        values = [q[k] for q in r['layers'] + r['whole'] for k in ('measured_ms',
                                                                     'predicted_ms')]
        lo, hi = max(min(values), 1e-4), max(values)
        ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8, label='exact')
        ax.set_xscale('log')
        ax.set_yscale('log')
        quota = f'CPU quota {r["cpu_quota"]:.2f}' if r['cpu_quota'] else 'unthrottled'
        ax.set_title(f'{r["role"]} ({quota}), {r["rounds"]} rounds: sub-model median '
                     f'error {100 * r["whole_ape_median"]:.1f}%', fontsize=9)
        ax.set_xlabel('measured, ms')
        ax.set_ylabel('predicted, ms')
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which='both')
    fig.tight_layout()
    out = RESULTS / 'latency_prediction.png'
    fig.savefig(out, dpi=120)
    print(f'wrote {out}')


if __name__ == '__main__':
    raise SystemExit(main())
