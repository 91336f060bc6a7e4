"""Per-token-position loss laws: the loss ``L_i`` at position ``i`` of one checkpoint.

The paper's "dynamic hyperbolic law" (spec A.3 item 1, S.2; [3P], two independent summaries)::

    L_i = a0 / (1 + a1 * i) + a2          a0, a1, a2 >= 0                    (hyperbolic)

``a2`` is the long-context asymptote, ``a0 + a2`` the extrapolated loss at ``i -> 0`` and ``a1``
how fast context helps. The body of the paper could not be read, so two alternatives are kept as
switches (spec A.3 item 1)::

    L_i = b0 / (i + b1) + a2              same family, better conditioned    (shifted_reciprocal)
    L_i = b * i^(-c) + a2                 Kaplan-style power law in position (position_power)

Position index: the loss array holds 0-based positions ``p = 0..T-1``; the law sees
``i = p + index_offset`` (default 1, so the first position is ``i = 1``; the paper's choice is
unknown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .separable_fit import SeparableFit, SeparableModel, fit_separable


@dataclass(frozen=True)
class PositionLaw:
    """A per-position law: ``curve(params (M, P), i (T,)) -> (M, T)`` and its separable fit model."""

    name: str
    model: SeparableModel
    curve: Callable[[np.ndarray, np.ndarray], np.ndarray]
    asymptote: str  # the parameter that is the i -> infinity loss

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.model.param_names


def _hyperbolic_curve(params: np.ndarray, i: np.ndarray) -> np.ndarray:
    a0, a1, a2 = (params[..., k, None] for k in range(3))  # each (M, 1)
    return a0 / (1.0 + a1 * i) + a2  # (M, T)


def _shifted_reciprocal_curve(params: np.ndarray, i: np.ndarray) -> np.ndarray:
    b0, b1, a2 = (params[..., k, None] for k in range(3))
    return b0 / (i + b1) + a2


def _position_power_curve(params: np.ndarray, i: np.ndarray) -> np.ndarray:
    b, c, a2 = (params[..., k, None] for k in range(3))
    return b * i ** (-c) + a2


POSITION_LAWS: dict[str, PositionLaw] = {
    "hyperbolic": PositionLaw(
        name="hyperbolic",
        model=SeparableModel(
            equation="L_i = a0 / (1 + a1 * i) + a2",
            param_names=("a0", "a1", "a2"),
            linear_names=("a0", "a2"),
            nonlinear_name="a1",
            basis=lambda i, a1: np.stack([1.0 / (1.0 + a1 * i), np.ones_like(i)], axis=-1),
            theta_grid=np.logspace(-4, 3, 71),
            theta_bounds=(0.0, 1e4),
            linear_bounds={"a0": (0.0, np.inf), "a2": (0.0, np.inf)},
        ),
        curve=_hyperbolic_curve,
        asymptote="a2",
    ),
    "shifted_reciprocal": PositionLaw(
        name="shifted_reciprocal",
        model=SeparableModel(
            equation="L_i = b0 / (i + b1) + a2",
            param_names=("b0", "b1", "a2"),
            linear_names=("b0", "a2"),
            nonlinear_name="b1",
            basis=lambda i, b1: np.stack([1.0 / (i + b1), np.ones_like(i)], axis=-1),
            theta_grid=np.logspace(-3, 4, 71),
            theta_bounds=(1e-6, 1e6),
            linear_bounds={"b0": (0.0, np.inf), "a2": (0.0, np.inf)},
        ),
        curve=_shifted_reciprocal_curve,
        asymptote="a2",
    ),
    "position_power": PositionLaw(
        name="position_power",
        model=SeparableModel(
            equation="L_i = b * i^(-c) + a2",
            param_names=("b", "c", "a2"),
            linear_names=("b", "a2"),
            nonlinear_name="c",
            basis=lambda i, c: np.stack([i ** (-c), np.ones_like(i)], axis=-1),
            theta_grid=np.linspace(0.02, 3.0, 75),
            theta_bounds=(0.0, 10.0),
            linear_bounds={"b": (0.0, np.inf), "a2": (0.0, np.inf)},
        ),
        curve=_position_power_curve,
        asymptote="a2",
    ),
}

DEFAULT_POSITION_LAW = "hyperbolic"


def get_position_law(name: str) -> PositionLaw:
    """Look up a position law by name; the error lists the registered names."""
    if name not in POSITION_LAWS:
        raise ValueError(f"unknown position law {name!r}; choose one of {sorted(POSITION_LAWS)}")
    return POSITION_LAWS[name]


def position_index(num_positions: int, index_offset: int = 1) -> np.ndarray:
    """The law's index ``i`` (T,) for 0-based positions ``0..T-1``."""
    if index_offset < 1:
        raise ValueError(
            f"index_offset must be >= 1 (the laws diverge at i <= 0), got {index_offset}"
        )
    return np.arange(num_positions, dtype=float) + index_offset


def fit_position_law(
    position_loss: np.ndarray,
    law: str = DEFAULT_POSITION_LAW,
    index_offset: int = 1,
    first_position: int = 0,
) -> SeparableFit:
    """Fit ``law`` across positions, once per checkpoint.

    position_loss: (T,) for one checkpoint or (S, T) for S checkpoints.
    first_position: positions ``< first_position`` are left out of the fit (the law still predicts
    them). Returns params (S, P) in ``get_position_law(law).param_names`` order, r2 (S,), rmse (S,).
    R^2 is NaN for a curve that is exactly flat in position (``a1`` cannot be identified).
    """
    position_loss = np.asarray(position_loss, dtype=float)
    num_positions = position_loss.shape[-1]
    if not 0 <= first_position <= num_positions - 3:
        raise ValueError(
            f"first_position={first_position} leaves fewer than 3 of {num_positions} positions to fit"
        )
    i = position_index(num_positions, index_offset)[first_position:]
    return fit_separable(get_position_law(law).model, i, position_loss[..., first_position:])
