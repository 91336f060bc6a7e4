"""The paper's application: choose a hyper-parameter (e.g. a data mixture) from early checkpoints.

Protocol (spec A.3 item 8; the paper's exact protocol is unknown, [I]): for each candidate run,
fit on the early window only and predict the loss at the run's last logged checkpoint; rank the
runs by that prediction and compare with the measured final losses of the complete runs:
Spearman rho and Kendall tau between predicted and true losses, whether the top-1 pick is the
truly best run, and the regret (true loss of the pick minus the best true loss). Every baseline
is scored the same way; ``last_value`` is "choose by the current loss at the end of the window".
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .api import fit_run
from .metrics import kendall, mape, regret, spearman


def rank_runs(run_dirs: Sequence[str | os.PathLike], fit_until: float = 0.2, **fit_kwargs) -> dict:
    """Rank runs by their predicted final loss; ``fit_kwargs`` go to :func:`.api.fit_run`.

    Returns a JSON-ready dict: ``runs`` (per run: measured final loss and each method's prediction
    at the same step), ``methods`` (per method: spearman, kendall, top1_hit, regret, mape_final in
    percent) and ``fits`` (the full :func:`fit_run` result of each run).
    """
    if len(run_dirs) < 2:
        raise ValueError(f"ranking needs at least 2 runs, got {len(run_dirs)}")
    fits = [fit_run(run_dir, fit_until=fit_until, **fit_kwargs) for run_dir in run_dirs]
    methods = [m for m in fits[0]["methods"] if all(m in fit["methods"] for fit in fits)]
    runs = []
    for fit in fits:
        checkpoints = fit["checkpoints"]
        if not checkpoints["held_out"][-1]:
            raise ValueError(
                f"run {fit['run_dir']} has no checkpoint after the fitting window, so its final "
                "loss is unknown; ranking needs complete runs as ground truth"
            )
        runs.append(
            {
                "run_dir": fit["run_dir"],
                "final_step": checkpoints["steps"][-1],
                "measured_final_loss": checkpoints["measured_loss"][-1],
                "predicted_final_loss": {
                    m: fit["methods"][m]["predicted_loss"][-1] for m in methods
                },
            }
        )
    measured = np.array([run["measured_final_loss"] for run in runs])
    scores = {}
    for method in methods:
        predicted = [run["predicted_final_loss"][method] for run in runs]
        score = score_ranking(measured, predicted)
        finite = np.isfinite(score["mape_final"])
        scores[method] = {k: (bool(v) if k == "top1_hit" else v) if finite else None
                          for k, v in score.items()}  # fmt: skip
    return {
        "fit_until": fit_until,
        "settings": fits[0]["settings"],
        "best_run_measured": runs[int(np.argmin(measured))]["run_dir"],
        "runs": runs,
        "methods": scores,
        "fits": fits,
    }


def score_ranking(measured, predicted) -> dict[str, float]:
    """Spearman rho, Kendall tau, top-1 hit (1.0 or 0.0), regret and MAPE (%) of one ranking:
    ``predicted[k]`` is a method's predicted final loss of run k, ``measured[k]`` its true one.
    A prediction that is missing or not finite makes every score NaN (a failed fit is reported,
    never dropped)."""
    measured = np.asarray(measured, dtype=float)
    predicted = np.array([np.nan if p is None else p for p in predicted], dtype=float)
    if not np.all(np.isfinite(predicted)):
        return dict.fromkeys(("spearman", "kendall", "top1_hit", "regret", "mape_final"), np.nan)
    return {
        "spearman": spearman(measured, predicted),
        "kendall": kendall(measured, predicted),
        "top1_hit": float(np.argmin(predicted) == np.argmin(measured)),
        "regret": regret(measured, predicted),
        "mape_final": mape(measured, predicted),
    }
