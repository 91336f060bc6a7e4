"""The learning-rate schedule of a run and the progress features the temporal forms read.

Time variable. The paper measures progress in trained tokens ``N`` ([3P], spec S.3). Every form
here reads ``x = step / max_steps`` instead, the fraction of planned training. With a constant batch
``x = N / N_end`` exactly, and every form is invariant to the unit of ``N`` up to a
reparametrisation (``u + v ln N`` shifts ``u``; ``u / (1 + v N)`` rescales ``v``), so predictions are
the same; ``x`` in (0, 1] just keeps the fits well conditioned at any scale.

LR features, all computed from the per-step LR ``eta_k`` of the *planned* schedule (a property of
the run known before training, not a measurement):

* ``lr_norm = eta(s) / eta_peak``
* ``cosine``: the piecewise-cosine shape of a warmup + cosine schedule, 1 up to the end of warmup
  ``s_w``, then ``(1 + cos(pi (s - s_w) / (max_steps - s_w))) / 2`` (spec A.3 2)
* ``lr_area`` S1 = ``sum_{k<=s} eta_k`` and ``annealing_area`` S2 = ``sum_{k<=s} m_k`` with
  ``m_k = lambda m_{k-1} + (eta_{k-1} - eta_k)``, both divided by ``eta_peak * max_steps``
  (the LR-annealing law, Tissue et al. 2024, arXiv 2408.11029; [R] for the S2 recursion). S2 starts
  at the end of warmup so that the warmup does not count as negative annealing [I].

``s_w`` is ``train.warmup_steps`` when the schedule comes from the config, else the first step at
the peak LR. ``eta_k`` is the LR the trainer logs at step k (after k optimizer steps).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Progress:
    """Progress features at M steps; every array is (M,). LR features are NaN without a schedule."""

    steps: np.ndarray
    x: np.ndarray
    lr_norm: np.ndarray
    cosine: np.ndarray
    lr_area: np.ndarray
    annealing_area: np.ndarray

    @property
    def has_lr_schedule(self) -> bool:
        return bool(np.all(np.isfinite(self.lr_norm)))

    def select(self, mask: np.ndarray) -> Progress:
        """The features at the steps where the boolean ``mask`` (M,) is true."""
        return Progress(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class LRSchedule:
    """The per-step learning rate ``lr[k]`` for steps ``k = 0..max_steps`` (max_steps + 1,)."""

    lr: np.ndarray
    annealing_decay: float = 0.999
    source: str = ""
    warmup_steps: int | None = None

    def __post_init__(self):
        if self.lr.ndim != 1 or len(self.lr) < 2 or not np.all(np.isfinite(self.lr)):
            raise ValueError("an LR schedule needs finite per-step values for steps 0..max_steps")
        if self.lr.max() <= 0:
            raise ValueError("the LR schedule is zero everywhere")
        if not 0.0 <= self.annealing_decay < 1.0:
            raise ValueError(f"annealing_decay must be in [0, 1), got {self.annealing_decay}")

    @property
    def max_steps(self) -> int:
        return len(self.lr) - 1

    @property
    def peak_step(self) -> int:
        """The first step at the maximum LR."""
        return int(np.argmax(self.lr))

    @property
    def warmup_end(self) -> int:
        """``s_w``: ``warmup_steps`` when known, else the LR peak."""
        return self.peak_step if self.warmup_steps is None else self.warmup_steps

    @classmethod
    def from_points(cls, steps, lrs, max_steps: int, annealing_decay: float = 0.999) -> LRSchedule:
        """Linear interpolation of logged ``(step, lr)`` points onto every step 0..max_steps.

        The points must reach the end of training (the last point at >= 99% of max_steps; the LR
        is held after it), otherwise the future of the schedule is unknown and this raises.
        """
        steps = np.asarray(steps, dtype=float)
        lrs = np.asarray(lrs, dtype=float)
        order = np.argsort(steps, kind="stable")
        steps, lrs = steps[order], lrs[order]
        if len(steps) < 2 or steps[-1] < 0.99 * max_steps:
            last = steps[-1] if len(steps) else None
            raise ValueError(
                f"logged LR values end at step {last}, before max_steps={max_steps}: the rest of "
                "the schedule is unknown"
            )
        grid = np.arange(max_steps + 1, dtype=float)
        return cls(
            np.interp(grid, steps, lrs), annealing_decay, source="interpolated logged lr values"
        )

    @classmethod
    def warmup_cosine(
        cls,
        peak_lr: float,
        warmup_steps: int,
        max_steps: int,
        min_lr: float = 0.0,
        annealing_decay: float = 0.999,
    ) -> LRSchedule:
        """The core trainer's schedule (``repro_core.train.lr_multiplier``) as logged at step k:
        ``peak_lr * (k + 1) / warmup_steps`` while ``k < warmup_steps``, then cosine to ``min_lr``
        at ``max_steps``. Written out here so that fitting does not import torch."""
        k = np.arange(max_steps + 1, dtype=float)
        warm = peak_lr * (k + 1) / max(warmup_steps, 1)
        phase = np.clip((k - warmup_steps) / max(max_steps - warmup_steps, 1), 0.0, 1.0)
        cosine = min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + np.cos(np.pi * phase))
        lr = np.where(k < warmup_steps, warm, cosine)
        return cls(lr, annealing_decay, "warmup + cosine from config", warmup_steps)

    @cached_property
    def _areas(self) -> tuple[np.ndarray, np.ndarray]:
        """S1 and S2 at every step (max_steps + 1,), unnormalised."""
        lr_area = np.cumsum(self.lr) - self.lr[0]  # S1(s) = sum_{k=1..s} eta_k
        start = self.warmup_end
        drop = np.zeros_like(self.lr)
        drop[start + 1 :] = self.lr[start:-1] - self.lr[start + 1 :]  # eta_{k-1} - eta_k after s_w
        momentum = np.empty_like(drop)
        m = 0.0
        for k, d in enumerate(drop.tolist()):  # m_k = lambda m_{k-1} + drop_k; ~0.1 s per 1e6 steps
            m = self.annealing_decay * m + d
            momentum[k] = m
        return lr_area, np.cumsum(momentum)

    def progress(self, steps) -> Progress:
        """Progress features at ``steps`` (M,), integers in 0..max_steps."""
        steps = np.asarray(steps)
        idx = np.clip(np.round(steps).astype(int), 0, self.max_steps)
        peak_lr, start = float(self.lr.max()), self.warmup_end
        scale = peak_lr * self.max_steps
        phase = np.clip((idx - start) / max(self.max_steps - start, 1), 0.0, 1.0)
        lr_area, annealing_area = self._areas
        return Progress(
            steps=steps,
            x=steps / self.max_steps,
            lr_norm=self.lr[idx] / peak_lr,
            cosine=0.5 * (1.0 + np.cos(np.pi * phase)),
            lr_area=lr_area[idx] / scale,
            annealing_area=annealing_area[idx] / scale,
        )


def progress_without_schedule(steps, max_steps: int) -> Progress:
    """Progress features when the LR schedule is unknown: only ``x``; LR features are NaN."""
    steps = np.asarray(steps)
    nan = np.full(steps.shape, np.nan)
    return Progress(steps, steps / max_steps, nan, nan, nan, nan)


def schedule_from_config(config: dict, max_steps: int) -> LRSchedule | None:
    """A warmup + cosine schedule from a resolved run config, or None if the keys are absent.

    Reads the core's ``train.lr`` (peak), ``train.warmup_steps`` and ``train.min_lr_ratio`` (or an
    absolute ``train.min_lr``). A ``train.lr_schedule`` / ``train.scheduler`` key other than
    "cosine" means another schedule: None, and the logged LR values are used instead.
    """
    train = config.get("train") or {}
    kind = str(train.get("lr_schedule", train.get("scheduler", "cosine"))).lower()
    if "lr" not in train or "warmup_steps" not in train or kind != "cosine":
        return None
    peak_lr = float(train["lr"])
    if "min_lr" in train:
        min_lr = float(train["min_lr"])
    else:
        min_lr = peak_lr * float(train.get("min_lr_ratio", 0.0))
    return LRSchedule.warmup_cosine(peak_lr, int(train["warmup_steps"]), max_steps, min_lr)
