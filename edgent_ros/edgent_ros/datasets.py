"""Labelled images for training, evaluation and the camera's data-set replay.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  works offline), upsampled to 32x32 RGB.
- ``cifar10``: CIFAR-10 from a local directory holding the standard python
  batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``).
- ``folder``: a local ImageFolder layout, one subdirectory per class holding
  .jpg/.jpeg/.png/.bmp images (``train/`` and ``val/`` inside it, if there,
  are the split; else a stratified held-out split by seed), resized to the
  network's input size as they are read.

Images are uint8 HxWx3 RGB; ``to_model_input`` turns them into the network's
float input, the same way for training and for frames from a camera.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

INPUT_SIZE = 32
DATASETS = ('digits', 'cifar10', 'folder')
FOLDER_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                   'ship', 'truck')


class DatasetError(ValueError):
    """A data set that cannot be loaded; the text says what is missing."""


@dataclass
class Split:
    """Train and held-out test images (uint8 NxHxWx3 RGB) with labels."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


def to_model_input(images: np.ndarray, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> torch.Tensor:
    """uint8 RGB images (NxHxWx3 or HxWx3, already the network's size) -> float
    NCHW: scaled to [0, 1], then (x - mean) / std per channel when given (the
    model card's normalisation)."""
    if images.ndim == 3:
        images = images[None]
    array = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    array /= 255.0
    if mean is not None and std is not None and (any(mean) or any(v != 1 for v in std)):
        array -= np.asarray(mean, dtype=np.float32)[None, :, None, None]
        array /= np.asarray(std, dtype=np.float32)[None, :, None, None]
    import torch  # here: the camera node reads data sets without torch

    return torch.from_numpy(array)


def resize_rgb(image: np.ndarray, size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)
               ) -> np.ndarray:
    """Resize one uint8 RGB image to (height, width): area averaging to shrink
    (a 640x480 frame to 224x224), linear to enlarge."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrink = image.shape[0] >= height and image.shape[1] >= width
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_all(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """resize_rgb over NxHxWx3 images."""
    if images.shape[1:3] == tuple(size):
        return images
    return np.stack([resize_rgb(im, size) for im in images])


def jitter(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like variation of grey digit images: each is scaled (0.5-1.0),
    rotated (+-20 degrees), shifted (+-5 px), dimmed (contrast 0.5-1.0) and
    given Gaussian noise (sigma 20 of 255). Deterministic for the rng."""
    out = np.empty_like(images)
    centre = (INPUT_SIZE / 2, INPUT_SIZE / 2)
    for k, image in enumerate(images):
        matrix = cv2.getRotationMatrix2D(centre, rng.uniform(-20, 20), rng.uniform(0.5, 1.0))
        matrix[:, 2] += rng.uniform(-5, 5, size=2)
        warped = cv2.warpAffine(image, matrix, (INPUT_SIZE, INPUT_SIZE),
                                flags=cv2.INTER_LINEAR, borderValue=0)
        noisy = warped * rng.uniform(0.5, 1.0) + rng.normal(0, 20, warped.shape)
        out[k] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def load_digits_split(seed: int = 0, test_fraction: float = 0.2,
                      train_copies: int = 3) -> Split:
    """scikit-learn's digits upsampled to 32x32 RGB and jittered, split stratified by seed.

    The plain upsampled digits are too easy to tell the exits apart (every
    exit scored 97.8-98.6% held-out; see README), so each image is jittered
    (``jitter``): the training set holds ``train_copies`` jittered copies of
    each training image, the held-out set one jittered copy of each.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    big = np.stack([cv2.resize(im, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
                    for im in small])
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        big, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    rng = np.random.default_rng(seed)
    x_tr = np.concatenate([jitter(x_tr, rng) for _ in range(train_copies)])
    y_tr = np.tile(y_tr, train_copies)
    x_te = jitter(x_te, rng)

    def rgb(grey: np.ndarray) -> np.ndarray:
        return np.repeat(grey[..., None], 3, axis=3)

    return Split('digits', rgb(x_tr), y_tr, rgb(x_te), y_te, tuple(str(d) for d in range(10)))


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches (dicts of lists, bytes and numpy arrays) and nothing else."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ('numpy', 'ndarray'), ('numpy', 'dtype'),
        ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
        ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load {module}.{name} from a CIFAR batch')


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding='bytes').load()
        data = np.asarray(raw[b'data'], dtype=np.uint8)
        labels = np.asarray(raw[b'labels'], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as exc:
        raise DatasetError(f'{path}: not a CIFAR-10 python batch: {exc}') from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetError(f'{path}: unexpected shape {data.shape} for a CIFAR-10 batch')
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10_split(data_dir: Path | str | None) -> Split:
    """CIFAR-10 from the standard python batches in data_dir (never downloaded)."""
    if data_dir is None:
        raise DatasetError('CIFAR-10 needs --data-dir: a directory holding the python '
                           'batches (data_batch_1 .. data_batch_5, test_batch) of '
                           'cifar-10-python.tar.gz; edgent_ros never downloads data')
    root = Path(data_dir)
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for candidate in (root, root / 'cifar-10-batches-py'):
        if all((candidate / n).is_file() for n in names):
            root = candidate
            break
    else:
        missing = [n for n in names if not (root / n).is_file()]
        raise DatasetError(f'{root}: not a CIFAR-10 python directory (missing: '
                           f"{', '.join(missing)}); unpack cifar-10-python.tar.gz there")
    train = [_read_cifar_batch(root / n) for n in names[:5]]
    x_te, y_te = _read_cifar_batch(root / 'test_batch')
    return Split('cifar10', np.concatenate([x for x, _ in train]),
                 np.concatenate([y for _, y in train]), x_te, y_te, CIFAR10_CLASSES)


def _square(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = (int(v) for v in size)
    return height, width


def _class_dirs(root: Path) -> list[Path]:
    """The class subdirectories of root (sorted by name, hidden ones left out)."""
    if not root.is_dir():
        raise DatasetError(f'{root}: not a directory (an image folder needs one '
                           'subdirectory per class)')
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith('.'))
    if not dirs:
        raise DatasetError(f'{root}: no class subdirectories (an image folder needs one '
                           'subdirectory per class, holding its images)')
    return dirs


def _class_images(directory: Path) -> list[Path]:
    images = sorted(p for p in directory.iterdir()
                    if p.is_file() and p.suffix.lower() in FOLDER_IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f'{directory}: class {directory.name!r} holds no images '
                           f'({", ".join(FOLDER_IMAGE_SUFFIXES)})')
    return images


def read_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 HxWx3 RGB, resized to (height, width)."""
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f'{path}: cannot be read: {exc.strerror or exc}') from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise DatasetError(f'{path}: cannot be read as an image')
    return resize_rgb(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)


