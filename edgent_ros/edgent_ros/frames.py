"""Frame sources for the camera node: a data set, a video or camera, a folder.

Each source yields (rgb, label) pairs: an HxWx3 uint8 RGB image and its
ground-truth label (-1 when unknown). Never imports rclpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edgent_ros import datasets

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff')


class SourceError(ValueError):
    """A frame source that cannot be opened; the text says why."""


MATCH_SETTLE_S = 0.5


class FirstFrameGate:
    """Holds a camera's first frame until its subscribers have been matched
    for ``settle_s`` seconds (``clock``: monotonic seconds), then stays open.

    A writer's subscription count rises when the writer has matched the
    reader; the reader matches the writer when the writer's own announcement
    reaches it, which on a loaded machine can be a moment later, and a
    best-effort frame sent in between is dropped by the reader. Nothing on
    the writer's side says when that has happened, so the gate waits.
    """

    def __init__(self, settle_s: float = MATCH_SETTLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_s, self.clock = settle_s, clock
        self.matched_since: float | None = None
        self.is_open = False

    def update(self, matched: bool) -> bool:
        """Whether a frame may go, given whether subscribers are matched now."""
        if self.is_open:
            return True
        if not matched:
            self.matched_since = None
            return False
        now = self.clock()
        if self.matched_since is None:
            self.matched_since = now
        self.is_open = now - self.matched_since >= self.settle_s
        return self.is_open


def dataset_frames(name: str, seed: int = 0, data_dir: str | None = None
                   ) -> tuple[list[tuple[np.ndarray, int]], tuple[str, ...]]:
    """The held-out split of a data set, in order, with labels."""
    try:
        split = datasets.load_split(name, seed=seed, data_dir=data_dir or None)
    except datasets.DatasetError as exc:
        raise SourceError(str(exc)) from None
    frames = [(img, int(lbl)) for img, lbl in zip(split.test_images, split.test_labels,
                                                   strict=True)]
    return frames, split.class_names


def folder_frames(folder: str) -> list[tuple[np.ndarray, int]]:
    """Every image file of a folder, sorted by name, label unknown."""
    root = Path(folder)
    if not root.is_dir():
        raise SourceError(f'{folder}: not a directory')
    frames = []
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SourceError(f'{path}: cannot be read as an image')
            frames.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), -1))
    if not frames:
        raise SourceError(f'{folder}: holds no image files ({", ".join(IMAGE_SUFFIXES)})')
    return frames


def capture_frames(target: str) -> Iterator[tuple[np.ndarray, int]]:
    """Frames from OpenCV VideoCapture: a video file, or a camera index."""
    capture = cv2.VideoCapture(int(target) if target.isdigit() else target)
    if not capture.isOpened():
        raise SourceError(f'{target}: OpenCV cannot open this video file or camera')

    def frames() -> Iterator[tuple[np.ndarray, int]]:
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), -1
        finally:
            capture.release()

    return frames()
