"""Latency regression, profiles, prediction, the profiler and the CPU quota."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgent_ros import latency as lat
from edgent_ros import model as m
from edgent_ros.cpu_quota import CpuGroup, QuotaError, cpu_quota, period_for

from .conftest import executable


@pytest.fixture(scope='module')
def card() -> m.ModelCard:
    return m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))


def paper(role: str) -> lat.Profile:
    name = 'paper_pi3_device' if role == 'device' else 'paper_desktop_edge'
    return lat.load_profile(lat.resolve_profile_path(name))


def test_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform([1e3, 10], [1e6, 5e3], size=(60, 2))
    y = 2.5e-5 * x[:, 0] + 3e-3 * x[:, 1] + 0.4
    y_noisy = y * rng.normal(1.0, 0.01, size=len(y))
    fitted = lat.fit_layer_model(x, y_noisy, ('in_bytes', 'filter_term'))
    assert fitted.coef == pytest.approx([2.5e-5, 3e-3], rel=0.05)
    assert fitted.intercept == pytest.approx(0.4, abs=0.1)
    assert fitted.r2 > 0.99 and fitted.samples == 60
    assert fitted.ranges['in_bytes'][0] == pytest.approx(x[:, 0].min())
    exact = lat.fit_layer_model(x, y, ('in_bytes', 'filter_term'))
    assert exact.coef == pytest.approx([2.5e-5, 3e-3], rel=1e-6)
    assert exact.intercept == pytest.approx(0.4, rel=1e-6)


def test_profile_yaml_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    layers = {}
    for kind, variables in lat.ALL_VARIABLES.items():
        x = rng.uniform(1, 1e5, size=(10, len(variables)))
        layers[kind] = lat.fit_layer_model(x, x.sum(axis=1) * 1e-4 + 0.05, variables)
    profile = lat.Profile(name='rt', role='edge', source='test', machine={'cpu': 'x'},
                          layers=layers)
    loaded = lat.load_profile(profile.save(tmp_path / 'rt.yaml'))
    assert loaded.to_dict() == profile.to_dict()


def test_table_two_profiles_give_the_papers_formulas() -> None:
    # The profiles hold Table II with its columns swapped (see the files'
    # notes): the Pi gets the column printed as "Edge Server model".
    pi, desktop = paper('device'), paper('edge')

    def info(kind: str, in_bytes: int, out_bytes: int = 0, filter_size: int = 0,
             stride: int = 1, filters: int = 0) -> m.LayerInfo:
        return m.LayerInfo(index=0, name='x', type=kind, in_shape=[], out_shape=[],
                           in_bytes=in_bytes, out_bytes=out_bytes, filter_size=filter_size,
                           stride=stride, num_filters=filters)

    conv = info('conv', 12288, filter_size=5, stride=1, filters=32)  # x2 = 25 * 32 = 800
    assert desktop.predict([conv])[0] == pytest.approx(6.03e-5 * 12288 + 1.24e-4 * 800 + 0.189)
    assert pi.predict([conv])[0] == pytest.approx(6.13e-3 * 12288 + 2.67e-2 * 800 - 9.909)
    small = info('conv', 100, filter_size=3, stride=1, filters=8)
    assert pi.predict([small])[0] == 0.0  # 6.13e-3*100 + 2.67e-2*72 - 9.909 < 0: clamped
    # (layer, printed "Mobile Device model", printed "Edge Server model")
    cases = [
        (info('relu', 5000), 5.6e-6 * 5000 + 5.69e-2, 1.5e-5 * 5000 + 4.88e-1),
        (info('pool', 8000, 2000), 1.63e-5 * 8000 + 4.07e-6 * 2000 + 2.11e-1,
         1.33e-4 * 8000 + 3.31e-5 * 2000 + 1.657),
        (info('lrn', 4096), 6.59e-5 * 4096 + 7.80e-2, 5.19e-4 * 4096 + 5.89e-1),
        (info('dropout', 1024), 5.23e-6 * 1024 + 4.64e-3, 2.34e-6 * 1024 + 0.0525),
        (info('fc', 4096, 1024), 1.07e-4 * 4096 - 1.83e-4 * 1024 + 0.164,
         9.18e-4 * 4096 + 3.99e-3 * 1024 + 1.169),
    ]
    for layer, printed_device, printed_edge in cases:
        assert desktop.predict([layer])[0] == pytest.approx(printed_device), layer.type
        assert pi.predict([layer])[0] == pytest.approx(printed_edge), layer.type
    assert desktop.model_load_ms(10_000_000) == pytest.approx(1.33e-6 * 1e7 + 2.182)
    assert pi.model_load_ms(10_000_000) == pytest.approx(4.49e-6 * 1e7 + 842.136)


def test_profile_lacking_a_layer_type_is_refused(card: m.ModelCard) -> None:
    device = paper('device')
    del device.layers['lrn']
    with pytest.raises(lat.ProfileError, match=r"no latency model for layer type\(s\) lrn"):
        lat.SubModelLatency(card, device, paper('edge'))


def test_bad_profile_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(lat.ProfileError, match='profile not found'):
        lat.load_profile(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('layers: {conv: {variables: [in_bytes], coef: [1.0], intercept: 0}}\n'
                   'role: device\n')
    with pytest.raises(lat.ProfileError, match='must regress on'):
        lat.load_profile(bad)
    bad.write_text('layers: {}\nrole: cloud\n')
    with pytest.raises(lat.ProfileError, match='role must be one of'):
        lat.load_profile(bad)
    bad.write_text(': not yaml : [')
    with pytest.raises(lat.ProfileError, match='not valid YAML'):
        lat.load_profile(bad)


def test_far_outside_the_fitted_range_is_flagged() -> None:
    lm = lat.fit_layer_model(np.array([[100.0], [200.0], [400.0]]),
                             np.array([1.0, 2.0, 4.0]), ('in_bytes',))
    assert lm.outside([300.0]) == []
    assert 'in_bytes=1000' in lm.outside([1000.0])[0]
    assert lm.outside([10.0])


def test_partition_latency_device_first(card: m.ModelCard) -> None:
    from edgent_ros.planner import Planner

    planner = Planner.from_latency(lat.SubModelLatency(card, paper('device'), paper('edge')),
                                   message_ms=2.0)
    offset = 0
    for e in range(1, 6):
        infos = card.exit(e).layers
        n = len(infos)
        ed = paper('device').predict(infos)
        es = paper('edge').predict(infos)
        totals = planner.latencies(500.0)[offset:offset + n + 1]
        offset += n + 1
        assert len(totals) == n + 1
        for p in range(n + 1):
            up = card.input_bytes if p == 0 else (0 if p == n else infos[p - 1].out_bytes)
            down = (infos[-1].out_bytes * 8 / 500.0 + 2.0) if p < n else 0.0
            brute = ed[:p].sum() + up * 8 / 500.0 + es[p:].sum() + down
            assert totals[p] == pytest.approx(brute)
            b = planner.evaluate(e, p, 500.0, 1e9)
            assert b.total_ms == pytest.approx(brute) and b.upload_bytes == up
        assert planner.evaluate(e, n, 500.0, 1e9).upload_ms == 0.0  # device only: nothing sent


def test_profiler_quick_run_writes_a_usable_profile(tmp_path: Path, card: m.ModelCard) -> None:
    out = tmp_path / 'quick_edge.yaml'
    result = subprocess.run([executable('edgent-profile'), '--role', 'edge', '--quick',
                             '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    profile = lat.load_profile(out)
    assert profile.role == 'edge' and profile.machine['threads'] == 1
    assert set(profile.layers) == set(lat.VARIABLES)
    assert profile.layers['conv'].r2 > 0.5
    from edgent_ros.planner import Planner
    predicted = Planner.from_latency(lat.SubModelLatency(card, lat.load_profile(
        lat.resolve_profile_path('paper_pi3_device')), profile)).latencies(1000.0)
    assert np.all(predicted > 0)


def test_cpu_quota_slows_the_process_down() -> None:
    if os.geteuid() != 0:
        pytest.skip('a cgroup CPU quota needs root')

    def spin(seconds: float) -> float:
        start = time.process_time()
        while time.process_time() - start < seconds:
            pass
        return time.process_time() - start

    wall = time.perf_counter()
    with cpu_quota(0.2) as group:
        cpu = spin(0.1)
        assert os.getpid() in group.pids()
        path = group.path
    elapsed = time.perf_counter() - wall
    assert elapsed > 2.5 * cpu, (elapsed, cpu)  # 20% of a core: about 5x slower
    assert not path.exists()  # removed on exit


def _create_as_nobody(queue: multiprocessing.Queue) -> None:
    os.setgid(65534)
    os.setuid(65534)
    try:
        CpuGroup(0.2).create()
        queue.put('created')
    except QuotaError as exc:
        queue.put(str(exc))


def test_cpu_quota_is_refused_clearly_without_root() -> None:
    if os.geteuid() != 0:
        pytest.skip('needs root to drop to an unprivileged user')
    queue: multiprocessing.Queue = multiprocessing.get_context('fork').Queue()
    child = multiprocessing.get_context('fork').Process(target=_create_as_nobody, args=(queue,))
    child.start()
    child.join(30)
    message = queue.get(timeout=5)
    assert 'needs root' in message and 'refusing to run unthrottled' in message


def test_quota_period_respects_the_kernel_minimum() -> None:
    assert period_for(0.15) == (1000, 6667)
    assert period_for(0.05) == (1000, 20000)
    assert period_for(0.15, 10_000) == (1500, 10000)
    assert period_for(2.0) == (2000, 1000)
    with pytest.raises(QuotaError, match='positive fraction'):
        period_for(0.0)


def test_a_slowed_profile_scales_every_layer_but_model_loading() -> None:
    base = lat.load_profile(lat.resolve_profile_path('paper_desktop_edge'))
    slow = base.slowed(400.0)
    for kind, lm in base.layers.items():
        factor = 1.0 if kind == 'model_load' else 400.0
        assert slow.layers[kind].coef == pytest.approx([c * factor for c in lm.coef])
        assert slow.layers[kind].intercept == pytest.approx(lm.intercept * factor)
    assert slow.machine['emulated_slowdown'] == 400.0
    with pytest.raises(lat.ProfileError, match='>= 1'):
        base.slowed(0.5)


def test_emulated_slowdown_stretches_the_layers_wall_time(card: m.ModelCard) -> None:
    import torch

    from edgent_ros.inference import CoInferenceModel

    net, card = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    x = torch.zeros(1, 3, 32, 32)
    slow = CoInferenceModel(net, card, slowdown=30.0)
    slow.head(5, 22, x)  # warm up
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    slow.head(5, 22, x)
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    assert wall >= 20 * cpu  # about 30x: the thread sleeps 29x its compute
    with pytest.raises(ValueError, match='slowdown'):
        CoInferenceModel(net, card, slowdown=0.5)


def test_warm_up_runs_every_exit_at_full_speed_and_records_nothing() -> None:
    from edgent_ros.inference import CoInferenceModel

    net, card = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    slow = CoInferenceModel(net, card, slowdown=100000.0)
    start = time.perf_counter()
    slow.warm_up()
    assert time.perf_counter() - start < 30.0  # slowed 100000x it would take minutes
    assert slow.cpu_history == {}  # the slowed runs' median is not skewed by it


def test_emulated_slowdown_follows_the_median_run_not_one_runs_jitter() -> None:
    import collections

    import torch

    from edgent_ros.inference import CoInferenceModel

    net, card = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    x = torch.zeros(1, 3, 32, 32)
    slow = CoInferenceModel(net, card, slowdown=30.0)
    slow.warm_up()  # the first run's cost is torch's, not the layers'
    # This run of layers has taken 3 ms of CPU in each of its last runs: one
    # more run, however quick, takes 30 x 3 ms, as the device it emulates would.
    slow.cpu_history[(5, 0, 22)] = collections.deque([0.003] * 14,
                                                     maxlen=CoInferenceModel.SLOW_HISTORY)
    wall0 = time.perf_counter()
    slow.head(5, 22, x)
    wall = time.perf_counter() - wall0
    assert 0.085 <= wall < 0.5
    assert len(slow.cpu_history[(5, 0, 22)]) == CoInferenceModel.SLOW_HISTORY
    assert slow.cpu_history[(5, 0, 22)][-1] != 0.003  # the real run's CPU time was recorded


# --- stages of the other architectures (issue 16) ------------------------------------

def saved_card(arch: str, directory: Path) -> m.ModelCard:
    """A random-weight network's card at its default size (224x224 for these)."""
    net = m.BranchyNetwork(arch, 10)
    _, card_path = m.save(net, directory, arch, accuracies=[0.1] * net.num_exits,
                          dataset='none', seed=0, training={})
    return m.load_card(card_path)


