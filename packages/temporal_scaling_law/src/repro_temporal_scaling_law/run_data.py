"""Read (and write) the per-position loss log of a training run directory.

The core trainer writes, in a run directory ``RUN`` trained with
``--set train.position_loss_points=40``:

* ``RUN/position_loss.npz``: ``steps`` (S,) int, ``tokens_seen`` (S,) int, ``lr`` (S,) float and
  ``loss`` (S, T) float64, the validation loss at token positions ``0..T-1`` averaged over the
  (fixed) validation sequences, at S log-spaced steps;
* ``RUN/metrics.jsonl``: one JSON object per line, each with ``step``; eval lines carry ``val_loss``
  and train lines may carry ``lr`` (optional here: used to densify the LR schedule);
* ``RUN/config.yaml``: the resolved config; ``train.max_steps`` is the planned number of steps.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .schedule import LRSchedule, Progress, progress_without_schedule, schedule_from_config

POSITION_LOSS_FILE = "position_loss.npz"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
REQUIRED_ARRAYS = ("steps", "tokens_seen", "lr", "loss")
HOW_TO_PRODUCE = (
    "train with `--set train.position_loss_points=40` so that the trainer logs the per-position "
    f"validation loss to {POSITION_LOSS_FILE}"
)


class RunFormatError(ValueError):
    """A run directory is missing a file or an array, or holds inconsistent values."""


@dataclass
class PositionLossRun:
    """The per-position loss log of one run; arrays as in the module docstring."""

    run_dir: Path
    steps: np.ndarray
    tokens_seen: np.ndarray
    lr: np.ndarray
    loss: np.ndarray
    max_steps: int
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    lr_schedule: LRSchedule | None = None
    lr_schedule_note: str = ""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def num_positions(self) -> int:
        return self.loss.shape[1]

    @property
    def overall_loss(self) -> np.ndarray:
        """Mean loss over positions at each logged step (S,)."""
        return self.loss.mean(axis=1)

    def progress(self, steps=None) -> Progress:
        """Progress features at ``steps`` (default: the logged steps)."""
        steps = self.steps if steps is None else np.asarray(steps)
        if self.lr_schedule is None:
            return progress_without_schedule(steps, self.max_steps)
        return self.lr_schedule.progress(steps)


def _fail(run_dir: Path, message: str) -> RunFormatError:
    return RunFormatError(f"run directory {run_dir}: {message}")


def _read_config(run_dir: Path, max_steps: int | None) -> tuple[dict, int]:
    path = run_dir / CONFIG_FILE
    config: dict = {}
    if path.is_file():
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise _fail(run_dir, f"{CONFIG_FILE} is not valid YAML: {error}") from error
        if not isinstance(config, dict):
            raise _fail(
                run_dir, f"{CONFIG_FILE} must hold a mapping, found {type(config).__name__}"
            )
    if max_steps is None:
        if not path.is_file():
            raise _fail(
                run_dir,
                f"{CONFIG_FILE} not found; it gives train.max_steps (the planned number of steps, "
                "needed to turn --fit-until into a step). Train with the core trainer, which "
                "writes it, or pass max_steps= (CLI: --max-steps)",
            )
        max_steps = (config.get("train") or {}).get("max_steps")
        if max_steps is None:
            raise _fail(run_dir, f"{CONFIG_FILE} has no train.max_steps; pass --max-steps")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise _fail(run_dir, f"train.max_steps must be a positive integer, got {max_steps!r}")
    return config, int(max_steps)


def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise _fail(run_dir, f"{METRICS_FILE} line {number} is not JSON: {error}") from error
        if not isinstance(record, dict) or "step" not in record:
            raise _fail(run_dir, f"{METRICS_FILE} line {number} has no 'step' field")
        records.append(record)
    return records


def _read_position_loss(run_dir: Path) -> dict[str, np.ndarray]:
    path = run_dir / POSITION_LOSS_FILE
    if not path.is_file():
        raise _fail(run_dir, f"{POSITION_LOSS_FILE} not found; {HOW_TO_PRODUCE}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise _fail(
            run_dir, f"{POSITION_LOSS_FILE} is not a readable .npz file: {error}"
        ) from error
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise _fail(
            run_dir,
            f"{POSITION_LOSS_FILE} lacks array(s) {missing} (found {sorted(arrays)}); "
            f"{HOW_TO_PRODUCE} with a trainer that writes {list(REQUIRED_ARRAYS)}",
        )
    return arrays


def _validate(run_dir: Path, arrays: dict[str, np.ndarray], max_steps: int) -> None:
    loss = arrays["loss"]
    if loss.ndim != 2 or loss.shape[0] < 1 or loss.shape[1] < 3:
        raise _fail(
            run_dir, f"'loss' must be (steps, positions) with >= 3 positions, got {loss.shape}"
        )
    num_steps = loss.shape[0]
    for name in ("steps", "tokens_seen", "lr"):
        if arrays[name].shape != (num_steps,):
            raise _fail(
                run_dir,
                f"'{name}' has shape {arrays[name].shape}, expected ({num_steps},) to match 'loss'",
            )
    if not np.all(np.isfinite(loss)) or np.any(loss <= 0):
        bad = int(np.sum(~np.isfinite(loss) | (loss <= 0)))
        raise _fail(run_dir, f"'loss' has {bad} non-finite or non-positive values")
    steps = arrays["steps"]
    if np.any(steps < 0) or np.any(np.diff(steps) <= 0):
        raise _fail(run_dir, "'steps' must be non-negative and strictly increasing")
    if steps[-1] > max_steps:
        raise _fail(
            run_dir, f"'steps' reaches {int(steps[-1])}, beyond train.max_steps={max_steps}"
        )
    if not np.all(np.isfinite(arrays["lr"])):
        raise _fail(run_dir, "'lr' has non-finite values")


def _choose_schedule(
    config: dict, max_steps: int, points: tuple[np.ndarray, np.ndarray], annealing_decay: float
) -> tuple[LRSchedule | None, str]:
    """The planned LR schedule: the config's if it matches the logged LR, else the logged points."""
    steps, lrs = points
    from_config = schedule_from_config(config, max_steps)
    if from_config is not None:
        from_config = LRSchedule(
            from_config.lr, annealing_decay, from_config.source, from_config.warmup_steps
        )
        idx = np.clip(steps.astype(int), 0, max_steps)
        mismatch = np.max(np.abs(from_config.lr[idx] - lrs)) / max(from_config.lr.max(), 1e-30)
        if mismatch <= 0.02:
            return from_config, from_config.source
        warnings.warn(
            f"the warmup + cosine schedule read from {CONFIG_FILE} differs from the logged lr by "
            f"{mismatch:.1%} of the peak; using the logged values",
            stacklevel=3,
        )
    try:
        schedule = LRSchedule.from_points(steps, lrs, max_steps, annealing_decay)
        return schedule, schedule.source
    except ValueError as error:
        return None, f"no LR schedule: {error}; forms that read the LR are unavailable"


