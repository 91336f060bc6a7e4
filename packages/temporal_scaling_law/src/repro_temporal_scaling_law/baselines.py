"""Baselines: predict the future overall loss by fitting one curve to the overall loss itself.

The paper's exact baseline list is unknown; summaries name exponential and simple reciprocal laws
and "one (usually power-law) function fitted to the whole test loss" ([3P], spec S.6). We keep the
spec's list (A.3 item 5), each fitted on the same early window as the temporal law:

============== =========================== ==========================================
name           equation (x = step/max)     source
============== =========================== ==========================================
power_law      L = E + A x^(-alpha)        Kaplan-style power law in steps/tokens
log_law        L = a + b ln x
exponential    L = E + A exp(-x / tau)     named by a summary [3P]
reciprocal     L = A / (1 + B x) + E       "simple reciprocal law" [3P]
lr_annealing   L = L0 + A S1^(-alpha) - C S2   Tissue et al. 2024 (needs the LR schedule)
last_value     L = loss at the last window checkpoint   naive
============== =========================== ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schedule import Progress
from .temporal_forms import get_temporal_form

#: baseline name -> temporal form fitted to the overall loss (None: last value).
BASELINE_FORMS: dict[str, str | None] = {
    "power_law": "power",
    "log_law": "log",
    "exponential": "exp",
    "reciprocal": "hyperbolic",
    "lr_annealing": "lr_annealing",
    "last_value": None,
}

DEFAULT_BASELINES = (
    "power_law",
    "log_law",
    "exponential",
    "reciprocal",
    "lr_annealing",
    "last_value",
)


@dataclass
class Baseline:
    """``Baseline(name).fit(progress, loss)`` then ``.predict(progress)``; loss is (K,)."""

    name: str

    def __post_init__(self):
        if self.name not in BASELINE_FORMS:
            raise ValueError(
                f"unknown baseline {self.name!r}; choose from {sorted(BASELINE_FORMS)}"
            )
        self.form = (
            None
            if BASELINE_FORMS[self.name] is None
            else get_temporal_form(BASELINE_FORMS[self.name])
        )
        self.params: np.ndarray | None = None
        self.r2 = float("nan")

    @property
    def equation(self) -> str:
        return (
            "L = loss at the last window checkpoint"
            if self.form is None
            else f"L = {self.form.equation}"
        )

    @property
    def needs_lr_schedule(self) -> bool:
        return self.form is not None and self.form.needs_lr_schedule

    def fit(self, progress: Progress, loss: np.ndarray) -> Baseline:
        loss = np.asarray(loss, dtype=float)
        if self.form is None:
            self.params = loss[np.argmax(progress.steps)][None]
            self.r2 = float("nan")
        else:
            fit = self.form.fit(progress, loss)
            self.params, self.r2 = fit.params, float(fit.r2)
        return self

    def predict(self, progress: Progress) -> np.ndarray:
        if self.params is None:
            raise RuntimeError("call fit() before predict()")
        if self.form is None:
            return np.full(len(progress), self.params[0])
        return self.form.evaluate(progress, self.params)

    @property
    def coefficients(self) -> dict[str, float]:
        names = ("L_last",) if self.form is None else self.form.param_names
        return dict(zip(names, map(float, self.params)))