STAGE_KEYS = {
    'resnet18': {'conv_fused', 'pool', 'block_residual', 'adaptive_pool', 'flatten', 'fc'},
    'mobilenet_v3_small': {'conv_fused', 'conv_dw', 'block_se', 'block_inverted',
                           'block_inverted_se', 'adaptive_pool', 'flatten', 'fc', 'fc_fused'},
}


def test_every_stage_has_a_key_and_the_alexnets_are_the_papers_types(card: m.ModelCard) -> None:
    for e in card.exits:
        assert [lat.stage_key(li) for li in e.layers] == [li.type for li in e.layers]
    for arch, keys in STAGE_KEYS.items():
        net = m.BranchyNetwork(arch, 10)
        found = {lat.stage_key(li) for e in range(1, net.num_exits + 1)
                 for li in m.layer_infos(net, e)}
        assert found == keys, arch
        assert keys <= set(lat.ALL_VARIABLES)
    # A card without ops (older cards) counts a stage as one layer of its type.
    bare = m.LayerInfo(index=0, name='x', type='conv', in_shape=[], out_shape=[], in_bytes=1,
                       out_bytes=1)
    assert lat.stage_key(bare) == 'conv'
    merged = m.LayerInfo(**{**bare.__dict__, 'ops': ['conv', 'batchnorm', 'relu']})
    assert lat.stage_key(merged) == 'conv_fused'
    inception = m.LayerInfo(**{**bare.__dict__, 'type': 'block',
                               'ops': ['conv', 'conv', 'concat']})
    assert lat.stage_key(inception) == 'block'  # no model: refused by name