def load_run(
    run_dir: str | os.PathLike, max_steps: int | None = None, annealing_decay: float = 0.999
) -> PositionLossRun:
    """Load and validate a run directory; raises :class:`RunFormatError` with what to do."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFormatError(f"run directory {run_dir} does not exist (or is not a directory)")
    arrays = _read_position_loss(run_dir)
    config, max_steps = _read_config(run_dir, max_steps)
    _validate(run_dir, arrays, max_steps)
    metrics = _read_metrics(run_dir)
    lr_points = {int(s): float(v) for s, v in zip(arrays["steps"], arrays["lr"])}
    for record in metrics:
        if "lr" in record and record["lr"] is not None:
            lr_points.setdefault(int(record["step"]), float(record["lr"]))
    point_steps = np.array(sorted(lr_points), dtype=float)
    point_lrs = np.array([lr_points[int(s)] for s in point_steps])
    schedule, note = _choose_schedule(config, max_steps, (point_steps, point_lrs), annealing_decay)
    return PositionLossRun(
        run_dir=run_dir,
        steps=arrays["steps"].astype(np.int64),
        tokens_seen=arrays["tokens_seen"].astype(np.int64),
        lr=arrays["lr"].astype(float),
        loss=arrays["loss"].astype(np.float64),
        max_steps=max_steps,
        config=config,
        metrics=metrics,
        lr_schedule=schedule,
        lr_schedule_note=note,
    )


def save_run(
    run_dir: str | os.PathLike,
    steps,
    tokens_seen,
    lr,
    loss,
    max_steps: int,
) -> Path:
    """Write per-position losses from another source in this format (npz, config, metrics).

    Use it to fit the law to your own measurements; ``load_run`` reads the result back.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    loss = np.asarray(loss, dtype=np.float64)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        steps=np.asarray(steps, dtype=np.int64),
        tokens_seen=np.asarray(tokens_seen, dtype=np.int64),
        lr=np.asarray(lr, dtype=float),
        loss=loss,
    )
    write_bytes_atomic(run_dir / POSITION_LOSS_FILE, buffer.getvalue())
    if not (run_dir / CONFIG_FILE).exists():
        write_bytes_atomic(
            run_dir / CONFIG_FILE, yaml.safe_dump({"train": {"max_steps": int(max_steps)}}).encode()
        )
    lines = [
        json.dumps({"step": int(s), "val_loss": float(v)}) for s, v in zip(steps, loss.mean(axis=1))
    ]
    write_bytes_atomic(run_dir / METRICS_FILE, ("\n".join(lines) + "\n").encode())
    return run_dir


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
