"""Temporal Scaling Law at small scale: train once, fit every method on the same runs.

    python -m repro_temporal_scaling_law.reproduce --preset tiny       # = make reproduce-temporal_scaling_law
    python -m repro_temporal_scaling_law.reproduce --preset tiny --jobs 2 --arms main --seeds 0,1,2
    python -m repro_temporal_scaling_law.reproduce --preset tiny --report-only

Training runs (arms x seeds; model and training in ``configs/<preset>.yaml``):

1. ``main``: the preset's dense decoder on its corpus (wikitext-2 for ``tiny``), logging the
   validation loss of every token position at ~40 log-spaced steps.
2. ``mix-a0.20`` ... ``mix-a0.80`` (the paper's application, choosing a data mixture): the same
   model trained on a mixture with a fraction ``w`` of source A's characters (wikitext-2, the rest
   tinyshakespeare), all scored on one validation target (equal parts of both held-out texts,
   :mod:`.mixtures`), all with one tokenizer (the preset's, trained on the main corpus).

The compared methods are fits on those runs, not arms: in the same worker, right after training,
:func:`.analysis.analyse_run` fits the temporal law (default forms), three variants of it and six
baselines on the first 10/20/30% of the logged steps and scores the later ones.
:func:`.analysis.derive` turns that into one record per method, window and seed (MAPE on the main
run, mean MAPE over the mixtures of the seed, the ranking of those mixtures), which the claims
compare paired by seed with the best baseline, last value included (``repro_core.claims``).
"""

from __future__ import annotations

import dataclasses
import sys

from repro_core.claims import Claim
from repro_core.config import ModelConfig, load_config, package_preset_dirs
from repro_core.experiment import Arm, Grid, Metric, RunSpec, runs_root, train_run
from repro_core.experiment import checkpoints as grid_checkpoints
from repro_core.experiment import main as run_experiment

from .analysis import (
    MAIN_ARM,
    METHODS,
    MIXTURE_PREFIX,
    PLOT_WINDOW,
    VARIANTS,
    WINDOWS,
    analyse_run,
    derive,
)
from .baselines import DEFAULT_BASELINES

PACKAGE = "temporal_scaling_law"
SOURCES = ("wikitext-2", "tinyshakespeare")
WEIGHTS = (0.2, 0.4, 0.6, 0.8)  # fraction of source A's characters in the training split
# Characters of each mixture's training split, and of each source in the validation target
# (0: all held-out text of the smaller source), per preset (another preset: tiny's).
MIXTURE_CHARS = {
    "debug": (150_000, 20_000),
    "tiny": (3_000_000, 0),
    "small": (200_000_000, 0),
    "paper": (2_000_000_000, 0),
}


def _config(preset: str, overrides=()):
    return load_config(preset, list(overrides), ModelConfig, package_preset_dirs(__file__))


def _mixtures(preset: str, extra_overrides=()):
    """The mixture corpora and the shared tokenizer, under the grid's run folder."""
    from .mixtures import prepare_mixture_runs

    train_chars, valid_chars = MIXTURE_CHARS.get(preset, MIXTURE_CHARS["tiny"])
    data_dir = runs_root() / PACKAGE / preset / "mixture-data"
    cfg = _config(preset, extra_overrides)
    return prepare_mixture_runs(data_dir, cfg, WEIGHTS, SOURCES, train_chars, valid_chars)


def preflight(preset: str, extra_overrides: tuple[str, ...]) -> None:
    _mixtures(preset, extra_overrides)  # once, before the workers (which would race for it)


def run_one(spec: RunSpec) -> dict:
    """Train one run (per-position loss logged), then fit every method at every window."""
    if spec.arm.startswith(MIXTURE_PREFIX):
        folders, tokenizer_dir = _mixtures(spec.preset, spec.overrides)  # made by preflight
        corpus = folders[float(spec.arm.removeprefix(MIXTURE_PREFIX))]
        extra = (f"data.corpus={corpus.resolve()}", f"data.tokenizer={tokenizer_dir.resolve()}")
        spec = dataclasses.replace(spec, overrides=(*spec.overrides, *extra))
    trainer, result = train_run(spec, ModelConfig, package_preset_dirs(__file__))
    cfg = trainer.cfg
    model = (
        f"{result['parameters']['total'] / 1e6:.2f}M-parameter dense decoder "
        f"({cfg.model.num_hidden_layers} layers x {cfg.model.hidden_size}), seq_len "
        f"{cfg.data.seq_len}, {cfg.train.max_steps} steps of {cfg.train.batch_size} x "
        f"{cfg.data.seq_len} tokens, tokenizer {cfg.data.tokenizer.split('/')[-1]}, corpus "
        f"{cfg.data.corpus.split('/')[-1]}"
    )
    return (
        {"val_loss": result["val_loss"], "train_seconds": result["train_seconds"]}
        | {"model": model}
        | analyse_run(spec.path, keep_plot_data=spec.arm == MAIN_ARM)
    )


GRID = Grid(
    package=PACKAGE,
    arms=(Arm(MAIN_ARM), *(Arm(f"{MIXTURE_PREFIX}{w:.2f}") for w in WEIGHTS)),
    run=run_one,
    seeds=(0, 1, 2),
    metrics=(
        Metric("final_loss", "final val loss (logged)", True, 4),
        *(
            Metric(f"mape@{PLOT_WINDOW}/{m}", f"MAPE % @{PLOT_WINDOW} {m}", True, 2)
            for m in ("tsl", "tsl_a2_power", "power_law", "last_value")
        ),
    ),  # fmt: skip
    title="Temporal Scaling Law reproduction",
    description=(
        "Arms are training runs: `main` on the preset's corpus, `mix-aW` on a mixture with a "
        f"fraction W of {SOURCES[0]} characters (the rest {SOURCES[1]}), all mixtures scored on "
        "one validation target with one tokenizer. The compared methods are fits on the same "
        "runs, at the fitting windows " + ", ".join(WINDOWS) + " of the steps; the claims compare "
        "them per window (setting), paired by seed: `mape_main` = held-out MAPE % on the main "
        "run, `mape_mixtures` = its mean over the mixture runs of the seed, `spearman` = rank "
        "correlation of the predicted with the measured final losses of the seed's mixtures."
    ),
    preflight=preflight,
    derive=derive,
    derived_arms=METHODS,
)

PREDICTION = '"accurately predicts the test loss of LLMs across training steps" (abstract)'
SELECTION = (
    '"direct and efficient hyperparameter selection on the target LLM, such as data mixture '
    'proportions" (abstract)'
)
_ON = {"mape_main": "main corpus runs", "mape_mixtures": "mixture runs"}
CLAIMS = (
    *(Claim(f"{PREDICTION}, {_ON[metric]}", metric, variant, DEFAULT_BASELINES,
            settings=tuple(WINDOWS))
      for metric in _ON for variant in VARIANTS),
    *(Claim(SELECTION, "spearman", variant, DEFAULT_BASELINES, lower_is_better=False,
            settings=tuple(WINDOWS)) for variant in VARIANTS),
)  # fmt: skip


def checkpoints(preset: str = "tiny") -> dict[str, str]:
    """``repro.bench`` entry point: the seed-0 model directories of the runs that exist."""
    return {f"tsl-{arm}-seed0": path for arm, path in grid_checkpoints(GRID, preset).items()}


def main(argv: list[str] | None = None) -> int:
    from .grid_report import plots, sections

    return run_experiment(GRID, CLAIMS, argv, sections=sections, plots=plots)


if __name__ == "__main__":
    sys.exit(main())