def test_the_alexnets_predictions_from_the_paper_profiles_are_unchanged(
        card: m.ModelCard) -> None:
    # Exit: (device ms, edge ms) of the whole sub-model, computed with the
    # latency module as it was before stage keys (commit f1635c7).
    before = {1: (332.138061, 10.01552), 2: (480.741571, 14.008687),
              3: (813.203322, 17.809064), 4: (831.422255, 18.453231),
              5: (838.121605, 18.604719)}
    latency = lat.SubModelLatency(card, paper('device'), paper('edge'))
    for e, (device_ms, edge_ms) in before.items():
        assert latency.exits[e].device_prefix[-1] == pytest.approx(device_ms, abs=1e-5)
        assert latency.exits[e].edge_suffix[0] == pytest.approx(edge_ms, abs=1e-5)


def test_a_profile_lacking_a_stage_key_is_refused_naming_it(tmp_path: Path) -> None:
    # The paper's profiles know Table I's types only.
    resnet = saved_card('resnet18', tmp_path)
    with pytest.raises(lat.ProfileError, match=r"layer type\(s\) adaptive_pool, block_residual, "
                                               r'conv_fused that the model uses'):
        lat.SubModelLatency(resnet, paper('device'), paper('edge'))


def test_stage_fits_are_non_negative() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(1e3, 1e6, size=(30, 2))
    y = 1e-6 * x[:, 0] + 0.05 + rng.normal(0, 1e-3, size=30)  # x[:, 1] plays no part
    fitted = lat.fit_layer_model(x, np.abs(y), ('in_bytes', 'out_bytes'), positive=True)
    assert min(fitted.coef) >= 0 and fitted.intercept >= 0
    assert fitted.coef[0] == pytest.approx(1e-6, rel=0.1)


