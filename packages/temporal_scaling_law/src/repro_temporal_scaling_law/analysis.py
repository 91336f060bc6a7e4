"""What the reproduction grid measures on each training run, and the per-seed values it judges.

The paper's comparison is "train once, analyse many": the compared methods (the temporal law, its
variants and the baselines) are fits on the same training runs, at several fitting windows.

* :func:`analyse_run` (in the grid's worker, right after training): every method fitted on every
  window of one run; held-out MAPE/R^2 and the predicted final loss of each, as flat metrics
  ``mape@<window>/<method>`` plus nested data for the report.
* :func:`derive` (from ``results.json``, also on ``--report-only``): one record per method,
  window and seed, which the claims compare like arms, paired by seed: the MAPE on the run of the
  main corpus, the mean MAPE over the mixture runs of that seed, and the ranking of the mixtures
  of that seed by the method's predicted final loss (Spearman, Kendall, top-1 hit, regret).
"""

from __future__ import annotations

import math
import os
import statistics

import numpy as np

from .api import TSL, fit_baselines, fit_run
from .baselines import DEFAULT_BASELINES
from .position_laws import fit_position_law
from .ranking import score_ranking
from .run_data import PositionLossRun, load_run

WINDOWS = {"10%": 0.1, "20%": 0.2, "30%": 0.3}  # fit on the logged steps up to this share
PLOT_WINDOW = "20%"
MAIN_ARM = "main"
MIXTURE_PREFIX = "mix-a"
# Variants of the law, each reported next to the default ("tsl" = the fit.yaml defaults,
# min_r2 0.5), never replacing it. The values are fit_run keyword arguments.
VARIANTS: dict[str, dict] = {
    TSL: {"min_r2": 0.5},
    "tsl_all_ckpts": {"min_r2": 0.0},
    "tsl_a2_cos_power": {"min_r2": 0.0, "forms": {"a2": "lr_piecewise_cosine_power"}},
    "tsl_a2_power": {"min_r2": 0.0, "forms": {"a2": "power"}},
}
METHODS = (*VARIANTS, *DEFAULT_BASELINES)
FAILED = {"mape": math.nan, "r2": math.nan, "rmse": math.nan, "predicted_final": math.nan}
POSITION_ROWS = 7  # logged steps whose per-position curve is kept for the plot


def _summary(entry: dict) -> dict:
    heldout = entry["heldout"] or {}
    final = entry["predicted_loss"][-1]
    return {k: float(heldout.get(k, math.nan)) for k in ("mape", "r2", "rmse")} | {
        "predicted_final": math.nan if final is None else float(final)
    }


def fit_window(run: PositionLossRun, fit_until: float) -> dict:
    """Every method fitted on the window ending at ``fit_until`` (each baseline alone, so that one
    that cannot be fitted leaves the others); a fit that cannot be made is NaN in ``methods``
    with its reason in ``errors``."""
    out: dict = {"methods": {m: dict(FAILED) for m in METHODS}, "errors": {}}
    for name, entry in fit_baselines(run, fit_until, DEFAULT_BASELINES).items():
        if "error" in entry:
            out["errors"][name] = entry["error"]
        else:
            out["methods"][name] = _summary(entry)
    for variant, kwargs in VARIANTS.items():
        try:
            fit = fit_run(run, fit_until=fit_until, baselines=(), **kwargs)
        except ValueError as error:
            out["errors"][variant] = str(error)
            continue
        out["methods"][variant] = _summary(fit["methods"][TSL])
        if variant == TSL:
            out["checkpoints_used_by_tsl"] = int(sum(fit["checkpoints"]["used_for_fit"]))
            out["checkpoints_in_window"] = int(sum(fit["checkpoints"]["in_fit_window"]))
            out["tsl_window_position_r2"] = fit["tsl_window_position_r2"]
            out["tsl_heldout_position_mape"] = fit["tsl_heldout_position_mape"]
            out["temporal_fits"] = fit["temporal_fits"]
    return out


