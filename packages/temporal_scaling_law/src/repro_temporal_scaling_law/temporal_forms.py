"""Functional forms of a quantity ``y`` against training progress, selectable by name.

Two uses: the temporal law of each per-position parameter (``a0(x)``, ``a1(x)``, ``a2(x)``) and the
aggregate-loss baselines (a form fitted to the mean loss directly). ``x = step / max_steps``;
the LR features are defined in :mod:`.schedule`.

The paper's temporal forms are unverified. Three independent third-party summaries agree that
``a0``, ``a1`` and ``a2`` follow a logarithmic, a hyperbolic and a piecewise-cosine function of
trained tokens respectively ([3P], spec S.3); the exact parametrisations below are the spec's
reconstruction (A.3 item 2, [I]). Hence the default ``{"a0": "log", "a1": "hyperbolic",
"a2": "lr_piecewise_cosine"}`` (see :data:`.temporal_law.DEFAULT_FORMS`), and every form can be
swapped by name.

=========================== ====================================== ============================
name                        equation                               note
=========================== ====================================== ============================
constant                    u
linear                      u + v x
log                         u + v ln x                             paper's a0 family [3P]
hyperbolic                  u / (1 + v x) + w, v >= 0              paper's a1 family [3P]
power                       u + v x^(-c), c >= 0                   Kaplan-style
exp                         u + v exp(-x / tau)
lr_linear                   u + v lr(x) / lr_peak                  follows the actual LR
lr_piecewise_cosine         u + v c(x)                             paper's a2 family [3P]; c(x)
                                                                   = 1 in warmup, cosine after
lr_piecewise_cosine_power   u + v c(x) + w x^(-alpha)              spec's "+ optional power term"
lr_annealing                u + v S1^(-alpha) - w S2               Tissue et al. 2024
=========================== ====================================== ============================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schedule import Progress
from .separable_fit import SeparableFit, SeparableModel, fit_separable


@dataclass(frozen=True)
class TemporalForm:
    name: str
    model: SeparableModel
    needs_lr_schedule: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.model.param_names

    @property
    def equation(self) -> str:
        return self.model.equation

    def evaluate(self, progress: Progress, params: np.ndarray) -> np.ndarray:
        """Values (M,) at the M steps of ``progress``."""
        return self.model.evaluate(progress, params)

    def fit(self, progress: Progress, y: np.ndarray) -> SeparableFit:
        """Least-squares fit to ``y`` (M,) observed at the steps of ``progress``."""
        if self.needs_lr_schedule and not progress.has_lr_schedule:
            raise ValueError(
                f"temporal form {self.name!r} needs the run's LR schedule until max_steps: log "
                "`lr` until the end of training, give train.lr/warmup_steps in config.yaml, or "
                "pick a form that does not read the LR (log, hyperbolic, power, exp, ...)"
            )
        return fit_separable(self.model, progress, np.asarray(y, dtype=float))


def _ones(p: Progress) -> np.ndarray:
    return np.ones_like(p.x, dtype=float)


TEMPORAL_FORMS: dict[str, TemporalForm] = {
    form.name: form
    for form in [
        TemporalForm(
            "constant",
            SeparableModel("u", ("u",), ("u",), lambda p, _: _ones(p)[:, None]),
        ),
        TemporalForm(
            "linear",
            SeparableModel(
                "u + v x", ("u", "v"), ("u", "v"), lambda p, _: np.stack([_ones(p), p.x], -1)
            ),
        ),
        TemporalForm(
            "log",
            SeparableModel(
                "u + v ln x",
                ("u", "v"),
                ("u", "v"),
                lambda p, _: np.stack([_ones(p), np.log(p.x)], -1),
            ),
        ),
        TemporalForm(
            "hyperbolic",
            SeparableModel(
                "u / (1 + v x) + w",
                ("u", "v", "w"),
                ("u", "w"),
                lambda p, v: np.stack([1.0 / (1.0 + v * p.x), _ones(p)], -1),
                nonlinear_name="v",
                theta_grid=np.logspace(-3, 4, 57),
                theta_bounds=(0.0, 1e6),
            ),
        ),
        TemporalForm(
            "power",
            SeparableModel(
                "u + v x^(-c)",
                ("u", "v", "c"),
                ("u", "v"),
                lambda p, c: np.stack([_ones(p), p.x ** (-c)], -1),
                nonlinear_name="c",
                theta_grid=np.linspace(0.01, 3.0, 60),
                theta_bounds=(0.0, 5.0),
            ),
        ),
        TemporalForm(
            "exp",
            SeparableModel(
                "u + v exp(-x / tau)",
                ("u", "v", "tau"),
                ("u", "v"),
                lambda p, tau: np.stack([_ones(p), np.exp(-p.x / tau)], -1),
                nonlinear_name="tau",
                theta_grid=np.logspace(-3, 2, 51),
                theta_bounds=(1e-4, 1e3),
            ),
        ),
        TemporalForm(
            "lr_linear",
            SeparableModel(
                "u + v lr(x) / lr_peak",
                ("u", "v"),
                ("u", "v"),
                lambda p, _: np.stack([_ones(p), p.lr_norm], -1),
            ),
            needs_lr_schedule=True,
        ),
        TemporalForm(
            "lr_piecewise_cosine",
            SeparableModel(
                "u + v c(x)",
                ("u", "v"),
                ("u", "v"),
                lambda p, _: np.stack([_ones(p), p.cosine], -1),
            ),
            needs_lr_schedule=True,
        ),
        TemporalForm(
            "lr_piecewise_cosine_power",
            SeparableModel(
                "u + v c(x) + w x^(-alpha)",
                ("u", "v", "w", "alpha"),
                ("u", "v", "w"),
                lambda p, alpha: np.stack([_ones(p), p.cosine, p.x ** (-alpha)], -1),
                nonlinear_name="alpha",
                theta_grid=np.linspace(0.01, 3.0, 60),
                theta_bounds=(0.0, 5.0),
            ),
            needs_lr_schedule=True,
        ),
        TemporalForm(
            "lr_annealing",
            SeparableModel(
                "u + v S1^(-alpha) - w S2",
                ("u", "v", "w", "alpha"),
                ("u", "v", "w"),
                lambda p, alpha: np.stack([_ones(p), p.lr_area ** (-alpha), -p.annealing_area], -1),
                nonlinear_name="alpha",
                theta_grid=np.linspace(0.01, 3.0, 60),
                theta_bounds=(0.0, 5.0),
            ),
            needs_lr_schedule=True,
        ),
    ]
}


def get_temporal_form(name: str) -> TemporalForm:
    """Look up a temporal form by name; the error lists the registered names."""
    if name not in TEMPORAL_FORMS:
        raise ValueError(f"unknown temporal form {name!r}; choose one of {sorted(TEMPORAL_FORMS)}")
    return TEMPORAL_FORMS[name]
