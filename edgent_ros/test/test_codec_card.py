"""Issue 17 offline: every (exit, partition, codec) measured into the model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edgent_ros import codec_card, datasets
from edgent_ros import codec_names as cn
from edgent_ros import latency as lat
from edgent_ros import model as m
from edgent_ros.card import CodecEntry


@pytest.mark.parametrize('name', ['branchy_alexnet_digits', 'resnet18_digits64'])
def test_the_shipped_cards_hold_every_codec_and_int8_per_channel_costs_under_a_point(
        name: str) -> None:
    card = m.load_card(m.resolve_model_path(name))
    have = {(c.exit_point, c.partition, c.codec) for c in card.codecs}
    for e in card.exits:
        for p in range(e.num_layers):
            names = cn.INPUT_CODECS if p == 0 else cn.ACTIVATION_CODECS
            assert {(e.exit_point, p, c) for c in names if c != cn.RAW} <= have
    for c in card.codecs:
        if c.codec == cn.INT8_CHANNEL:  # issue 17's target, on the held-out split
            assert card.exit(c.exit_point).accuracy - c.accuracy <= 0.01, c
        if c.codec in cn.LOSSLESS:
            assert c.accuracy == pytest.approx(card.exit(c.exit_point).accuracy, abs=1e-9)
    assert card.codecs_measured_on['images'] >= 300


def test_measure_codes_decodes_and_runs_each_configuration() -> None:
    net, card = m.load(m.resolve_model_path(m.DEFAULT_MODEL))
    split = datasets.load_split(card.dataset, seed=card.seed)
    images, labels = split.test_images[:24], np.asarray(split.test_labels[:24])
    entries = codec_card.measure(net, card, images, labels, progress=False)
    by = {(e.exit_point, e.partition, e.codec): e for e in entries}
    first = card.exits[0]
    assert by[(first.exit_point, 0, 'pixels')].bytes == 32 * 32 * 3
    assert by[(first.exit_point, 0, 'jpeg50')].bytes < by[(first.exit_point, 0, 'jpeg90')].bytes
    out = first.layers[0].out_bytes
    assert by[(first.exit_point, 1, 'float16')].bytes == out // 2
    assert by[(first.exit_point, 1, 'int8')].bytes == out // 4
    assert all(0.0 <= e.accuracy <= 1.0 for e in entries)


def write_card(tmp_path: Path, codecs: list[dict]) -> Path:
    src = m.resolve_model_path(m.DEFAULT_MODEL)
    raw = yaml.safe_load(src.read_text())
    raw['codecs'] = codecs
    path = tmp_path / src.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(('entry', 'why'), [
    ({'exit_point': 1, 'partition': 2, 'codec': 'jpeg75', 'accuracy': 0.5, 'bytes': 10},
     'cannot code'),
    ({'exit_point': 1, 'partition': 0, 'codec': 'int8', 'accuracy': 0.5, 'bytes': 10},
     'cannot code'),
    ({'exit_point': 9, 'partition': 0, 'codec': 'jpeg75', 'accuracy': 0.5, 'bytes': 10},
     'no exit 9'),
    ({'exit_point': 1, 'partition': 1, 'codec': 'int8', 'accuracy': 1.5, 'bytes': 10},
     'accuracy'),
    ({'exit_point': 1, 'partition': 1, 'codec': 'int8', 'accuracy': 0.5, 'bytes': 0},
     'bytes'),
    ({'exit_point': 1, 'partition': 1, 'codec': 'zstd', 'accuracy': 0.5, 'bytes': 4},
     'cannot code'),
    ({'exit_point': 1, 'partition': 1, 'codec': 'int8'}, 'missing or unexpected'),
])
def test_a_card_with_a_bad_codec_entry_is_refused(tmp_path: Path, entry: dict,
                                                  why: str) -> None:
    with pytest.raises(m.ModelError, match=why):
        m.load_card(write_card(tmp_path, [entry]))


def test_the_latency_model_plans_a_codec_only_with_its_accuracy_and_timing() -> None:
    card = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))
    device = lat.load_profile(lat.resolve_profile_path('paper_pi3_device'))
    edge = lat.load_profile(lat.resolve_profile_path('paper_desktop_edge'))
    # Table II cannot time codecs: only raw is planned, with a warning.
    bare = lat.SubModelLatency(card, device, edge)
    assert all(not a.codecs for a in bare.exits.values())
    assert any('cannot time codec' in w for w in bare.warnings)
    timed = lat.SubModelLatency(card, lat.with_codec_fallback(device)[0],
                                lat.with_codec_fallback(edge)[0])
    last = card.exits[-1]
    costs = {(c.partition, c.codec): c for c in timed.exits[last.exit_point].codecs}
    assert costs[(0, 'pixels')].accuracy == last.accuracy  # lossless: the exit's own
    assert costs[(0, 'pixels')].upload_bytes == 32 * 32 * 3
    assert costs[(1, 'int8_channel')].encode_ms > 0 and costs[(1, 'int8_channel')].decode_ms > 0
    # A card without a lossy codec's accuracy: that codec is not planned.
    thin = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))
    thin.codecs = [c for c in thin.codecs if c.codec != cn.INT8]
    fewer = lat.SubModelLatency(thin, lat.with_codec_fallback(device)[0],
                                lat.with_codec_fallback(edge)[0])
    assert not any(c.codec == cn.INT8 for a in fewer.exits.values() for c in a.codecs)
    assert isinstance(thin.codecs[0], CodecEntry)


def test_a_lossy_codec_is_never_planned_as_more_accurate_than_raw() -> None:
    """Held-out noise (ResNet's exit 2 from a JPEG 50 scores one image more
    than from raw floats) must not make coding look better than not."""
    card = m.load_card(m.resolve_model_path('resnet18_digits64'))
    above = [c for c in card.codecs if c.accuracy > card.exit(c.exit_point).accuracy]
    assert above  # the shipped card has such entries
    device, _ = lat.auto_profile('device', card)
    edge, _ = lat.auto_profile('edge', card)
    latency = lat.SubModelLatency(card, device, edge)
    for e in card.exits:
        assert all(c.accuracy <= e.accuracy for c in latency.exits[e.exit_point].codecs)
