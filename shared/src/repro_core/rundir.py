"""A run directory that holds a run is never overwritten unless asked.

The trainer writes ``config.yaml``, ``meta.json``, ``metrics.jsonl``, ``checkpoints/``, ``final/``
and ``results.json`` into its run directory. Starting a run in a directory that already holds any
of them (a finished run, or a partial one a kill left behind) is refused with
:class:`RunDirExistsError` unless the caller says what it wants: ``resume`` (continue from the
latest complete checkpoint) or ``overwrite`` (delete those files, keep anything else, start
from step 0). The command lines expose both as ``--resume`` / ``--overwrite``; the
:class:`~repro_core.train.Trainer` takes the same two arguments. No torch here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .config import UserError

# what a run writes into its directory (files or folders)
RUN_ARTIFACTS = (
    "config.yaml",
    "meta.json",
    "metrics.jsonl",
    "results.json",
    "position_loss.npz",
    "checkpoints",
    "final",
    ".tmp-final",
)


class RunDirExistsError(UserError):
    """The run directory already holds a run and neither resume nor overwrite was asked for."""


def run_artifacts(run_dir: str | Path) -> list[str]:
    """Names of the run files present in ``run_dir`` (an empty list: no run there)."""
    run_dir = Path(run_dir)
    found = []
    for name in RUN_ARTIFACTS:
        path = run_dir / name
        if path.is_dir() and not any(path.iterdir()):
            continue  # an empty folder holds nothing to lose
        if path.exists():
            found.append(name + ("/" if path.is_dir() else ""))
    return found


def check_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Raise :class:`RunDirExistsError` if ``run_dir`` holds a run and neither flag is set."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other: pass one of them")
    found = run_artifacts(run_dir)
    if found and not (resume or overwrite):
        state = "a finished run" if "results.json" in found else "a partial run"
        raise RunDirExistsError(
            f"{run_dir} already holds {state} ({', '.join(found[:4])}): pass --resume to "
            "continue it, --overwrite to replace it, or choose another --run-dir"
        )


def clear_run(run_dir: str | Path) -> list[str]:
    """Delete the run files of ``run_dir`` (see :data:`RUN_ARTIFACTS`); returns their names."""
    removed = run_artifacts(run_dir)
    for name in RUN_ARTIFACTS:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return removed


__all__ = ["RUN_ARTIFACTS", "RunDirExistsError", "check_run_dir", "clear_run", "run_artifacts"]
