"""Command-line plumbing shared by every ``repro-*`` entry point; no torch at import.

* :func:`cli_main` wraps a ``main(argv) -> int``: a :class:`~repro_core.config.UserError`
  (a bad value, an unknown key, a missing preset, file, corpus or base checkpoint, a run
  directory that holds a run) prints one line ``error: <message>`` and exits with status 2;
  anything else is a bug and keeps its traceback.
* :class:`ArgumentParser` reports bad arguments the same way (one line, status 2).
* :func:`train_main` is every trainer's command line (``repro-train`` and each package's
  ``repro-<slug>-train``): it parses, loads and validates the config, checks the corpus, the
  base checkpoint and the run directory (``--resume`` / ``--overwrite``), and only then imports
  torch and the trainer.
* :func:`check_run` validates ``--run`` of an evaluation before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import (
    ConfigError,
    MissingInputError,
    ModelConfig,
    RunConfig,
    UserError,
    load_config,
    package_preset_dirs,
    resolve_base,
)
from .rundir import check_run_dir


def quiet_libraries() -> None:
    """Silence the ``datasets`` progress bars ("Generating split", "Map") of every command, and
    the transformers / hub bars ("Loading weights") when stderr is not a terminal."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def cli_main(fn: Callable[..., int]) -> Callable[..., int]:
    """Decorator of a command's ``main``: a :class:`UserError` becomes ``error: <message>`` on
    stderr and exit status 2 (the message's first line only); other exceptions propagate."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> int:
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"error: {message}", file=sys.stderr)
            return 2

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are :class:`UserError` (one line through :func:`cli_main`)."""

    def error(self, message: str):  # noqa: D401  (argparse's hook)
        raise UserError(f"{message} (see {self.prog} --help)")


# ----------------------------------------------------------------------------------------------
# Training


def train_arg_parser(prog: str, description: str) -> ArgumentParser:
    """The arguments every trainer takes."""
    p = ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--preset",
        default="tiny",
        help="preset name (debug, tiny, small, paper, ...) or a YAML path",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=3e-4 (repeatable)",
    )
    p.add_argument(
        "--run-dir", default=None, help="output directory (default runs/<name>-<preset>-seed<seed>)"
    )
    p.add_argument("--seed", type=int, default=None, help="shortcut for --set seed=N")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its latest complete checkpoint",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --run-dir (its checkpoints, metrics and results)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def check_inputs(cfg: RunConfig) -> None:
    """The corpus resolves (locally, or on a reachable hub) and ``model.init_from`` exists."""
    from .data import resolve_corpus

    if cfg.model.init_from:
        resolve_base(cfg.model.init_from)
    resolve_corpus(cfg.data.corpus)


@dataclass
class TrainCommand:
    """A parsed and validated trainer command line."""

    args: argparse.Namespace
    cfg: RunConfig
    run_dir: Path


def parse_train_command(
    argv: list[str] | None,
    model_config_cls: type[ModelConfig] = ModelConfig,
    preset_dirs: list[Path] | None = None,
    prog: str = "repro-train",
    description: str = "Train a model of this package on a corpus.",
    validate: Callable[[RunConfig], None] | None = check_inputs,
) -> TrainCommand | None:
    """Parse, load and validate (no torch); None after ``--print-config`` printed the config."""
    args = train_arg_parser(prog, description).parse_args(argv)
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    dirs = preset_dirs or package_preset_dirs(__file__)
    cfg = load_config(args.preset, overrides, model_config_cls, dirs)
    if args.print_config:
        print(cfg.to_yaml())
        return None
    run_dir = Path(args.run_dir or f"runs/{cfg.name}-{Path(args.preset).stem}-seed{cfg.seed}")
    check_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite)
    if validate is not None:
        validate(cfg)
    # a local corpus / tokenizer is recorded with its absolute path, so that an evaluation of the
    # run (which reads the run's config.yaml) finds the same data from any working directory
    for key in ("corpus", "tokenizer"):
        value = getattr(cfg.data, key)
        if value and Path(value).expanduser().exists():
            setattr(cfg.data, key, str(Path(value).expanduser().resolve()))
    return TrainCommand(args, cfg, run_dir)


def core_run(cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool) -> dict:
    """Train with the core :class:`~repro_core.train.Trainer` (torch is imported here)."""
    from .train import Trainer

    trainer = Trainer(cfg, run_dir, resume=resume, overwrite=overwrite)
    return trainer.train(resume=resume)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def done_line(results: dict, run_dir: Path, seconds: float) -> str:
    """One line summing up a finished run."""
    parts = [f"val loss {results['val_loss']:.4f}"]
    if results.get("val_perplexity") is not None:
        parts.append(f"val ppl {results['val_perplexity']:.2f}")
    if results.get("val_bits_per_byte") is not None:
        parts.append(f"bits/byte {results['val_bits_per_byte']:.4f}")
    if results.get("tokens_per_second"):
        parts.append(f"{results['tokens_per_second']:.0f} tokens/s")
    parts += [f"run dir {run_dir}", f"wall time {seconds:.0f} s"]
    return "[done] " + " | ".join(parts)


