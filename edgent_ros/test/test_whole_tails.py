"""An edge profile of whole tails (edgent-profile --whole-tails): what a GPU
edge needs, as per-layer sums miss fused kernels. Made here on the CPU."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgent_ros import latency as lat
from edgent_ros import model as m

from .conftest import executable

CARD = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))


def test_whole_tails_become_per_layer_times_that_sum_back() -> None:
    assert np.allclose(lat.tail_layers([5.0, 4.0, 4.5, 1.0]), [0.5, 0.0, 3.5, 1.0])
    # made monotone: a tail from p never under the one from p + 1
    assert np.allclose(np.cumsum(lat.tail_layers([5.0, 4.0, 4.5, 1.0])[::-1])[::-1],
                       [5.0, 4.5, 4.5, 1.0])


@pytest.mark.slow
def test_a_whole_tail_profile_is_what_the_planner_times_the_edge_by(tmp_path: Path) -> None:
    out = tmp_path / 'tails_edge.yaml'
    proc = subprocess.run([executable('edgent-profile'), '--role', 'edge', '--from',
                           'ci_host_edge', '--whole-tails', '--torch-device', 'cpu', '--quick',
                           '--model', m.DEFAULT_MODEL, '--out', str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    profile = lat.load_profile(out)
    tails = profile.tails[CARD.name]
    assert set(tails) == {e.exit_point for e in CARD.exits}
    assert profile.machine['tails_device'].startswith('cpu')
    device = lat.load_profile(lat.resolve_profile_path('ci_host_device'))
    timed = lat.SubModelLatency(CARD, device, profile)
    assert timed.whole_tails == sorted(tails)
    for e in CARD.exits:
        suffix = timed.exits[e.exit_point].edge_suffix
        expected = np.maximum.accumulate(np.array(tails[e.exit_point])[::-1])[::-1]
        assert np.allclose(suffix[:-1], expected) and suffix[-1] == 0.0
    # Without the section: the per-layer regressions, as before.
    base = lat.load_profile(lat.resolve_profile_path('ci_host_edge'))
    before = lat.SubModelLatency(CARD, device, base)
    assert before.whole_tails == []
    assert np.allclose(before.exits[5].edge_suffix,
                       np.concatenate([np.cumsum(base.predict(CARD.exit(5).layers)[::-1])[::-1],
                                       [0.0]]))


@pytest.mark.parametrize('tails, message', [
    ('tails: [1, 2]', 'must map model names'),
    ('tails: {net: {1: [1.0, .nan]}}', 'finite times'),
    ('tails: {net: {1: []}}', 'non-empty list'),
])
def test_a_bad_tails_section_is_refused(tmp_path: Path, tails: str, message: str) -> None:
    base = lat.resolve_profile_path('ci_host_edge').read_text()
    path = tmp_path / 'bad.yaml'
    path.write_text(base + '\n' + tails + '\n')
    with pytest.raises(lat.ProfileError, match=message):
        lat.load_profile(path)
