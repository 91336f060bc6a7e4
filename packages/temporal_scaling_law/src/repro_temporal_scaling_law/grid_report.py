"""The reproduction grid's own report sections and figures, from ``results.json`` alone.

``sections(results)`` (markdown for results.md) and ``plots(results, out)`` (PNG files) are
handed to ``repro_core.experiment.main``; both read the per-run fits stored by
:func:`.analysis.analyse_run` and the per-seed records of :func:`.analysis.derive`.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np

from .analysis import MAIN_ARM, METHODS, PLOT_WINDOW, VARIANTS, WINDOWS, mixture_weight
from .api import TSL


def stats(values) -> tuple[float, float, int]:
    """Mean and sample std of the finite values, and how many were not finite (failed fits:
    reported beside the mean, never hidden)."""
    values = [math.nan if v is None else float(v) for v in values]
    finite = [v for v in values if math.isfinite(v)]
    mean = statistics.fmean(finite) if finite else math.nan
    std = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return mean, std, len(values) - len(finite)


def cell(values, digits: int = 2) -> str:
    mean, std, failed = stats(values)
    if math.isnan(mean):
        return f"n/a ({failed} failed)" if failed else "n/a"
    text = f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")
    return text + (f" ({failed} failed)" if failed else "")


def groups(results: dict) -> dict[str, list[dict]]:
    runs = results["runs"]
    out = {
        "main corpus runs": [r for r in runs if r["arm"] == MAIN_ARM],
        "mixture runs (all weights and seeds)": [
            r for r in runs if mixture_weight(r["arm"]) is not None
        ],
    }
    return {k: v for k, v in out.items() if v}


def _prediction_tables(results: dict) -> list[str]:
    lines = ["## Loss prediction: held-out MAPE % (lower is better) and R^2", "",
             "Each method is fitted on the logged steps from the end of warmup to the first "
             + "/".join(WINDOWS) + " of training and predicts every later logged checkpoint; "
             "mean ± sample std over runs. A fit that cannot be made (too few checkpoints pass "
             "the stage-1 R^2 filter) is counted as failed, not given an error value.", "",
             "Law variants (`tsl` is the default; the others are reported beside it, never "
             "instead):", "",
             "- `tsl`: the defaults of `configs/fit.yaml` (hyperbolic law; a0 log, a1 hyperbolic, "
             f"a2 piecewise cosine; min_r2 {VARIANTS[TSL]['min_r2']})"]  # fmt: skip
    lines += [f"- `{n}`: the defaults with {json.dumps(kw)}" for n, kw in VARIANTS.items()][1:]
    for name, runs in groups(results).items():
        lines += ["", f"### {name}", ""]
        lines += ["| method | " + " | ".join(f"MAPE {w}" for w in WINDOWS) + " | "
                  + " | ".join(f"R^2 {w}" for w in WINDOWS) + " |",
                  "|---" * (1 + 2 * len(WINDOWS)) + "|"]  # fmt: skip
        for m in METHODS:
            fits = [[r["metrics"]["fits"][w]["methods"][m] for r in runs] for w in WINDOWS]
            row = [cell([f["mape"] for f in col]) for col in fits]
            row += [cell([f["r2"] for f in col], 3) for col in fits]
            lines.append(f"| {m} | " + " | ".join(row) + " |")
    return lines


def _mixture_tables(results: dict) -> list[str]:
    mixes = [r for r in results["runs"] if mixture_weight(r["arm"]) is not None]
    weights = sorted({mixture_weight(r["arm"]) for r in mixes})
    if len(weights) < 2:
        return []
    seeds = sorted({r["seed"] for r in mixes})
    lines = ["## Mixture selection", "", "Measured final validation loss (the same target for "
             "every weight w = fraction of the first source's characters in training):", "",
             "| seed | " + " | ".join(f"w={w:g}" for w in weights) + " |",
             "|---" * (1 + len(weights)) + "|"]  # fmt: skip
    for seed in seeds:
        final = {mixture_weight(r["arm"]): r["metrics"]["final_loss"] for r in mixes
                 if r["seed"] == seed}  # fmt: skip
        lines.append(f"| {seed} | " + " | ".join(
            f"{final[w]:.4f}" if w in final else "-" for w in weights) + " |")  # fmt: skip
    lines += ["", "Ranking of a seed's mixtures by each method's predicted final loss against "
              "the measured ones: Spearman rho (mean ± std over seeds), top-1 hits, regret "
              "(nats):", "", "| method | " + " | ".join(
                  f"rho {w} | top-1 {w} | regret {w}" for w in WINDOWS) + " |",
              "|---" * (1 + 3 * len(WINDOWS)) + "|"]  # fmt: skip
    derived = [d for d in results.get("derived", []) if "spearman" in d["metrics"]]
    for m in METHODS:
        row = []
        for w in WINDOWS:
            recs = [d["metrics"] for d in derived if d["arm"] == m and d["setting"] == w]
            hits = [x["top1_hit"] for x in recs if math.isfinite(x["top1_hit"])]
            row += [cell([x["spearman"] for x in recs]), f"{int(sum(hits))}/{len(hits)}",
                    cell([x["regret"] for x in recs], 4)]  # fmt: skip
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return lines


def stage1_note(results: dict) -> str:
    """The hyperbolic position law's R^2 per checkpoint: at the end, and inside the windows."""
    min_r2 = VARIANTS[TSL]["min_r2"]
    parts = []
    for name, runs in groups(results).items():
        final = [r["metrics"]["stage1_r2"]["r2"][-1] for r in runs]
        best, passing, first = {w: [] for w in WINDOWS}, {w: [] for w in WINDOWS}, []
        for r in runs:
            pairs = list(zip(r["metrics"]["stage1_r2"]["steps"], r["metrics"]["stage1_r2"]["r2"]))
            for w, (lo, hi) in r["metrics"]["window_steps"].items():
                inside = [v for st, v in pairs if lo <= st <= hi]
                best[w].append(max(inside, default=math.nan))
                passing[w].append(sum(v >= min_r2 for v in inside))
            lo = r["metrics"]["window_steps"][next(iter(WINDOWS))][0]
            first.append(next((st for st, v in pairs if st >= lo and v >= min_r2), None))
        parts.append(
            f"{name}: R^2 of the per-checkpoint hyperbolic position fit at the last step "
            f"{np.mean(final):.2f} (min {np.min(final):.2f}); the best R^2 of a checkpoint inside "
            "the window (after warmup), over the runs: "
            + ", ".join(f"{w}: {np.nanmax(best[w]):.2f}" for w in WINDOWS)
            + f"; window checkpoints with R^2 >= min_r2 {min_r2} (per run; `tsl` needs 3): "
            + ", ".join(f"{w}: {passing[w]}" for w in WINDOWS)
            + f"; first step after warmup with R^2 >= {min_r2}: {first}"
        )
    return "; ".join(parts) + "."