@cli_main
def train_main(
    argv: list[str] | None = None,
    model_config_cls: type[ModelConfig] = ModelConfig,
    preset_dirs: list[Path] | None = None,
    prog: str = "repro-train",
    run: Callable[..., dict] = core_run,
    validate: Callable[[RunConfig], None] | None = check_inputs,
    description: str = "Train a model of this package on a corpus.",
) -> int:
    """``repro-train`` and every package's ``repro-<slug>-train``.

    Args:
        model_config_cls: the package's :class:`ModelConfig` subclass (importable without torch).
        run: ``run(cfg, run_dir, resume=, overwrite=) -> results`` trains (imports the heavy
            stack itself); default the core Trainer.
        validate: checks of the resolved config that need no torch (default: corpus and base
            checkpoint exist); raise :class:`UserError` / :class:`ConfigError`.
    """
    start = time.perf_counter()
    cmd = parse_train_command(argv, model_config_cls, preset_dirs, prog, description, validate)
    if cmd is None:
        return 0
    results = run(cmd.cfg, cmd.run_dir, resume=cmd.args.resume, overwrite=cmd.args.overwrite)
    if is_main_process() and results:
        print(done_line(results, cmd.run_dir, time.perf_counter() - start), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# Evaluation


def check_run(run: str | Path, checkpoint: str = "final") -> dict:
    """The resolved config (a dict) of run directory ``run``, after checking that the model to
    evaluate is there; raises :class:`MissingInputError` naming what is missing."""
    import yaml

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise MissingInputError(
            f"{run} is not a run directory (no config.yaml): pass the --run-dir of a training run"
        )
    if checkpoint == "final":
        if not (run / "final" / "config.json").is_file():
            raise MissingInputError(
                f"{run} has no final model: the run has not finished (evaluate the latest "
                "checkpoint with --checkpoint latest, or --resume the training)"
            )
    elif checkpoint == "latest":
        if not (run / "checkpoints").is_dir():
            raise MissingInputError(f"{run} has no checkpoints/ (train with train.save_every > 0)")
    elif not (Path(checkpoint) / "config.json").is_file():
        raise MissingInputError(f"--checkpoint {checkpoint}: no model there (no config.json)")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if not isinstance(cfg, dict) or "data" not in cfg:
        raise ConfigError(f"{run / 'config.yaml'} is not a run config (no data section)")
    return cfg


def eval_arg_parser(prog: str, description: str) -> ArgumentParser:
    """The arguments every evaluator takes (packages add their own)."""
    p = ArgumentParser(prog=prog, description=description)
    p.add_argument("--run", required=True, help="run directory written by a trainer")
    p.add_argument("--checkpoint", default="final", help="final | latest | a model directory")
    p.add_argument("--split", default="validation", help="validation | test | train")
    p.add_argument("--corpus", default=None, help="corpus to evaluate on (default: the run's)")
    p.add_argument(
        "--batches", type=int, default=0, help="evaluate this many batches (0 = whole split)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    return p


def check_eval_inputs(args: argparse.Namespace) -> dict:
    """Before anything heavy: the run, its model and the corpus to evaluate on are there.

    The corpus is the run's own (``data`` section of its ``config.yaml``) unless ``--corpus``
    names another. Returns the run's config dict."""
    from .data import resolve_corpus

    cfg = check_run(args.run, args.checkpoint)
    if args.batches < 0 or args.batch_size < 1:
        raise UserError("--batches must be >= 0 (0 = whole split) and --batch-size >= 1")
    resolve_corpus(args.corpus or cfg["data"]["corpus"])
    return cfg


@cli_main
def eval_main(
    argv: list[str] | None = None, prog: str = "repro-eval", imports: tuple[str, ...] = ()
) -> int:
    """``repro-eval``: loss, perplexity, bits per byte of a run.

    ``imports``: modules imported after the checks, before the model is loaded (a package's
    ``modeling`` or tokenizer module, which registers its classes with transformers)."""
    import importlib
    import json

    p = eval_arg_parser(prog, "Evaluate a trained run on a corpus split.")
    p.add_argument("--per-position", action="store_true", help="also print the loss per position")
    args = p.parse_args(argv)
    check_eval_inputs(args)
    for module in imports:
        importlib.import_module(module)
    from .evaluate import evaluate_run

    result = evaluate_run(
        args.run,
        args.checkpoint,
        args.split,
        args.corpus,
        args.batches,
        args.batch_size,
        args.per_position,
    )
    print(json.dumps(result, indent=1))
    return 0


__all__ = [
    "ArgumentParser",
    "TrainCommand",
    "check_inputs",
    "check_eval_inputs",
    "check_run",
    "cli_main",
    "eval_arg_parser",
    "eval_main",
    "core_run",
    "done_line",
    "parse_train_command",
    "quiet_libraries",
    "train_arg_parser",
    "train_main",
]
