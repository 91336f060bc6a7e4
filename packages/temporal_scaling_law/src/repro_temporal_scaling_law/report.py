"""Outputs of a fit or a ranking: JSON and PNG written atomically, and a text summary."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .api import TSL  # noqa: E402
from .run_data import write_bytes_atomic  # noqa: E402


def to_json_ready(value):
    """Recursively turn numpy scalars into Python numbers and NaN/inf into None."""
    if isinstance(value, dict):
        return {str(k): to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return to_json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _save_figure_atomic(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def plot_fit(result: dict, path: str | Path) -> Path:
    """Measured vs predicted overall loss per method (left), per-position curves (right)."""
    checkpoints, curves, settings = result["checkpoints"], result["curves"], result["settings"]
    figure, (overall, positions) = plt.subplots(1, 2, figsize=(13, 5))
    steps, measured = checkpoints["steps"], checkpoints["measured_loss"]
    in_window, used = checkpoints["in_fit_window"], checkpoints["used_for_fit"]
    held_out = checkpoints["held_out"]
    groups = [  # (label, mask, marker style)
        (
            "before the window",
            [not w and not h for w, h in zip(in_window, held_out)],
            {"color": "grey", "s": 10},
        ),
        ("fit window", in_window, {"color": "black", "s": 18}),
        (
            "fit window, R^2 < min_r2: not used by TSL",
            [w and not u for w, u in zip(in_window, used)],
            {"color": "grey", "marker": "x", "s": 30},
        ),
        ("held out", held_out, {"facecolors": "none", "edgecolors": "black", "s": 18}),
    ]
    for label, mask, style in groups:
        if any(mask):
            overall.scatter(
                [s for s, keep in zip(steps, mask) if keep],
                [m for m, keep in zip(measured, mask) if keep],
                label=f"measured ({label})",
                zorder=3,
                **style,
            )
    for name, values in curves.items():
        if name == "steps":
            continue
        heldout = result["methods"][name]["heldout"]
        label = name if heldout is None else f"{name} (MAPE {heldout['mape']:.2f}%)"
        style = {"linewidth": 2.2, "color": "C3"} if name == TSL else {"linewidth": 1.0}
        overall.plot(
            curves["steps"],
            [v if v is not None else float("nan") for v in values],
            label=label,
            **style,
        )
    overall.axvline(settings["fit_until_step"], color="grey", linestyle="--", linewidth=1)
    overall.set_xscale("log")
    finite = [m for m in measured if m is not None]
    span = max(finite) - min(finite)
    overall.set_ylim(min(finite) - 0.15 * span, max(finite) + 0.15 * span)
    overall.set_xlabel("step")
    overall.set_ylabel("validation loss (mean over positions)")
    overall.set_title(f"fit on steps <= {settings['fit_until_step']} ({settings['fit_until']:.0%})")
    overall.legend(fontsize=7)

    position_curves = result["position_curves"]
    for k, step in enumerate(position_curves["steps"]):
        index = range(1, len(position_curves["measured"][k]) + 1)
        positions.plot(
            index,
            position_curves["measured"][k],
            color=f"C{k}",
            linewidth=0.8,
            alpha=0.7,
            label=f"measured, step {step}",
        )
        positions.plot(
            index,
            position_curves["predicted"][k],
            color=f"C{k}",
            linestyle="--",
            linewidth=1.6,
            label=f"TSL predicted, step {step}",
        )
    positions.set_xscale("log")
    positions.set_xlabel("token position (1-based)")
    positions.set_ylabel("validation loss")
    positions.set_title(f"per-position loss ({settings['law']} law)")
    positions.legend(fontsize=7)
    figure.tight_layout()
    return _save_figure_atomic(figure, Path(path))


def plot_ranking(ranking: dict, path: str | Path) -> Path:
    """Predicted vs measured final loss per run, one marker series per method."""
    figure, axis = plt.subplots(figsize=(6, 5))
    measured = [run["measured_final_loss"] for run in ranking["runs"]]
    for name, score in ranking["methods"].items():
        predicted = [run["predicted_final_loss"][name] for run in ranking["runs"]]
        rho = score["spearman"]
        label = f"{name} (rho {rho:.2f})" if rho is not None and math.isfinite(rho) else name
        axis.scatter(measured, predicted, label=label, s=25)
    low, high = min(measured), max(measured)
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("measured final loss")
    axis.set_ylabel("predicted final loss")
    axis.set_title(f"ranking from the first {ranking['fit_until']:.0%} of training")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return _save_figure_atomic(figure, Path(path))


def _number(value, spec: str) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and not math.isfinite(value))
        else format(value, spec)
    )


def format_fit_summary(result: dict) -> str:
    """A plain-text table: one row per method with its held-out errors and final prediction."""
    settings = result["settings"]
    used = sum(result["checkpoints"]["used_for_fit"])
    held = sum(result["checkpoints"]["held_out"])
    lines = [
        f"run {result['run_dir']}: fit on steps {settings['fit_from_step']}..{settings['fit_until_step']} "
        f"of {result['max_steps']} ({used} checkpoints used by TSL), {held} held out",
        f"law {result['position_fits']['equation']}; forms "
        + ", ".join(f"{k}: {v}" for k, v in settings["forms"].items()),
        f"{'method':<14} {'MAPE %':>8} {'R2':>8} {'RMSE':>8} {'pred@max':>9}",
    ]
    for name, entry in result["methods"].items():
        heldout = entry["heldout"] or {}
        lines.append(
            f"{name:<14} {_number(heldout.get('mape'), '8.3f')} {_number(heldout.get('r2'), '8.3f')} "
            f"{_number(heldout.get('rmse'), '8.4f')} {_number(entry['predicted_loss_at_max_steps'], '9.4f')}"
        )
    for name, reason in result["skipped_methods"].items():
        lines.append(f"{name:<14} skipped: {reason}")
    return "\n".join(lines)


def format_ranking_summary(ranking: dict) -> str:
    """A plain-text table: one row per method with its rank correlation and regret."""
    lines = [f"{len(ranking['runs'])} runs, best measured: {ranking['best_run_measured']}"]
    lines.append(
        f"{'method':<14} {'spearman':>9} {'kendall':>8} {'top1':>5} {'regret':>8} {'MAPE %':>8}"
    )
    for name, score in ranking["methods"].items():
        top1 = "-" if score["top1_hit"] is None else ("yes" if score["top1_hit"] else "no")
        lines.append(
            f"{name:<14} {_number(score['spearman'], '9.3f')} {_number(score['kendall'], '8.3f')} "
            f"{top1:>5} {_number(score['regret'], '8.4f')} {_number(score['mape_final'], '8.3f')}"
        )
    return "\n".join(lines)
