"""Image grids of reconstructions and generated samples per class, carried in a run's result as
hex strings of uint8 pixels (small enough for results.json) and drawn from there."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLES_PER_CLASS_SHOWN = 4


def encode_images(images: np.ndarray) -> str:
    """(N, 8, 8) floats in [0, 1] -> hex string of uint8 pixels."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8).tobytes().hex()


def decode_images(text: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(-1, 8, 8) / 255.0


def sample_grid(samples: np.ndarray, per_class: int) -> np.ndarray:
    """The first SAMPLES_PER_CLASS_SHOWN samples of each class (samples are class-major)."""
    n = min(per_class, SAMPLES_PER_CLASS_SHOWN)
    return np.concatenate([samples[c * per_class : c * per_class + n] for c in range(10)])


def reconstruction_pairs(real: np.ndarray, recon: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(20, 8, 8): the first test image of each class, then its reconstruction."""
    first = [int(np.flatnonzero(labels == c)[0]) for c in range(10)]
    return np.concatenate([real[first], recon[first]])


def draw(images: np.ndarray, rows: int, path: Path, title: str) -> None:
    """Save ``images`` (rows * cols, 8, 8) as one PNG grid, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(images) // rows
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6 + 0.4))
    for ax, img in zip(np.ravel(axes), images):
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    fig.suptitle(title, fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_figures(results: dict, out: Path) -> list[str]:
    """One samples PNG and one reconstruction PNG per arm (its lowest seed); returns file names."""
    written = []
    for arm in [a["name"] for a in results["grid"]["arms"]]:
        runs = sorted((r for r in results["runs"] if r["arm"] == arm), key=lambda r: r["seed"])
        images = next(
            (r["metrics"].get("images") for r in runs if r["metrics"].get("images")), None
        )
        if not images:
            continue
        seed = next(r["seed"] for r in runs if r["metrics"].get("images"))
        if "samples" in images:
            name = f"samples_{arm}.png"
            n = images["per_class"]
            grid = decode_images(images["samples"]).reshape(10, n, 8, 8).transpose(1, 0, 2, 3)
            draw(
                grid.reshape(-1, 8, 8),
                n,
                out / name,
                f"{arm} (seed {seed}): columns = classes 0..9",
            )
            written.append(name)
        if "recon" in images:
            name = f"recon_{arm}.png"
            draw(
                decode_images(images["recon"]),
                2,
                out / name,
                f"{arm}: test images (top), reconstructions (bottom)",
            )
            written.append(name)
    return written
