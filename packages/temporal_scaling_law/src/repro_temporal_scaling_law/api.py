"""``fit_run``: fit the temporal law and the baselines on the early part of one run, score the rest.

The fitting window is ``fit_from_step <= step <= fit_until * max_steps``; every logged checkpoint
after it is held out and predicted. Step 0 (the untrained model) is never used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .baselines import DEFAULT_BASELINES, Baseline
from .metrics import mape, prediction_errors
from .position_laws import get_position_law
from .run_data import PositionLossRun, load_run
from .temporal_forms import get_temporal_form
from .temporal_law import TemporalScalingLaw

TSL = "tsl"  # method name of the temporal scaling law in results
NUM_CURVE_POINTS = 200  # dense log-spaced steps for plotting predicted curves
NUM_POSITION_CURVES = 3  # held-out checkpoints whose per-position curves are kept for the plot


def _fit_from_step(run: PositionLossRun, fit_from: float | None) -> int:
    """First step of the window: the end of warmup by default, else a fraction of max_steps."""
    if fit_from is None:
        return max(1, run.lr_schedule.warmup_end) if run.lr_schedule is not None else 1
    if not 0.0 <= fit_from < 1.0:
        raise ValueError(f"fit_from must be a fraction in [0, 1) or None, got {fit_from}")
    return max(1, int(np.ceil(fit_from * run.max_steps)))


def _dense_steps(run: PositionLossRun) -> np.ndarray:
    dense = np.unique(np.round(np.geomspace(1, run.max_steps, NUM_CURVE_POINTS)).astype(int))
    return np.union1d(dense, run.steps[run.steps > 0])


def _position_curve_rows(held_out: np.ndarray, in_window: np.ndarray) -> np.ndarray:
    """Rows whose per-position curves go into the plot: spread over the held-out checkpoints."""
    rows = np.flatnonzero(held_out)
    if len(rows) == 0:
        return np.flatnonzero(in_window)[-1:]
    return rows[np.unique(np.linspace(0, len(rows) - 1, NUM_POSITION_CURVES).astype(int))]


def _as_list(values) -> list:
    """JSON-ready list: NaN and inf become None."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def _window(run: PositionLossRun, fit_until: float, fit_from: float | None):
    """Logged steps after step 0, their losses and progress, the window's first and last step,
    and the masks of the window and of the held-out checkpoints."""
    if not 0.0 < fit_until < 1.0:
        raise ValueError(f"fit_until must be a fraction in (0, 1), got {fit_until}")
    valid = run.steps > 0
    steps, loss = run.steps[valid], run.loss[valid]
    fit_from_step = _fit_from_step(run, fit_from)
    fit_until_step = int(np.floor(fit_until * run.max_steps))
    if fit_from_step > fit_until_step:
        raise ValueError(
            f"the fitting window is empty: it starts at step {fit_from_step} (fit_from; default: "
            f"end of warmup) and ends at step {fit_until_step} (fit_until={fit_until}); raise "
            "fit_until or set fit_from=0"
        )
    in_window = (steps >= fit_from_step) & (steps <= fit_until_step)
    held_out = steps > fit_until_step
    return steps, loss, run.progress(steps), fit_from_step, fit_until_step, in_window, held_out


def _fit_baseline(baseline: Baseline, progress, in_window, measured, final_progress) -> dict:
    baseline.fit(progress.select(in_window), measured[in_window])
    return {
        "equation": baseline.equation,
        "coefficients": baseline.coefficients,
        "window_r2": baseline.r2,
        "predicted_loss": baseline.predict(progress),
        "predicted_loss_at_max_steps": float(baseline.predict(final_progress)[0]),
    }


def fit_baselines(
    run: str | os.PathLike | PositionLossRun,
    fit_until: float = 0.2,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    fit_from: float | None = None,
) -> dict[str, dict]:
    """Each baseline alone on the window of :func:`fit_run` (no temporal law): ``{name: {
    "predicted_loss": [...], "heldout": errors or None}}``, or ``{name: {"error": why}}`` for a
    baseline that cannot be fitted (too few points for its parameters, no LR schedule)."""
    if not isinstance(run, PositionLossRun):
        run = load_run(run)
    _, loss, progress, _, _, in_window, held_out = _window(run, fit_until, fit_from)
    measured = loss.mean(axis=1)
    out: dict[str, dict] = {}
    for name in baselines:
        baseline = Baseline(name)
        if baseline.needs_lr_schedule and run.lr_schedule is None:
            out[name] = {"error": run.lr_schedule_note}
            continue
        try:
            entry = _fit_baseline(
                baseline, progress, in_window, measured, run.progress([run.max_steps])
            )
        except ValueError as error:
            out[name] = {"error": str(error)}
            continue
        predicted = entry["predicted_loss"]
        entry["heldout"] = (
            prediction_errors(measured[held_out], predicted[held_out]) if held_out.any() else None
        )
        out[name] = entry | {"predicted_loss": _as_list(predicted)}
    return out


