"""Predicted vs measured latency of every exit of ResNet-18 and MobileNetV3-Small at 224x224.

Per round the bench profiles this machine (1 thread) with edgent-profile's
sweep built around both networks, *holding out* their own stages and layers
at 224x224 (the regressions never see a stage they are then asked to
predict: ``Settings.holdout``), then measures, on random weights:

- edge: each exit's whole sub-model, back to back (``time_call``), against
  the sum of its stages' predictions; and every partition's tail (stages
  [p, N), what the edge runs) against the edge suffix sum the planner uses;
- device: the testbed's emulated device, ``CoInferenceModel(slowdown=k)``
  (each run sleeps until its wall time is k x its median CPU time), running
  each exit whole, against the edge profile slowed k times
  (``Profile.slowed``), as the planner predicts it;
- what summing per-stage times misses: each exit's stages timed in the
  running sub-model (the profiler's chains), alone after unrelated work
  (shuffled passes, the paper's per-layer way), alone back to back (hot),
  and every layer alone with batch norms and activations unmerged.

An allocator check runs the final exit in fresh processes with glibc's
default malloc and with it pinned (``edgent_ros.allocator``).

Run: scripts/run.sh python bench/bench_stage_latency.py   (about 20 min a
round on the 2-core CI host; --quick: a few minutes). Take the figures with
nothing else running (the JSON records the load average and any
edgent-train process). Writes bench/results/stage_latency.{json,png} and the
last round's profile bench/results/profile_stage_edge.yaml.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write

from edgent_ros import latency as lat
from edgent_ros import model as m
from edgent_ros import profiler as pr
from edgent_ros.allocator import pin_allocator
from edgent_ros.inference import CoInferenceModel
from edgent_ros.stages import split

TARGET = 0.10
ARCHS = ('resnet18', 'mobilenet_v3_small')
SLOWDOWN = 250.0  # bench/bench_testbed.py's emulated device
COMMAND = 'scripts/run.sh python bench/bench_stage_latency.py'


def ape(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(predicted - measured) / measured


def others_running(training_only: bool = True) -> list[str]:
    """Command lines of edgent-train (or other training) processes now running
    (with ``training_only`` False: any other edgent_ros process)."""
    found = []
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        if 'edgent-train' in cmd or 'edgent_ros.training' in cmd or \
                (not training_only and 'edgent_ros' in cmd and 'bench_stage_latency' not in cmd
                 and sys.executable.split('/')[-1] in cmd):
            found.append(cmd.strip()[:200])
    return found


def with_card(arch: str, directory: Path) -> tuple[m.BranchyNetwork, m.ModelCard]:
    """A random-weight network (seed 0) saved and loaded back, with its card."""
    torch.manual_seed(0)
    net = m.BranchyNetwork(arch, 10)
    m.save(net, directory, f'bench_{arch}', accuracies=[0.0] * net.num_exits, dataset='none',
           seed=0, training={'note': 'random weights (latency bench)'})
    return m.load(directory / f'bench_{arch}.yaml')


def edge_rows(models: dict[str, tuple[m.BranchyNetwork, m.ModelCard]], profile: lat.Profile,
              inputs: dict[str, torch.Tensor],
              timing: pr.Settings) -> tuple[list[dict], list[dict], list[dict]]:
    """Whole exits and every partition's tail on this machine; what summing stages gives.

    Measured, as a frame's sub-model runs: every whole exit and every tail
    of both networks timed in shuffled passes (``time_jobs``, one chunk),
    each run after unrelated ones. Also each exit back to back (hot).
    """
    whole, tails, sums = [], [], []
    jobs: list[functools.partial] = []
    rows: list[dict] = []
    chains: list[pr.Chain] = []
    stage_rows: list[dict] = []
    with torch.inference_mode():
        for arch, (net, card) in models.items():
            x = inputs[arch]
            latency = lat.SubModelLatency(card, _as_device(profile), profile)
            for e in range(1, net.num_exits + 1):
                stages = net.stages(e)
                infos = card.exit(e).layers
                acts = [x]
                for stage in stages:
                    acts.append(stage(acts[-1]))
                predicted = profile.predict(infos)
                row = {'arch': arch, 'exit': e, 'role': 'edge', 'stages': len(stages),
                       'predicted_ms': float(predicted.sum()),
                       'hot_ms': pr.time_call(functools.partial(net.run, e, x), timing)}
                whole.append(row)
                rows.append(row)
                jobs.append(functools.partial(net.run, e, x))
                for p in range(1, len(stages)):
                    tail = {'arch': arch, 'exit': e, 'partition': p,
                            'predicted_ms': float(latency.exits[e].edge_suffix[p])}
                    tails.append(tail)
                    rows.append(tail)
                    jobs.append(functools.partial(net.run, e, acts[p], p, None))
                chains.append(pr.Chain(stages=list(stages), infos=list(infos),
                                       record=[True] * len(stages), x=x, origin='model'))
                stage_rows.append({'arch': arch, 'exit': e, 'stages': list(stages),
                                   'acts': acts[:-1], 'infos': infos, 'predicted': predicted,
                                   'row': row})
        for row, ms in zip(rows, pr.time_jobs(jobs, timing), strict=True):
            row['measured_ms'] = ms
        in_run = pr.time_chains(chains, timing)
        for item, inrun in zip(stage_rows, in_run, strict=True):
            stages, acts, infos = item['stages'], item['acts'], item['infos']
            stage_jobs = [functools.partial(s, a) for s, a in zip(stages, acts, strict=True)]
            sizes = [i.param_bytes + i.in_bytes + i.out_bytes for i in infos]
            alone = pr.time_jobs(stage_jobs, timing, footprints=sizes)
            hot = [pr.time_call(j, timing) for j in stage_jobs]
            layer_jobs, layer_sizes = [], []
            for stage, a in zip(stages, acts, strict=True):
                h = a
                for layer in split(stage.module, a, merge_elementwise=False):
                    layer_jobs.append(functools.partial(layer, h))
                    out = layer(h)
                    layer_sizes.append(layer.params * 4 + h.numel() * 4 + out.numel() * 4)
                    h = out
            layers = pr.time_jobs(layer_jobs, timing, footprints=layer_sizes)
            row = item['row']
            sums.append({'arch': item['arch'], 'exit': item['exit'],
                         'whole_ms': row['measured_ms'], 'whole_hot_ms': row['hot_ms'],
                         'predicted_ms': row['predicted_ms'],
                         'stages_in_run_ms': float(sum(inrun)),
                         'stages_alone_ms': float(sum(alone)),
                         'stages_hot_ms': float(sum(hot)),
                         'layers_alone_ms': float(sum(layers)), 'layers': len(layer_jobs),
                         'per_stage': [{'name': i.name, 'key': lat.stage_key(i),
                                        'predicted_ms': float(pm), 'in_run_ms': float(a),
                                        'alone_ms': float(b), 'hot_ms': float(c)}
                                       for i, pm, a, b, c in zip(infos, item['predicted'], inrun,
                                                                 alone, hot, strict=True)]})
    return whole, tails, sums


def _as_device(profile: lat.Profile) -> lat.Profile:
    """The same models in the device role (for SubModelLatency's suffix sums)."""
    return lat.Profile(name=profile.name, role='device', source=profile.source,
                       machine=profile.machine, layers=profile.layers)


def device_rows(net: m.BranchyNetwork, card: m.ModelCard, profile: lat.Profile,
                x: torch.Tensor, slowdown: float, budget_s: float) -> list[dict]:
    """Each exit whole on the emulated device against this host's profile
    slowed ``slowdown`` times. The exits take turns (the host's speed after
    an idle spell drifts over minutes), each run as often as ``budget_s``
    allows (3 to 15 runs), the median wall time taken."""
    device = profile.slowed(slowdown)
    emulated = CoInferenceModel(net, card, slowdown=slowdown)
    emulated.warm_up()
    exits = range(1, net.num_exits + 1)
    predicted = {e: float(device.predict(card.exit(e).layers).sum()) for e in exits}
    runs = int(np.clip(budget_s * 1e3 / sum(predicted.values()), 3, 15))
    walls: dict[int, list[float]] = {e: [] for e in exits}
    for _ in range(runs):
        for e in exits:
            start = time.perf_counter()
            emulated.head(e, net.num_layers(e), x)
            walls[e].append((time.perf_counter() - start) * 1e3)
    return [{'arch': net.architecture, 'exit': e, 'role': 'device', 'stages': net.num_layers(e),
             'slowdown': slowdown, 'predicted_ms': predicted[e],
             'measured_ms': float(np.median(walls[e])), 'runs_ms': walls[e]} for e in exits]


ALLOCATOR_CODE = '''
import json, resource, sys, time
import torch
from edgent_ros import model as m
from edgent_ros.allocator import pin_allocator
arch, pin = sys.argv[1], sys.argv[2] == 'pinned'
if pin:
    pin_allocator()
torch.set_num_threads(1)
net = m.BranchyNetwork(arch, 10).eval()
x = torch.rand(1, *net.input_shape)
e = net.num_exits
with torch.inference_mode():
    for _ in range(5):
        net.run(e, x)
    flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(40):
        start = time.thread_time_ns()
        net.run(e, x)
        times.append(time.thread_time_ns() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt) / 40
times.sort()
print(json.dumps({'ms': times[len(times) // 2] / 1e6, 'faults_per_run': faults}))
'''


def allocator_check(processes: int) -> list[dict[str, Any]]:
    """The final exit's CPU ms per run and page faults per run in fresh
    processes, glibc's malloc as it is and pinned."""
    rows = []
    for arch in ARCHS:
        for mode in ('default', 'pinned'):
            for i in range(processes):
                out = subprocess.run([sys.executable, '-c', ALLOCATOR_CODE, arch, mode],
                                     capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    print(out.stderr[-2000:])
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({'arch': arch, 'allocator': mode, 'process': i, **row})
                print(f'  allocator {arch:20} {mode:8} process {i}: {row["ms"]:7.2f} ms, '
                      f'{row["faults_per_run"]:6.0f} page faults per run', flush=True)
    return rows


def summarise(rows: list[dict], key: str = 'arch') -> dict[str, Any]:
    if not rows:
        return {}
    err = ape(np.array([r['predicted_ms'] for r in rows]),
              np.array([r['measured_ms'] for r in rows]))
    signed = np.array([r['predicted_ms'] / r['measured_ms'] - 1 for r in rows])
    return {'n': len(rows), 'ape_median': float(np.median(err)),
            'ape_max': float(err.max()), 'within_10': float(np.mean(err <= 0.10)),
            'signed_median': float(np.median(signed))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=2,
                        help='profile-and-measure rounds, pooled (this VM drifts between runs)')
    parser.add_argument('--slowdown', type=float, default=SLOWDOWN,
                        help='the emulated device\'s factor (default: the testbed\'s 250)')
    parser.add_argument('--device-idle-ms', type=float, default=50.0,
                        help='the device profile times each chain after this long asleep (15 '
                             'passes), as the emulated device runs a frame after sleeping (0: '
                             'as the edge)')
    parser.add_argument('--device-seconds', type=float, default=150.0,
                        help='emulated-device time per architecture and round: each exit runs '
                             'as often as this allows, 3 to 15 times (median taken)')
    parser.add_argument('--allocator-processes', type=int, default=4,
                        help='fresh processes per architecture and allocator (0: skip)')
    parser.add_argument('--quick', action='store_true', help='a small sweep, a 20x device')
    args = parser.parse_args(argv)
    pin_allocator()
    torch.set_num_threads(1)
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    load_before, training_before = os.getloadavg(), others_running()
    others_before = others_running(False)
    if training_before:
        print(f'WARNING: training is running, figures taken under load: {training_before}')
    base = pr.QUICK if args.quick else pr.Settings()
    timing = pr.Settings(repeats=5, warmup=1, min_sample_ms=5.0) if args.quick else \
        pr.Settings(repeats=15, warmup=2, min_sample_ms=20.0)
    slowdown = 20.0 if args.quick and args.slowdown == SLOWDOWN else args.slowdown
    budget = 10.0 if args.quick else args.device_seconds
    whole: list[dict] = []
    tails: list[dict] = []
    sums: list[dict] = []
    fits: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {arch: with_card(arch, Path(tmp)) for arch in ARCHS}
        torch.manual_seed(1)
        inputs = {arch: torch.rand(1, *models[arch][1].input_shape) for arch in ARCHS}
        for round_ in range(args.rounds):
            settings = pr.Settings(**{**base.__dict__, 'seed': round_, 'holdout': True})
            t0 = time.time()
            profile = pr.profile_machine('edge', 'bench_stage_edge', card=None,
                                         nets=[models[a][0] for a in ARCHS], settings=settings,
                                         threads=1)
            device_profile = pr.profile_machine(
                'device', 'bench_stage_device', card=None, nets=[models[a][0] for a in ARCHS],
                settings=pr.Settings(**{**settings.__dict__, 'idle_ms': args.device_idle_ms,
                                        'cpu_time': True,
                                        'repeats': min(settings.repeats, 15)}),
                threads=1, progress=False)
            print(f'round {round_}: profiled in {time.time() - t0:.0f} s', flush=True)
            fits.append({'round': round_, 'models': {
                k: {'r2': lm.r2, 'samples': lm.samples, 'coef': lm.coef,
                    'intercept': lm.intercept, 'variables': lm.variables}
                for k, lm in profile.layers.items()}})
            w, t, s = edge_rows(models, profile, inputs, timing)
            d = [row for arch in ARCHS for row in device_rows(
                *models[arch], device_profile, inputs[arch], slowdown, budget)]
            for rows in (w, t, s, d):
                for row in rows:
                    row['round'] = round_
            whole += w + d
            tails += t
            sums += s
            for arch in ARCHS:
                for row in [r for r in w + d if r['arch'] == arch]:
                    hot = f', back to back {row["hot_ms"]:7.2f} ms' if 'hot_ms' in row else ''
                    print(f'  {arch:20} exit {row["exit"]} {row["role"]:6} predicted '
                          f'{row["predicted_ms"]:9.2f} ms, measured {row["measured_ms"]:9.2f} ms'
                          f' ({100 * (row["predicted_ms"] / row["measured_ms"] - 1):+.1f}%)'
                          + hot, flush=True)
            profile.save(RESULTS / 'profile_stage_edge.yaml')
            device_profile.save(RESULTS / 'profile_stage_device.yaml')
    allocator = allocator_check(args.allocator_processes)
    summary: dict[str, Any] = {}
    for arch in ARCHS:
        summary[arch] = {
            role: summarise([r for r in whole if r['arch'] == arch and r['role'] == role])
            for role in ('edge', 'device')}
        summary[arch]['edge_tails'] = summarise([r for r in tails if r['arch'] == arch])
        summary[arch]['edge_hot'] = summarise([{**r, 'measured_ms': r['hot_ms']} for r in whole
                                               if r['arch'] == arch and r['role'] == 'edge'])
        mine = [s for s in sums if s['arch'] == arch]
        summary[arch]['sum_over_whole'] = {
            k: float(np.median([s[k] / s['whole_ms'] for s in mine]))
            for k in ('whole_hot_ms', 'stages_in_run_ms', 'stages_alone_ms', 'stages_hot_ms',
                      'layers_alone_ms', 'predicted_ms')}
    met = all(summary[a][r]['ape_median'] <= TARGET for a in ARCHS for r in ('edge', 'device'))
    print(f'{"architecture":20} {"role":12} {"n":>3} {"median |err|":>12} {"max":>7} '
          f'{"within 10%":>10}')
    for arch in ARCHS:
        for role in ('edge', 'device', 'edge_tails', 'edge_hot'):
            s = summary[arch][role]
            print(f'{arch:20} {role:12} {s["n"]:3d} {100 * s["ape_median"]:11.1f}% '
                  f'{100 * s["ape_max"]:6.1f}% {100 * s["within_10"]:9.0f}%')
        print(f'{"":20} sum / whole: ' + ', '.join(
            f'{k.replace("_ms", "")} {v:.3f}' for k, v in summary[arch]['sum_over_whole'].items()))
    print(f'target: whole-sub-model median error <= {100 * TARGET:.0f}% for every architecture '
          f'and role: {"met" if met else "MISSED"} ({args.rounds} rounds pooled)')
    training_after = others_running()
    path = write('stage_latency', {
        'bench': 'stage_latency', 'machine': machine(), 'started': started,
        'command': COMMAND + (' --quick' if args.quick else ''), 'args': vars(args),
        'slowdown': slowdown, 'target': TARGET, 'met': met, 'summary': summary,
        'load_before': load_before, 'load_after': os.getloadavg(),
        'training_running': training_before + training_after,
        'other_edgent_processes': {'before': others_before, 'after': others_running(False)},
        'whole': whole, 'tails': tails, 'sums': sums, 'allocator': allocator, 'fits': fits})
    print(f'wrote {path}')
    plot(summary, whole, tails, sums, slowdown)
    return 0


def plot(summary: dict[str, Any], whole: list[dict], tails: list[dict], sums: list[dict],
         slowdown: float) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ARCHS), 3, figsize=(15, 4.6 * len(ARCHS)), squeeze=False)
    for row, arch in zip(axes, ARCHS, strict=True):
        for ax, role in zip(row[:2], ('edge', 'device'), strict=True):
            mine = [r for r in whole if r['arch'] == arch and r['role'] == role]
            if role == 'edge':
                t = [r for r in tails if r['arch'] == arch and r['partition'] > 0]
                ax.scatter([r['measured_ms'] for r in t], [r['predicted_ms'] for r in t],
                           marker='.', alpha=0.5, label='tail [p, N), p > 0')
            ax.scatter([r['measured_ms'] for r in mine], [r['predicted_ms'] for r in mine],
                       marker='o', label='whole exit')
            for r in mine:
                ax.annotate(str(r['exit']), (r['measured_ms'], r['predicted_ms']), fontsize=7,
                            xytext=(3, -8), textcoords='offset points')
            values = [r[k] for r in mine for k in ('measured_ms', 'predicted_ms')]
            if role == 'edge':
                values += [r[k] for r in tails if r['arch'] == arch
                           for k in ('measured_ms', 'predicted_ms')]
            lo, hi = max(min(values) * 0.8, 1e-3), max(values) * 1.2
            grid = np.geomspace(lo, hi, 50)
            ax.plot(grid, grid, 'k--', lw=0.8, label='exact')
            ax.fill_between(grid, grid * 0.9, grid * 1.1, color='grey', alpha=0.15,
                            label='+-10%')
            ax.set_xscale('log')
            ax.set_yscale('log')
            s = summary[arch][role]
            what = f'emulated device ({slowdown:g}x)' if role == 'device' else 'edge (this host)'
            ax.set_title(f'{arch}, {what}:\nmedian error {100 * s["ape_median"]:.1f}%, '
                         f'{100 * s["within_10"]:.0f}% of exits within 10%', fontsize=9)
            ax.set_xlabel('measured, ms')
            ax.set_ylabel('predicted, ms')
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, which='both')
        ax = row[2]
        mine = [s for s in sums if s['arch'] == arch]
        keys = [('predicted_ms', 'predicted (sum)'), ('whole_hot_ms', 'whole, back to back'),
                ('stages_in_run_ms', 'stages in the run'),
                ('stages_alone_ms', 'stages alone'), ('stages_hot_ms', 'stages hot'),
                ('layers_alone_ms', 'layers alone')]
        exits = sorted({s['exit'] for s in mine})
        width = 0.8 / len(keys)
        for k, (key, label) in enumerate(keys):
            ratios = [np.median([s[key] / s['whole_ms'] for s in mine if s['exit'] == e])
                      for e in exits]
            ax.bar(np.array(exits) + (k - len(keys) / 2 + 0.5) * width, ratios, width,
                   label=label)
        ax.axhline(1.0, color='k', lw=0.8)
        ax.axhspan(0.9, 1.1, color='grey', alpha=0.15)
        ax.set_xticks(exits)
        ax.set_xlabel('exit')
        ax.set_ylabel('sum / whole sub-model measured')
        ax.set_title(f'{arch}: per-stage sums against the whole sub-model', fontsize=9)
        ax.legend(fontsize=7)
        ax.set_ylim(0.5, 1.5)
    fig.tight_layout()
    out = RESULTS / 'stage_latency.png'
    fig.savefig(out, dpi=110)
    print(f'wrote {out}')


if __name__ == '__main__':
    raise SystemExit(main())
