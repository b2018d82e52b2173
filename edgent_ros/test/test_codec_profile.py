"""The link codecs' times in the latency profiles: the profiler's codec sweep
(real codecs, a quick sweep), the codec models in saved profiles, and the
shipped CI host profiles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgent_ros import latency as lat
from edgent_ros import profiler as pr
from edgent_ros.codec_names import ACTIVATION_CODECS, CODECS, INPUT_CODECS, RAW
from edgent_ros.demo import pipeline

CODED = [c for c in CODECS if c != RAW]
MB4 = 4 << 20  # a 4 MB float32 activation (1x256x64x64)
VGA = 640 * 480 * 3  # a 640x480 RGB frame's uint8 bytes
SHIPPED = ('ci_host_device', 'ci_host_device_native', 'ci_host_edge')


@pytest.fixture(scope='module')
def quick_models() -> dict[str, dict[str, lat.LayerModel]]:
    return {role: pr.profile_codecs(role, pr.QUICK, progress=False) for role in lat.ROLES}


def test_the_sweep_fits_every_codec_but_raw(quick_models: dict) -> None:
    for role, models in quick_models.items():
        assert set(models) == set(CODED), role
        for codec, lm in models.items():
            assert lm.variables == list(lat.CODEC_VARIABLES)
            assert lm.coef[0] >= 0 and lm.intercept >= 0, (role, codec)
            assert lm.samples >= 3


def test_the_sweep_covers_activations_and_frames() -> None:
    jobs = pr.codec_jobs('edge', pr.Settings())
    sizes = {c: sorted({b for cc, b, _, _ in jobs if cc == c}) for c in CODED}
    for codec in ACTIVATION_CODECS[1:]:
        assert sizes[codec][0] == 4096 and sizes[codec][-1] == MB4
        assert len(sizes[codec]) >= 10
    for codec in INPUT_CODECS[1:]:
        assert sizes[codec][0] == 32 * 32 * 3 and sizes[codec][-1] == VGA
        assert len(sizes[codec]) == 8
    x = pr.codec_activation((16, 8, 8), np.random.default_rng(0))
    assert x.dtype == np.float32 and 0.3 < float((x == 0).mean()) < 0.7  # ReLU-like


def test_predictions_grow_with_size_and_are_sane(quick_models: dict) -> None:
    for role, models in quick_models.items():
        profile = lat.Profile('p', role, 'test', {}, {}, codecs=models)
        for codec in CODED:
            big = MB4 if codec in ACTIVATION_CODECS else VGA
            small, large = profile.codec_ms(codec, big // 64), profile.codec_ms(codec, big)
            assert large > small >= 0, (role, codec)
        for codec, nbytes in (('int8', MB4), ('int8_channel', MB4), ('jpeg75', VGA),
                              ('jpeg50', VGA)):
            assert 0 < profile.codec_ms(codec, nbytes) < 1000, (role, codec)
        assert profile.codec_ms(RAW, MB4) == 0.0


def test_a_saved_profile_keeps_its_codecs(tmp_path: Path, quick_models: dict) -> None:
    profile = lat.Profile('p', 'edge', 'test', {}, {}, codecs=quick_models['edge'])
    back = lat.load_profile(profile.save(tmp_path / 'p.yaml'))
    assert set(back.codecs) == set(CODED)
    for codec in CODED:
        assert back.codec_ms(codec, VGA) == pytest.approx(profile.codec_ms(codec, VGA))


@pytest.mark.parametrize('change', ['unknown codec', 'raw', 'wrong variables', 'two coefs'])
def test_a_bad_codec_section_is_refused(tmp_path: Path, quick_models: dict,
                                        change: str) -> None:
    raw = lat.Profile('p', 'device', 'test', {}, {}, codecs=quick_models['device']).to_dict()
    codecs = raw['codecs']
    if change == 'unknown codec':
        codecs['jpeg10'] = codecs['jpeg50']
    elif change == 'raw':
        codecs['raw'] = codecs['int8']
    elif change == 'wrong variables':
        codecs['int8']['variables'] = ['in_bytes']
    else:
        codecs['int8']['coef'] = [1.0, 2.0]
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(lat.ProfileError):
        lat.load_profile(path)


def test_slowed_scales_the_codecs(quick_models: dict) -> None:
    profile = lat.Profile('p', 'device', 'test', {}, {}, codecs=quick_models['device'])
    slow = profile.slowed(20)
    for codec in CODED:
        assert slow.codec_ms(codec, MB4) == pytest.approx(20 * profile.codec_ms(codec, MB4))
    assert slow.native().codec_ms('jpeg75', VGA) == pytest.approx(
        profile.codec_ms('jpeg75', VGA))


@pytest.mark.parametrize('name', SHIPPED)
def test_the_shipped_ci_host_profiles_time_every_codec(name: str) -> None:
    profile = lat.load_profile(lat.resolve_profile_path(name))
    assert set(profile.codecs) == set(CODED)
    assert 'codec' in profile.notes.lower() and '2026-12-04' in profile.notes
    for codec in CODED:
        assert profile.codecs[codec].coef[0] >= 0 and profile.codecs[codec].intercept >= 0
    if name == 'ci_host_device':  # the emulated device: x250 the native one
        native = lat.load_profile(lat.resolve_profile_path('ci_host_device_native'))
        for codec in CODED:
            assert profile.codec_ms(codec, MB4) == pytest.approx(
                250 * native.codec_ms(codec, MB4))


def test_codecs_only_merges_into_a_profile_keeping_its_layers(tmp_path: Path) -> None:
    base = lat.load_profile(lat.resolve_profile_path('ci_host_edge'))
    stripped = dataclasses.replace(base, codecs={}, machine={**base.machine,
                                                             'emulated_slowdown': 10.0})
    source = stripped.save(tmp_path / 'base.yaml')
    out = tmp_path / 'merged.yaml'
    assert pr.main(['--role', 'edge', '--codecs-only', '--quick', '--from', str(source),
                    '--out', str(out)]) == 0
    merged = lat.load_profile(out)
    assert merged.layers == stripped.layers
    assert merged.machine == {**stripped.machine, 'codec_pause_ms': pr.CODEC_PAUSE_MS}
    assert set(merged.codecs) == set(CODED)
    assert '--codecs-only' in merged.notes
    # The layers' notes kept, the codecs' replaced (one codec note, the new one).
    assert merged.notes.startswith(stripped.notes.split('Codecs: ')[0].rstrip())
    assert merged.notes.count('Codecs: ') == 1 and 'asleep' in merged.notes
    # Scaled by the profile's emulated slowdown as its layers are: far slower
    # than this machine's own decoding.
    assert merged.codec_ms('jpeg75', VGA) > 3 * base.codec_ms('jpeg75', VGA)
    # --from (no measuring) keeps the codecs, slowed with the layers.
    device = tmp_path / 'device.yaml'
    assert pr.main(['--role', 'device', '--from', str(out), '--slowdown', '2',
                    '--out', str(device)]) == 0
    assert lat.load_profile(device).codec_ms('int8', MB4) == pytest.approx(
        2 * merged.codec_ms('int8', MB4))


def test_codecs_only_needs_a_profile_of_the_role(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        pr.main(['--role', 'edge', '--codecs-only', '--out', str(tmp_path / 'x.yaml')])
    with pytest.raises(SystemExit):
        pr.main(['--role', 'device', '--codecs-only', '--from', 'ci_host_edge',
                 '--out', str(tmp_path / 'x.yaml')])


def test_a_cached_profile_with_codecs_is_reused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    path = pipeline.cache_dir() / f'edge-{pipeline.machine_key()}.yaml'
    lat.load_profile(lat.resolve_profile_path('ci_host_edge')).save(path)
    assert pipeline.ensure_profile('edge', None, False) == path  # no profiling run


def test_timed_jobs_can_each_follow_a_pause_that_is_not_timed() -> None:
    """A node codes one frame's payload after its thread waited for the
    frame: coding a 32x32 JPEG took 13 us in a tight loop and 200 us after
    a 5 ms sleep here (x250 on the emulated device: 3 ms planned, 50 ms
    measured). Codecs are timed so: each call after ``pause_ms`` asleep,
    the sleep not in its time."""
    import itertools
    import time
    calls: list[float] = []
    settings = dataclasses.replace(pr.QUICK, warmup=0, repeats=4)
    ms = pr.time_jobs([lambda: calls.append(time.perf_counter())] * 2, settings,
                      pause_ms=5.0)
    assert len(calls) == 8
    assert min(b - a for a, b in itertools.pairwise(calls)) >= 0.005
    assert max(ms) < 2.0  # the pauses are not timed, nor scale the CPU time


def test_codecs_are_timed_after_a_pause_and_profiles_say_so(tmp_path: Path) -> None:
    assert pr.CODEC_PAUSE_MS >= 5.0
    base = lat.load_profile(lat.resolve_profile_path('ci_host_edge'))
    stripped = dataclasses.replace(base, codecs={}, machine={
        k: v for k, v in base.machine.items() if k != 'codec_pause_ms'})
    assert pipeline.stale_codecs(stripped)
    assert pipeline.stale_codecs(dataclasses.replace(base, machine=stripped.machine))
    merged = pr.add_codecs(stripped, pr.QUICK, progress=False)
    assert merged.machine['codec_pause_ms'] == pr.CODEC_PAUSE_MS
    assert not pipeline.stale_codecs(merged)
    for name in SHIPPED:  # the shipped profiles were timed so
        assert not pipeline.stale_codecs(lat.load_profile(lat.resolve_profile_path(name)))


def test_the_codec_sweep_pauses_before_every_timed_call() -> None:
    """The sweep itself (not only time_jobs) codes as a node does: every timed
    call after CODEC_PAUSE_MS asleep, so it takes at least that per call."""
    import time
    settings = dataclasses.replace(pr.QUICK, warmup=0, repeats=2)
    calls = len(pr.codec_jobs('device', settings)) * settings.repeats
    start = time.perf_counter()
    pr.codec_sweep('device', settings, progress=False)
    assert time.perf_counter() - start >= calls * pr.CODEC_PAUSE_MS / 1e3