def plot_names(results: dict) -> list[str]:
    names = ["prediction_mape.png"]
    main = [r for r in results["runs"] if r["arm"] == MAIN_ARM and "plot" in r["metrics"]]
    if main and main[0]["metrics"]["plot"]["fit"]:
        fit = main[0]["metrics"]["plot"]["fit"]
        names.append(f"fit_main-seed{main[0]['seed']}_{fit['variant']}.png")
    if main:
        names.append("position_curves.png")
    if any("spearman" in d["metrics"] for d in results.get("derived", [])):
        names.append("mixture_ranking.png")
    return names


def sections(results: dict) -> list[str]:
    model = results["runs"][0]["metrics"]["model"] if results["runs"] else "-"
    points = results["runs"][0]["metrics"]["num_checkpoints"] if results["runs"] else 0
    return [
        f"Model: {model}. Every run logs the validation loss of every token position at "
        f"{points} logged steps.",
        "\n".join(_prediction_tables(results)),
        "\n".join(_mixture_tables(results)),
        "## Stage-1 fit quality\n\n" + stage1_note(results),
        "\n".join(f"![{n}]({n})" for n in plot_names(results)),
    ]


def plots(results: dict, out: Path) -> list[str]:
    """The figures of :func:`plot_names`, drawn into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import plot_fit

    names = plot_names(results)
    out = Path(out)

    def save(figure, name):
        figure.tight_layout()
        figure.savefig(out / name, dpi=100, metadata={"Software": None})
        plt.close(figure)

    parts = groups(results)
    figure, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 4.5), squeeze=False)
    for axis, (name, runs) in zip(axes[0], parts.items()):
        width = 0.8 / len(METHODS)
        for j, m in enumerate(METHODS):
            means, stds = zip(*[stats(r["metrics"]["fits"][w]["methods"][m]["mape"] for r in runs)[:2]
                                for w in WINDOWS])  # fmt: skip
            axis.bar(np.arange(len(WINDOWS)) + j * width, np.nan_to_num(means), width,
                     yerr=np.nan_to_num(stds), label=m, color="C3" if m == TSL else None)  # fmt: skip
        axis.set_xticks(np.arange(len(WINDOWS)) + 0.4 - width / 2, list(WINDOWS))
        axis.set(yscale="log", xlabel="fitting window (share of training)",
                 ylabel="held-out MAPE % (log scale)", title=name)  # fmt: skip
        axis.legend(fontsize=6)
    save(figure, names[0])
    main = [r for r in results["runs"] if r["arm"] == MAIN_ARM and "plot" in r["metrics"]]
    for name in names[1:]:
        if name.startswith("fit_"):
            fit = main[0]["metrics"]["plot"]["fit"]
            plot_fit(fit, out / name)
        elif name == "position_curves.png":
            curves = main[0]["metrics"]["plot"]["position_curves"]
            figure, axis = plt.subplots(figsize=(6, 4.5))
            for k, (step, loss) in enumerate(zip(curves["steps"], curves["loss"])):
                axis.plot(np.arange(1, len(loss) + 1), loss, linewidth=1, label=f"step {step}",
                          color=plt.cm.viridis(k / max(len(curves["steps"]) - 1, 1)))  # fmt: skip
            axis.set(xscale="log", xlabel="token position (1-based)", ylabel="validation loss",
                     title=f"per-position loss, main seed {main[0]['seed']}")  # fmt: skip
            axis.legend(fontsize=7)
            save(figure, name)
        elif name == "mixture_ranking.png":
            _plot_ranking(results, out / name, plt)
    return names


def _plot_ranking(results: dict, path: Path, plt) -> None:
    mixes = [r for r in results["runs"] if mixture_weight(r["arm"]) is not None]
    weights = sorted({mixture_weight(r["arm"]) for r in mixes})
    seeds = sorted({r["seed"] for r in mixes})
    measured = np.array([[next((r["metrics"]["final_loss"] for r in mixes if r["seed"] == s
                                and mixture_weight(r["arm"]) == w), np.nan) for w in weights]
                         for s in seeds])  # fmt: skip
    derived = [d for d in results["derived"] if "predicted_final" in d["metrics"]]
    figure, axes = plt.subplots(1, len(WINDOWS), figsize=(5 * len(WINDOWS), 4.2), squeeze=False)
    for axis, w in zip(axes[0], WINDOWS):
        axis.errorbar(weights, np.nanmean(measured, 0), np.nanstd(measured, 0, ddof=1)
                      if len(seeds) > 1 else None, color="black", label="measured", linewidth=2)  # fmt: skip
        lows, highs = [np.nanmin(measured)], [np.nanmax(measured)]
        for m in (*VARIANTS, "last_value", "power_law", "reciprocal"):
            recs = [d["metrics"] for d in derived if d["arm"] == m and d["setting"] == w]
            preds = [
                x["predicted_final"] for x in recs if len(x["predicted_final"]) == len(weights)
            ]
            preds = np.array(preds, dtype=float)
            if not len(preds) or not np.isfinite(preds).all():
                continue
            lows.append(preds.mean(0).min())
            highs.append(preds.mean(0).max())
            rho = stats(x["spearman"] for x in recs)[0]
            axis.errorbar(weights, preds.mean(0), preds.std(0, ddof=1) if len(preds) > 1 else None,
                          label=f"{m} (rho {rho:.2f})", linestyle="--",
                          color="C3" if m == TSL else None)  # fmt: skip
        low = max(min(lows), np.nanmin(measured) - 1.0)  # predictions far off the scale are cut
        high = min(max(highs), np.nanmax(measured) + 1.0)
        axis.set_ylim(low - 0.05, high + 0.05)
        axis.set(xlabel="fraction of source A in training", ylabel="final validation loss",
                 title=f"predicted from the first {w}")  # fmt: skip
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


__all__ = ["PLOT_WINDOW", "plot_names", "plots", "sections", "stats"]
