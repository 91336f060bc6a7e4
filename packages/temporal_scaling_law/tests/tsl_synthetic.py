"""Synthetic run directories in the core trainer's format, generated from explicit formulas.

A uniquely named module rather than conftest.py: `from conftest import` is ambiguous when the
workspace runs every package's tests together.

The generator writes the files by hand (np.savez, YAML, JSON lines) rather than through the
package's own writer, so the loader is tested against the format itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

MAX_STEPS = 2000
WARMUP_STEPS = 100
PEAK_LR = 3e-3
MIN_LR_RATIO = 0.1
NUM_POSITIONS = 64
TOKENS_PER_STEP = 32 * NUM_POSITIONS


def warmup_cosine_lr(steps: np.ndarray) -> np.ndarray:
    """The LR the core trainer logs at each step for the config below (repro_core.train's
    lr_multiplier): (step + 1) / warmup during warmup, then cosine to 10% of the peak."""
    steps = np.asarray(steps, dtype=float)
    phase = np.clip((steps - WARMUP_STEPS) / (MAX_STEPS - WARMUP_STEPS), 0.0, 1.0)
    cosine = PEAK_LR * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + np.cos(np.pi * phase)))
    return np.where(steps < WARMUP_STEPS, PEAK_LR * (steps + 1) / WARMUP_STEPS, cosine)


def piecewise_cosine(steps: np.ndarray) -> np.ndarray:
    """1 until the end of warmup, then the cosine shape falling to 0 at MAX_STEPS."""
    steps = np.asarray(steps, dtype=float)
    phase = np.clip((steps - WARMUP_STEPS) / (MAX_STEPS - WARMUP_STEPS), 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * phase))


@dataclass(frozen=True)
class TruthCoefficients:
    """a0 = a0_u + a0_v ln x; a1 = a1_u / (1 + a1_v x) + a1_w; a2 = a2_u + a2_v c(x)."""

    a0_u: float = 1.0
    a0_v: float = -0.1
    a1_u: float = 0.3
    a1_v: float = 5.0
    a1_w: float = 0.1
    a2_u: float = 2.3
    a2_v: float = 0.6

    def params(self, steps: np.ndarray) -> np.ndarray:
        x = np.asarray(steps, dtype=float) / MAX_STEPS
        a0 = self.a0_u + self.a0_v * np.log(x)
        a1 = self.a1_u / (1 + self.a1_v * x) + self.a1_w
        a2 = self.a2_u + self.a2_v * piecewise_cosine(steps)
        return np.stack([a0, a1, a2], axis=-1)  # (S, 3)

    def position_loss(self, steps: np.ndarray) -> np.ndarray:
        """(S, T) loss at positions i = 1..T (0-based position + 1)."""
        a0, a1, a2 = self.params(steps).T
        i = np.arange(1, NUM_POSITIONS + 1, dtype=float)
        return a0[:, None] / (1 + a1[:, None] * i) + a2[:, None]


def logged_steps(num_points: int = 40) -> np.ndarray:
    """Log-spaced steps from 1 to MAX_STEPS, like the trainer's position_loss_points."""
    return np.unique(np.round(np.geomspace(1, MAX_STEPS, num_points)).astype(int))


def write_run(
    run_dir: Path,
    truth: TruthCoefficients = TruthCoefficients(),
    noise: float = 5e-4,
    seed: int = 0,
) -> Path:
    """A complete run directory: position_loss.npz, metrics.jsonl, config.yaml."""
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = logged_steps()
    rng = np.random.default_rng(seed)
    loss = truth.position_loss(steps) + rng.normal(0.0, noise, (len(steps), NUM_POSITIONS))
    np.savez(
        run_dir / "position_loss.npz",
        steps=steps,
        tokens_seen=steps * TOKENS_PER_STEP,
        lr=warmup_cosine_lr(steps),
        loss=loss,
    )
    config = {
        "seed": seed,
        "train": {
            "max_steps": MAX_STEPS,
            "lr": PEAK_LR,
            "warmup_steps": WARMUP_STEPS,
            "min_lr_ratio": MIN_LR_RATIO,
            "position_loss_points": 40,
        },
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [
        {"step": int(s), "loss": 3.0, "lr": float(warmup_cosine_lr(s))}
        for s in range(10, MAX_STEPS + 1, 10)
    ]
    lines += [{"step": int(s), "val_loss": float(v)} for s, v in zip(steps, loss.mean(axis=1))]
    lines.sort(key=lambda record: record["step"])
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run_dir