def test_quick_profile_covers_every_stage_of_both_architectures(tmp_path: Path) -> None:
    edge_path, device_path = tmp_path / 'edge.yaml', tmp_path / 'device.yaml'
    result = subprocess.run(
        [executable('edgent-profile'), '--role', 'edge', '--quick', '--model', 'resnet18',
         '--model', 'mobilenet_v3_small', '--out', str(edge_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [executable('edgent-profile'), '--role', 'device', '--from', str(edge_path),
         '--slowdown', '10', '--out', str(device_path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    edge, device = lat.load_profile(edge_path), lat.load_profile(device_path)
    assert device.role == 'device' and device.machine['emulated_slowdown'] == 10.0
    assert 'edgent-profile --from' in device.notes
    for arch, keys in STAGE_KEYS.items():
        assert keys <= set(edge.layers), arch
        for key in keys - lat.PAPER_TYPES:
            lm = edge.layers[key]
            assert lm.samples >= len(lm.variables) + 1 and min(lm.coef) >= 0, key
        card = saved_card(arch, tmp_path)
        assert card.input_shape == [3, 224, 224]
        latency = lat.SubModelLatency(card, device, edge)
        for e, arrays in latency.exits.items():
            for ms in (arrays.device_layers, arrays.edge_layers):
                assert np.all(np.isfinite(ms)) and np.all(ms >= 0), (arch, e)
            assert arrays.edge_suffix[0] > 0
            assert arrays.device_prefix[-1] == pytest.approx(10 * arrays.edge_suffix[0])
            stage = [ms for ms, li in zip(arrays.edge_layers, card.exit(e).layers, strict=True)
                     if lat.stage_key(li) not in lat.PAPER_TYPES]
            assert min(stage) > 0, (arch, e)


def test_held_out_sweeps_never_time_the_models_own_stages() -> None:
    from edgent_ros import profiler as pr

    nets = [m.BranchyNetwork(a, 10) for a in STAGE_KEYS]
    keys = list(lat.STAGE_VARIABLES)
    own = {pr.stage_signature(li) for net in nets for e in range(1, net.num_exits + 1)
           for li in m.layer_infos(net, e)}
    settings = pr.Settings(**{**pr.QUICK.__dict__, 'holdout': True})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the profiler runs (two threads on a busy host crawl)
    try:
        chains = pr.stage_chains(nets, keys, settings)
        unheld = pr.stage_chains(nets, keys, pr.QUICK)
    finally:
        torch.set_num_threads(threads)
    recorded = [i for c in chains for i, r in zip(c.infos, c.record, strict=True) if r]
    assert recorded and not {pr.stage_signature(i) for i in recorded} & own
    assert {lat.stage_key(i) for i in recorded} >= set(keys)
    # Without holdout the models' own stages are in the sweep, as the
    # paper's sweep has the model's own layers.
    assert {pr.stage_signature(i) for c in unheld
            for i, r in zip(c.infos, c.record, strict=True) if r} & own
    for chain in chains[:5]:  # a chain runs: each stage takes the last one's output
        with torch.no_grad():
            h = chain.x
            for stage, info in zip(chain.stages, chain.infos, strict=True):
                assert list(h.shape[1:]) == list(info.in_shape)
                h = stage(h)


def test_pinning_the_allocator() -> None:
    from edgent_ros.allocator import pin_allocator

    assert pin_allocator() is pin_allocator()  # once per process
    if Path('/proc/self/maps').is_file() and 'libc.so.6' in Path('/proc/self/maps').read_text():
        assert pin_allocator()


def test_auto_profiles_take_the_papers_where_they_cover_the_model(card: m.ModelCard) -> None:
    """device_profile/edge_profile auto: the paper's Table II profiles for the
    AlexNet; for the ResNet, whose residual blocks they lack, the CI host's,
    the device one in the host's own CPU time (ci_host_device undone x250)."""
    for role in lat.ROLES:
        chosen, passed = lat.auto_profile(role, card)
        assert chosen.name == paper(role).name and passed == []
    resnet = m.load_card(m.resolve_model_path('resnet18_digits64'))
    device, passed = lat.auto_profile('device', resnet)
    assert device.name == 'ci_host_device_native'
    assert len(passed) == 1 and passed[0].startswith('paper_pi3_device: ')
    assert 'block_residual' in passed[0]
    edge, _ = lat.auto_profile('edge', resnet)
    assert edge.name == 'ci_host_edge'
    slowed = lat.load_profile(lat.resolve_profile_path('ci_host_device'))
    assert 'emulated_slowdown' not in device.machine
    assert device.predict(resnet.exits[-1].layers) * 250.0 == \
        pytest.approx(slowed.predict(resnet.exits[-1].layers))
    assert slowed.native().predict(resnet.exits[0].layers) == \
        pytest.approx(device.predict(resnet.exits[0].layers))
    lat.SubModelLatency(resnet, device, edge)  # plans
    with pytest.raises(lat.ProfileError, match=r'edgent-profile --role device --model '
                                               r'resnet18_digits64'):
        lat.auto_profile('device', resnet, choices=('paper_pi3_device',))
