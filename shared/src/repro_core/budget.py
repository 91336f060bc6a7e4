"""`repro-budget`: the step budget at which a run's validation loss stops improving.

    repro-budget runs/budget/finedeep --arms 8 --seeds 3 --jobs 2     # = make budget-finedeep

Reads a core Trainer run directory (``metrics.jsonl``, ``config.yaml``) and answers one question:
from which step on does training longer stop paying, by the rule below, and how long would a grid
take at that budget on this machine.

The rule (``--threshold`` = 1%, ``--window`` = 10%):

* T is the run's planned number of steps (``train.max_steps`` of its ``config.yaml``; the last
  step logged when there is none), w = window x T.
* The curve is the validation loss at the eval points only (the ``val_loss`` rows the trainer
  logs every ``train.eval_every`` steps and at the end; a step logged twice, as after a
  ``--resume``, keeps its last row). Nothing is smoothed or interpolated: the val loss is already
  an average over the same ``eval_batches`` batches at every point, and the sustained rule
  below, not a filter, keeps one flat window of noise from ending the search.
* For an eval point s, the window ends at e(s) = the first eval point at or after s + w (the
  window is never shorter than w; when eval_every divides w, e(s) = s + w exactly). Its relative
  improvement is r(s) = (L(s) - L(e(s))) / L(s). The last eval points, whose s + w lies beyond
  the last eval point (the final w steps of a finished run), have no window and are not judged.
* The budget is the first judged eval point s with r(s) < threshold such that r(s') < threshold
  for every later judged point s' as well: the loss has stopped improving by more than 1% per
  10% of the steps and does not start again. The first point with r(s) < threshold, sustained or
  not, is reported alongside (``first_crossing``), so that a noise-made plateau is visible.
* No such point: the loss still improves by >= 1% in the last judged window; the answer says
  "not reached" and the run must be longer (a larger ``train.max_steps``).

Caveat on the schedule: the trainer's learning rate decays (cosine) to ``min_lr_ratio`` at T, and
a decaying rate keeps lowering the loss until the end of any run. ``make budget-<slug>`` trains the
budget run at a constant rate after warm-up (``train.min_lr_ratio=1.0``) so that the curve measures
what more steps buy, not where the schedule ends; a grid run with ``max_steps`` = the budget then
anneals and ends a little lower than this curve at the same step. The schedule found in
``config.yaml`` is printed with the answer.

Wall time: seconds per step = tokens per step (``tokens_seen`` / ``step`` of the training rows)
over the median of the logged ``tokens_per_second`` (training time only: evaluation pauses and
process start-up are excluded), measured in the budget run's own process. A grid of ``arms`` x
``seeds`` runs on ``jobs`` parallel single-thread workers takes ceil(runs / jobs) waves of one run
each, so its training time is waves x budget x seconds per step, at the baseline's speed (an arm
slower per step than the baseline, such as an MoE arm, makes the real grid longer).
``--max-minutes`` (90) also gives the largest budget such a grid fits in, and the recommendation is
the smaller of the two, naming which one it is. No torch here.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .cli import ArgumentParser, cli_main
from .config import UserError

MIN_EVAL_POINTS = 3


@dataclass
class Run:
    """What ``repro-budget`` reads from a run directory."""

    steps: list[int]  # eval points, increasing
    losses: list[float]  # val_loss at each
    total_steps: int  # T
    seconds_per_step: float | None = None
    tokens_per_step: float | None = None
    tokens_per_second: float | None = None
    schedule: str = "unknown (no config.yaml)"
    notes: list[str] = field(default_factory=list)


def _read_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(
            f"{path} is not valid YAML ({exc.__class__.__name__}): fix or remove it"
        ) from None


def read_run(run_dir: str | Path) -> Run:
    """The eval curve, T and the measured speed of a Trainer run directory (see the module doc)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(
            f"no run directory {run_dir}: give the --run-dir of a finished or partial run"
        )
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{path} does not exist: {run_dir} holds no trainer run (train it first)")
    lines = path.read_text().splitlines()
    notes, rows = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):  # a run killed while it wrote its last line
                notes.append(f"ignored the truncated last line {i} of {path.name}")
                continue
            raise UserError(f"{path} line {i} is not JSON: the file is damaged") from None
    evals: dict[int, float] = {}
    for row in rows:
        if "val_loss" in row and "step" in row:
            evals[int(row["step"])] = float(row["val_loss"])
    if not evals:
        raise UserError(
            f"{path} has no val_loss rows: train with --set train.eval_every=N (N > 0) to log the "
            "validation loss during the run"
        )
    steps = sorted(evals)
    if len(steps) < MIN_EVAL_POINTS:
        raise UserError(
            f"{path} has {len(steps)} eval point(s) (steps {steps}); the budget needs at least "
            f"{MIN_EVAL_POINTS}: train with a smaller train.eval_every (about max_steps / 30)"
        )
    bad = [s for s in steps if not math.isfinite(evals[s]) or evals[s] <= 0]
    if bad:
        raise UserError(f"{path}: val_loss is not a positive finite number at steps {bad[:5]}")
    cfg = _read_config(run_dir)
    train = cfg.get("train") or {}
    total = int(train.get("max_steps") or steps[-1])
    if steps[-1] < total:
        notes.append(f"run incomplete: last eval at step {steps[-1]} of {total}")
    run = Run(steps, [evals[s] for s in steps], total, notes=notes)
    if train:
        ratio = float(train.get("min_lr_ratio", 0.1))
        run.schedule = (
            "constant lr after warm-up"
            if ratio >= 1
            else f"cosine lr decay to {ratio:g} x lr at step {total} (the late curve includes it)"
        )
    speeds = [float(r["tokens_per_second"]) for r in rows if r.get("tokens_per_second")]
    per_step = [
        r["tokens_seen"] / r["step"] for r in rows if r.get("tokens_seen") and r.get("step")
    ]
    if speeds and per_step:
        run.tokens_per_second = statistics.median(speeds)
        run.tokens_per_step = per_step[-1]
        run.seconds_per_step = run.tokens_per_step / run.tokens_per_second
    return run


