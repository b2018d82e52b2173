"""Camera sources: data-set replay with labels, a folder of images, a video file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgent_ros import frames


def test_dataset_replay_carries_labels() -> None:
    items, names = frames.dataset_frames('digits', seed=0)
    assert len(items) == 360 and names[3] == '3'
    image, label = items[0]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and 0 <= label <= 9


def test_folder_of_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    written = []
    for i in range(3):
        rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f'{i:02d}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        written.append(rgb)
    (tmp_path / 'notes.txt').write_text('not an image')
    items = frames.folder_frames(str(tmp_path))
    assert len(items) == 3
    for (image, label), rgb in zip(items, written, strict=True):
        np.testing.assert_array_equal(image, rgb)  # PNG is lossless; order by name
        assert label == -1


def test_video_file(tmp_path: Path) -> None:
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, dtype=np.uint8))
    writer.release()
    items = list(frames.capture_frames(str(path)))
    assert len(items) == 5
    assert items[0][0].shape == (48, 64, 3)
    assert items[4][0].mean() > items[1][0].mean()


def test_bad_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(frames.SourceError, match='not a directory'):
        frames.folder_frames(str(tmp_path / 'missing'))
    with pytest.raises(frames.SourceError, match='holds no image files'):
        frames.folder_frames(str(tmp_path))
    with pytest.raises(frames.SourceError, match='cannot open'):
        frames.capture_frames(str(tmp_path / 'missing.avi'))
    with pytest.raises(frames.SourceError, match='--data-dir'):
        frames.dataset_frames('cifar10')


def test_first_frame_waits_for_the_reader_to_match_back() -> None:
    """The writer's match count can rise before the reader has matched the
    writer, and a best-effort frame sent then is lost. The gate holds the
    first frame settle_s after a match, restarts if the match goes, and
    stays open after."""
    now = [0.0]
    gate = frames.FirstFrameGate(settle_s=0.5, clock=lambda: now[0])
    assert not gate.update(False)
    now[0] = 1.0
    assert not gate.update(True)  # matched just now: the reader may not know yet
    now[0] = 1.3
    assert not gate.update(False)  # gone again: start over
    now[0] = 1.4
    assert not gate.update(True)
    now[0] = 1.8
    assert not gate.update(True)
    now[0] = 1.9
    assert gate.update(True)
    assert gate.update(False)  # once open, later frames are not held