def _rounded(value, digits: int = 5):
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return round(value, digits) if isinstance(value, float) else value


def plot_data(run: PositionLossRun) -> dict:
    """What the report's per-run figures need (the first variant that fits at the plot window,
    the per-position curves at a few steps), rounded to keep results.json small."""
    out: dict = {"fit": None}
    fraction = WINDOWS[PLOT_WINDOW]
    baselines = [b for b, e in fit_baselines(run, fraction).items() if "error" not in e]
    for variant, kwargs in VARIANTS.items():
        try:
            fit = fit_run(run, fit_until=fraction, baselines=baselines, **kwargs)
        except ValueError:
            continue
        keep = ("checkpoints", "curves", "settings", "position_curves")
        out["fit"] = {"variant": variant, **_rounded({k: fit[k] for k in keep})}
        out["fit"]["methods"] = {m: {"heldout": e["heldout"]} for m, e in fit["methods"].items()}
        break
    rows = np.unique(np.linspace(0, len(run.steps) - 1, POSITION_ROWS).astype(int))
    out["position_curves"] = {
        "steps": run.steps[rows].tolist(),
        "loss": _rounded(run.loss[rows].tolist()),
    }
    return out


def stage1_r2(run: PositionLossRun) -> dict:
    """R^2 of the hyperbolic position law fitted to each logged checkpoint alone."""
    valid = run.steps > 0
    fits = fit_position_law(run.loss[valid], "hyperbolic", 1, 0)
    return {"steps": run.steps[valid].tolist(), "r2": [float(v) for v in fits.r2]}


def analyse_run(run_dir: str | os.PathLike, keep_plot_data: bool = False) -> dict:
    """The metrics of one trained run (see the module docstring)."""
    run = load_run(run_dir)
    fits = {label: fit_window(run, fraction) for label, fraction in WINDOWS.items()}
    out: dict = {"final_loss": float(run.overall_loss[-1])}
    out |= {f"mape@{w}/{m}": fits[w]["methods"][m]["mape"] for w in WINDOWS for m in METHODS}
    first = max(1, run.lr_schedule.warmup_end) if run.lr_schedule is not None else 1
    windows = {w: [first, int(np.floor(f * run.max_steps))] for w, f in WINDOWS.items()}
    out |= {"num_checkpoints": len(run.steps), "fits": fits, "stage1_r2": stage1_r2(run),
            "window_steps": windows}  # fmt: skip
    if keep_plot_data:
        out["plot"] = plot_data(run)
    return out


def mixture_weight(arm: str) -> float | None:
    return float(arm.removeprefix(MIXTURE_PREFIX)) if arm.startswith(MIXTURE_PREFIX) else None


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan  # a NaN run makes the mean NaN


def derive(results: dict) -> list[dict]:
    """Records ``{arm: method, setting: window, seed, metrics}`` for the claims (module docstring)."""
    runs = results["runs"]
    records = []
    for seed in sorted({r["seed"] for r in runs}):
        main = [r for r in runs if r["arm"] == MAIN_ARM and r["seed"] == seed]
        mixes = sorted(
            (r for r in runs if mixture_weight(r["arm"]) is not None and r["seed"] == seed),
            key=lambda r: mixture_weight(r["arm"]),
        )
        measured = [r["metrics"]["final_loss"] for r in mixes]
        for window in WINDOWS:
            for method in METHODS:
                entries = [r["metrics"]["fits"][window]["methods"][method] for r in mixes]
                metrics = {}
                if main:
                    metrics["mape_main"] = main[0]["metrics"]["fits"][window]["methods"][method][
                        "mape"
                    ]
                if mixes:
                    metrics["mape_mixtures"] = _mean([e["mape"] for e in entries])
                if len(mixes) >= 2:
                    predicted = [e["predicted_final"] for e in entries]
                    metrics |= score_ranking(measured, predicted)
                    metrics["predicted_final"] = predicted
                records.append({"arm": method, "setting": window, "seed": seed, "metrics": metrics})
    return records