def windows(steps: list[int], losses: list[float], total: int, window: float = 0.1) -> list[dict]:
    """One row per eval point: ``step``, ``loss``, ``end`` (e(s) or None), ``improvement`` r(s)."""
    width = window * total
    rows = []
    for i, (s, loss) in enumerate(zip(steps, losses)):
        # first eval point at or after s + w (a tolerance for w computed in floating point)
        end = next((j for j in range(i + 1, len(steps)) if steps[j] >= s + width - 1e-9), None)
        r = None if end is None else (loss - losses[end]) / loss
        rows.append({"step": s, "loss": loss, "end": None if end is None else steps[end],
                     "improvement": r})  # fmt: skip
    return rows


def find_budget(
    steps: list[int], losses: list[float], total: int, threshold: float = 0.01, window: float = 0.1
) -> dict:
    """The rule of the module docstring: ``{"budget", "first_crossing", "rows", ...}``.

    ``budget`` and ``first_crossing`` are eval steps or None (not reached).
    """
    rows = windows(steps, losses, total, window)
    judged = [r for r in rows if r["improvement"] is not None]
    if not judged:
        raise UserError(
            f"no eval point has a full window of {window:.0%} x {total} steps after it: the run "
            "is too short for its planned max_steps, or train.eval_every is too coarse"
        )
    for r in rows:
        r["flat"] = r["improvement"] is not None and r["improvement"] < threshold
    budget = None
    for r in reversed(judged):  # the start of the last unbroken stretch of flat windows
        if not r["flat"]:
            break
        budget = r["step"]
    first = next((r["step"] for r in judged if r["flat"]), None)
    return {"budget": budget, "first_crossing": first, "rows": rows, "threshold": threshold,
            "window": window, "total_steps": total, "last_judged": judged[-1]["step"]}  # fmt: skip


