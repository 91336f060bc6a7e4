"""Separable nonlinear least squares: ``y ~ basis(features, theta) @ beta``.

Every curve in this package is linear in all of its parameters but at most one (``theta``):
the per-position laws (``a0`` and ``a2`` are linear, ``a1`` is not), the temporal forms of the
parameters and the aggregate-loss baselines. The fitter uses that structure twice:

1. initialisation: scan ``theta`` over a log-spaced grid and solve ``beta`` in closed form for every
   grid value, vectorised over the grid and over a batch of curves; keep the best grid value;
2. refinement: ``scipy.optimize.least_squares`` (trust-region reflective, with bounds) over
   ``(beta, theta)`` starting from the best grid point.

A grid start avoids the local minima that a single hand-made initial guess falls into when, for
example, ``a0`` and ``a1`` trade off against each other (``a1 * i >> 1``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from .metrics import r2_score

Basis = Callable[[Any, float], np.ndarray]  # (features, theta) -> (n_points, n_linear)


@dataclass(frozen=True)
class SeparableModel:
    """A curve ``basis(features, theta) @ beta`` with named parameters.

    ``param_names`` lists every parameter in display order; ``linear_names`` are the ``beta``
    entries, ``nonlinear_name`` is ``theta`` (``None`` for a model linear in all parameters).
    """

    equation: str
    param_names: tuple[str, ...]
    linear_names: tuple[str, ...]
    basis: Basis
    nonlinear_name: str | None = None
    theta_grid: np.ndarray = field(default_factory=lambda: np.empty(0))
    theta_bounds: tuple[float, float] = (-np.inf, np.inf)
    linear_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return len(self.param_names)

    def _internal_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lower = [self.linear_bounds.get(n, (-np.inf, np.inf))[0] for n in self.linear_names]
        upper = [self.linear_bounds.get(n, (-np.inf, np.inf))[1] for n in self.linear_names]
        if self.nonlinear_name is not None:
            lower.append(self.theta_bounds[0])
            upper.append(self.theta_bounds[1])
        return np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)

    def _to_display(self, internal: np.ndarray) -> np.ndarray:
        names = self.linear_names + ((self.nonlinear_name,) if self.nonlinear_name else ())
        index = {name: k for k, name in enumerate(names)}
        return internal[..., [index[name] for name in self.param_names]]

    def _to_internal(self, display: np.ndarray) -> tuple[np.ndarray, float]:
        index = {name: k for k, name in enumerate(self.param_names)}
        beta = display[..., [index[name] for name in self.linear_names]]
        theta = display[index[self.nonlinear_name]] if self.nonlinear_name else np.nan
        return beta, theta

    def evaluate(self, features: Any, params: np.ndarray) -> np.ndarray:
        """Curve values (n_points,) for one parameter vector ``params`` (num_params,)."""
        beta, theta = self._to_internal(np.asarray(params, dtype=float))
        return self.basis(features, theta) @ beta


@dataclass
class SeparableFit:
    """Result of fitting a batch of C curves: ``params`` (C, P) in display order, ``r2`` (C,)."""

    params: np.ndarray
    r2: np.ndarray
    rmse: np.ndarray


def _grid_start(
    model: SeparableModel, features: Any, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best grid value per curve. y: (C, n). Returns internal start vectors (C, P) and SSE (C,)."""
    lower, upper = model._internal_bounds()
    n_lin = len(model.linear_names)
    thetas = model.theta_grid if model.nonlinear_name else np.array([np.nan])
    bases = np.stack([model.basis(features, float(t)) for t in thetas])  # (G, n, K)
    pinv = np.linalg.pinv(bases)  # (G, K, n)
    beta = np.einsum("gkn,cn->cgk", pinv, y)  # (C, G, K)
    beta = np.clip(beta, lower[:n_lin], upper[:n_lin])
    fitted = np.einsum("gnk,cgk->cgn", bases, beta)  # (C, G, n)
    sse = np.sum((fitted - y[:, None, :]) ** 2, axis=-1)  # (C, G)
    sse = np.where(np.isfinite(sse), sse, np.inf)
    best = np.argmin(sse, axis=1)  # (C,)
    start = beta[np.arange(len(y)), best]  # (C, K)
    if model.nonlinear_name:
        start = np.concatenate([start, thetas[best][:, None]], axis=1)
    return start, sse[np.arange(len(y)), best]


def fit_separable(model: SeparableModel, features: Any, y: np.ndarray) -> SeparableFit:
    """Fit ``model`` to each row of ``y`` (C, n) or to one curve (n,) by least squares."""
    y = np.asarray(y, dtype=float)
    single = y.ndim == 1
    y2 = y[None, :] if single else y
    n_points = y2.shape[1]
    if n_points < model.num_params:
        raise ValueError(
            f"cannot fit `{model.equation}` ({model.num_params} parameters) to {n_points} "
            "points: give it at least as many points as parameters (widen the fitting window)"
        )
    lower, upper = model._internal_bounds()
    start, _ = _grid_start(model, features, y2)
    n_lin = len(model.linear_names)

    def residual(p: np.ndarray, target: np.ndarray) -> np.ndarray:
        theta = p[n_lin] if model.nonlinear_name else np.nan
        return model.basis(features, theta) @ p[:n_lin] - target

    internal = np.empty_like(start)
    for c, target in enumerate(y2):
        x0 = np.clip(start[c], lower, upper)
        # least_squares needs a strictly feasible start.
        span = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
        x0 = np.clip(x0, lower + 1e-12 * span, upper - 1e-12 * span)
        result = least_squares(
            residual, x0, args=(target,), bounds=(lower, upper), method="trf", x_scale="jac"
        )
        internal[c] = result.x
    params = model._to_display(internal)
    fitted = np.stack([model.evaluate(features, p) for p in params])
    r2 = np.array([r2_score(t, f) for t, f in zip(y2, fitted)])
    rmse = np.sqrt(np.mean((fitted - y2) ** 2, axis=1))
    if single:
        return SeparableFit(params=params[0], r2=r2[0], rmse=rmse[0])
    return SeparableFit(params=params, r2=r2, rmse=rmse)