def _read_images(paths: Sequence[Path], size: tuple[int, int]) -> np.ndarray:
    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.uint8)
    for k, path in enumerate(paths):
        out[k] = read_rgb(path, size)
    return out


def load_image_folder(root: Path | str, size: int | Sequence[int], seed: int = 0,
                      test_fraction: float = 0.2) -> Split:
    """A local ImageFolder layout: one subdirectory per class (sorted by name,
    the label order) holding .jpg/.jpeg/.png/.bmp images, read with OpenCV and
    resized to ``size`` (N, or (height, width)) as they are read.

    If root has ``train/`` and ``val/`` subdirectories they are the split
    (``val/`` may lack a class, not add one); else each class's images are
    shuffled by ``seed`` and ``test_fraction`` of them (at least one where a
    class has two or more) held out.
    """
    root = Path(root)
    hw = _square(size)
    if min(hw) < 1:
        raise DatasetError(f'image size must be positive, got {list(hw)}')
    if not 0 < test_fraction < 1:
        raise DatasetError(f'test_fraction must be in (0, 1), got {test_fraction}')
    if (root / 'train').is_dir() and (root / 'val').is_dir():
        train_dirs = _class_dirs(root / 'train')
        classes = tuple(d.name for d in train_dirs)
        val_dirs = _class_dirs(root / 'val')
        extra = [d.name for d in val_dirs if d.name not in classes]
        if extra:
            raise DatasetError(f'{root / "val"}: classes {extra} are not in '
                               f'{root / "train"} ({", ".join(classes)})')
        train = [(p, k) for k, d in enumerate(train_dirs) for p in _class_images(d)]
        test = [(p, classes.index(d.name)) for d in val_dirs for p in _class_images(d)]
    else:
        class_dirs = _class_dirs(root)
        classes = tuple(d.name for d in class_dirs)
        rng = np.random.default_rng(seed)
        train, test = [], []
        for k, d in enumerate(class_dirs):
            paths = _class_images(d)
            order = rng.permutation(len(paths))
            held = 0 if len(paths) < 2 else \
                min(len(paths) - 1, max(1, round(test_fraction * len(paths))))
            test += [(paths[i], k) for i in order[:held]]
            train += [(paths[i], k) for i in order[held:]]
        if not test:
            raise DatasetError(f'{root}: too few images to hold any out (every class has '
                               'one); add images or give train/ and val/ subdirectories')
    return Split('folder', _read_images([p for p, _ in train], hw),
                 np.array([k for _, k in train], dtype=np.int64),
                 _read_images([p for p, _ in test], hw),
                 np.array([k for _, k in test], dtype=np.int64), classes)


def load_split(name: str, *, seed: int = 0, data_dir: Path | str | None = None,
               size: int | Sequence[int] | None = None) -> Split:
    """Load one of DATASETS; with ``size`` (N or (height, width)) every image is
    resized to it (``folder`` needs it: its images may differ in size)."""
    if name == 'digits':
        split = load_digits_split(seed)
    elif name == 'cifar10':
        split = load_cifar10_split(data_dir)
    elif name == 'folder':
        if data_dir is None:
            raise DatasetError('the folder data set needs --data-dir: a directory with one '
                               'subdirectory of images per class')
        if size is None:
            raise DatasetError('the folder data set needs an image size')
        return load_image_folder(data_dir, size, seed)
    else:
        raise DatasetError(f'unknown data set {name!r} (known: {", ".join(DATASETS)})')
    if size is not None:
        hw = _square(size)
        split.train_images = resize_all(split.train_images, hw)
        split.test_images = resize_all(split.test_images, hw)
    return split