def grid_time(
    steps: int, seconds_per_step: float, runs: int, jobs: int, max_minutes: float
) -> dict:
    """Training wall time of ``runs`` runs of ``steps`` steps on ``jobs`` workers, and the largest
    budget whose grid fits in ``max_minutes``."""
    waves = math.ceil(runs / jobs)
    return {"waves": waves, "seconds": waves * steps * seconds_per_step,
            "fit_steps": int(max_minutes * 60 // (waves * seconds_per_step))}  # fmt: skip


def _fmt_minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def report(run: Run, found: dict, runs: int, jobs: int, max_minutes: float) -> list[str]:
    """The answer line first, then the notes and the curve table."""
    budget, thr, win = found["budget"], found["threshold"], found["window"]
    rule = f"val loss improves < {thr:.0%} per {win:.0%} of {run.total_steps} steps"
    if budget is None:
        answer = (
            f"budget: not reached: {rule} at no eval point up to step {found['last_judged']} "
            f"(the last with a full window); train longer"
        )
        if run.seconds_per_step:
            t = grid_time(run.total_steps, run.seconds_per_step, runs, jobs, max_minutes)
            answer += (
                f"; a grid of {runs} runs on {jobs} worker(s) fits {t['fit_steps']} steps in "
                f"{max_minutes:g} minutes ({run.seconds_per_step:.3f} s/step)"
            )
    else:
        answer = f"budget: {budget} steps ({rule} from step {budget} on"
        if found["first_crossing"] != budget:
            answer += f"; a first flat window at step {found['first_crossing']} did not last"
        answer += ")"
        if run.seconds_per_step:
            t = grid_time(budget, run.seconds_per_step, runs, jobs, max_minutes)
            answer += (
                f"; grid of {runs} runs on {jobs} worker(s): {_fmt_minutes(t['seconds'])} "
                f"training at {run.seconds_per_step:.3f} s/step"
            )
            if t["fit_steps"] < budget:
                answer += f"; set {t['fit_steps']} steps (the {max_minutes:g}-minute cap)"
            else:
                answer += f"; set {budget} steps (the plateau, within {max_minutes:g} minutes)"
        else:
            answer += "; no tokens_per_second rows, so no wall-time estimate"
    lines = [answer, f"schedule: {run.schedule}"]
    if run.seconds_per_step:
        lines.append(
            f"speed: {run.tokens_per_second:.0f} tokens/s (median of the logged windows), "
            f"{run.tokens_per_step:.0f} tokens/step"
        )
    lines += [f"note: {n}" for n in run.notes]
    lines += ["", "| step | val loss | window end | improvement | < threshold |",
              "| ---: | ---: | ---: | ---: | :---: |"]  # fmt: skip
    for r in found["rows"]:
        end = "-" if r["end"] is None else str(r["end"])
        imp = "-" if r["improvement"] is None else f"{r['improvement']:+.2%}"
        mark = "" if r["improvement"] is None else ("yes" if r["flat"] else "no")
        star = " <- budget" if r["step"] == budget else ""
        lines.append(f"| {r['step']} | {r['loss']:.4f} | {end} | {imp} | {mark}{star} |")
    return lines


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise UserError(f"expected a fraction between 0 and 1 (exclusive), got {text!r}")
    return value


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        prog="repro-budget",
        description="The step budget at which a run's validation loss stops improving by more "
        "than THRESHOLD per WINDOW of its steps, and a grid's wall time at that budget.",
    )
    p.add_argument("run_dir", help="a trainer run directory (metrics.jsonl with val_loss rows)")
    p.add_argument("--threshold", type=_fraction, default=0.01, help="relative improvement (0.01)")
    p.add_argument("--window", type=_fraction, default=0.1, help="fraction of the steps (0.1)")
    p.add_argument("--arms", type=_positive_int, default=1, help="arms (x settings) of the grid")
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds per arm (3)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="parallel workers (2)")
    p.add_argument("--max-minutes", type=float, default=90.0, help="grid wall-time cap (90)")
    args = p.parse_args(argv)
    if not args.max_minutes > 0:
        raise UserError(f"--max-minutes must be positive, got {args.max_minutes}")
    run = read_run(args.run_dir)
    found = find_budget(run.steps, run.losses, run.total_steps, args.threshold, args.window)
    try:
        print("\n".join(report(run, found, args.arms * args.seeds, args.jobs, args.max_minutes)))
        sys.stdout.flush()
    except BrokenPipeError:  # `repro-budget RUN | head -1`: the reader wanted the answer only
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


__all__ = ["Run", "find_budget", "grid_time", "main", "read_run", "windows"]


if __name__ == "__main__":
    sys.exit(main())