def fit_run(
    run: str | os.PathLike | PositionLossRun,
    fit_until: float = 0.2,
    law: str = "hyperbolic",
    forms: dict[str, str] | None = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    fit_from: float | None = None,
    min_r2: float = 0.5,
    index_offset: int = 1,
    first_position: int = 0,
    joint_refine: bool = True,
    max_steps: int | None = None,
) -> dict:
    """Fit on the window ``[fit_from, fit_until]`` (fractions of ``train.max_steps``), predict after.

    run: a run directory (see :mod:`.run_data`) or a loaded :class:`PositionLossRun`.
    fit_from: ``None`` starts the window at the end of warmup (``train.warmup_steps``).
    Returns a JSON-ready dict: settings, per-checkpoint measured loss and window masks, stage-1
    position fits, the temporal coefficients, and for each method (``"tsl"`` and every baseline)
    its predicted overall loss at the logged checkpoints, at ``max_steps`` and its held-out errors
    (MAPE in percent, R^2, RMSE, MAE; ``None`` when nothing is held out).
    """
    if not isinstance(run, PositionLossRun):
        run = load_run(run, max_steps=max_steps)
    steps, loss, progress, fit_from_step, fit_until_step, in_window, held_out = _window(
        run, fit_until, fit_from
    )
    measured = loss.mean(axis=1)

    tsl = TemporalScalingLaw(
        law, dict(forms or {}), min_r2, index_offset, first_position, joint_refine
    )
    tsl.fit(progress, loss, in_window)
    final_progress = run.progress([run.max_steps])
    dense_steps = _dense_steps(run)
    dense_progress = run.progress(dense_steps)

    methods: dict[str, dict] = {}
    curves: dict[str, list] = {"steps": dense_steps.tolist()}
    predicted_positions = tsl.predict_position_loss(progress)  # (S, T)
    methods[TSL] = {
        "equation": f"{get_position_law(law).model.equation}; L = mean_i L_i",
        "predicted_loss": predicted_positions.mean(axis=1),
        "predicted_loss_at_max_steps": float(tsl.predict_loss(final_progress)[0]),
    }
    curves[TSL] = _as_list(tsl.predict_loss(dense_progress))
    skipped: dict[str, str] = {}
    for name in baselines:
        baseline = Baseline(name)
        if baseline.needs_lr_schedule and run.lr_schedule is None:
            skipped[name] = run.lr_schedule_note
            continue
        methods[name] = _fit_baseline(baseline, progress, in_window, measured, final_progress)
        curves[name] = _as_list(baseline.predict(dense_progress))
    for entry in methods.values():
        predicted = entry["predicted_loss"]
        entry["heldout"] = (
            prediction_errors(measured[held_out], predicted[held_out]) if held_out.any() else None
        )
        entry["predicted_loss"] = _as_list(predicted)

    shown = _position_curve_rows(held_out, in_window)
    return {
        "run_dir": str(run.run_dir),
        "max_steps": run.max_steps,
        "num_positions": run.num_positions,
        "settings": {
            "fit_until": fit_until,
            "fit_until_step": fit_until_step,
            "fit_from": fit_from,
            "fit_from_step": fit_from_step,
            "law": law,
            "forms": dict(tsl.forms),
            "min_r2": min_r2,
            "index_offset": index_offset,
            "first_position": first_position,
            "joint_refine": joint_refine,
            "baselines": list(baselines),
            "lr_schedule": run.lr_schedule_note,
        },
        "checkpoints": {
            "steps": steps.tolist(),
            "tokens_seen": run.tokens_seen[run.steps > 0].tolist(),
            "measured_loss": _as_list(measured),
            "in_fit_window": in_window.tolist(),
            "used_for_fit": tsl.usable.tolist(),
            "held_out": held_out.tolist(),
        },
        "position_fits": {
            "equation": get_position_law(law).model.equation,
            "r2": _as_list(tsl.position_fits.r2),
            **{n: _as_list(tsl.position_fits.params[:, k]) for k, n in enumerate(tsl.param_names)},
        },
        "temporal_fits": {
            n: {
                "form": tsl.forms[n],
                "equation": get_temporal_form(tsl.forms[n]).equation,
                "coefficients": tsl.coefficients[n],
                "r2": tsl.temporal_r2[n],
            }
            for n in tsl.param_names
        },
        "tsl_window_position_r2": tsl.window_r2(progress, loss),
        "tsl_heldout_position_mape": (
            mape(loss[held_out], predicted_positions[held_out]) if held_out.any() else None
        ),
        "methods": methods,
        "skipped_methods": skipped,
        "curves": curves,
        "position_curves": {
            "steps": steps[shown].tolist(),
            "measured": [_as_list(row) for row in loss[shown]],
            "predicted": [_as_list(row) for row in predicted_positions[shown]],
        },
    }
