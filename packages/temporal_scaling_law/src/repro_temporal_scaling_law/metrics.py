"""Error and ranking metrics for predicted vs measured losses.

Prediction metrics take ``measured`` and ``predicted`` arrays of equal shape (any shape; they are
flattened). Ranking metrics take one value per run.
"""

from __future__ import annotations

import warnings

import numpy as np


def _pair(measured, predicted) -> tuple[np.ndarray, np.ndarray]:
    measured = np.asarray(measured, dtype=float).ravel()
    predicted = np.asarray(predicted, dtype=float).ravel()
    if measured.shape != predicted.shape:
        raise ValueError(f"shape mismatch: measured {measured.shape}, predicted {predicted.shape}")
    if measured.size == 0:
        raise ValueError("no points to score (is the held-out window empty?)")
    return measured, predicted


def mape(measured, predicted) -> float:
    """Mean absolute percentage error, in percent: ``100 * mean(|pred - meas| / |meas|)``."""
    measured, predicted = _pair(measured, predicted)
    return float(100.0 * np.mean(np.abs(predicted - measured) / np.abs(measured)))


def r2_score(measured, predicted) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (SS_tot around the mean of measured).

    Negative when the prediction is worse than the constant mean of the measured values; NaN when
    the measured values are constant (the ratio is undefined).
    """
    measured, predicted = _pair(measured, predicted)
    ss_tot = float(np.sum((measured - measured.mean()) ** 2))
    ss_res = float(np.sum((measured - predicted) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def rmse(measured, predicted) -> float:
    """Root mean squared error."""
    measured, predicted = _pair(measured, predicted)
    return float(np.sqrt(np.mean((predicted - measured) ** 2)))


def mae(measured, predicted) -> float:
    """Mean absolute error."""
    measured, predicted = _pair(measured, predicted)
    return float(np.mean(np.abs(predicted - measured)))


def prediction_errors(measured, predicted) -> dict[str, float]:
    """All prediction metrics as a dict: mape (percent), r2, rmse, mae."""
    return {
        "mape": mape(measured, predicted),
        "r2": r2_score(measured, predicted),
        "rmse": rmse(measured, predicted),
        "mae": mae(measured, predicted),
    }


def spearman(a, b) -> float:
    """Spearman rank correlation of two equal-length sequences (ties get average ranks)."""
    from scipy import stats  # imported here: scipy.stats costs ~1 s at start-up

    a, b = _pair(a, b)
    with warnings.catch_warnings():  # constant input: NaN is the answer, not a warning
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a, b).statistic)


def kendall(a, b) -> float:
    """Kendall tau-b rank correlation."""
    from scipy import stats

    a, b = _pair(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(a, b).statistic)


def regret(true_losses, predicted_losses) -> float:
    """True loss of the run the prediction picks (argmin) minus the best true loss (>= 0)."""
    true_losses, predicted_losses = _pair(true_losses, predicted_losses)
    return float(true_losses[np.argmin(predicted_losses)] - true_losses.min())
