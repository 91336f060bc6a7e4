"""Scaffold-BPE at small scale: tokenizer statistics at several N and a BPE vs Scaffold-BPE LM.

    python -m repro_scaffold_bpe.reproduce --preset tiny            # = make reproduce-scaffold_bpe
    python -m repro_scaffold_bpe.reproduce --preset tiny --jobs 2 --arms bpe,scaffold --settings 4096
    python -m repro_scaffold_bpe.reproduce --preset tiny --report-only

1. Tokenizers (arms ``bpe``, ``scaffold``; settings = vocabulary sizes N): plain BPE and
   Scaffold-BPE trained on a seeded 90% sample of the training lines (:mod:`.stats`; the seed is
   the sample), scored on the held-out validation split (bytes per token) and on the sample's
   encoding (entropy, redundancy, replacement frequency; paper Tables 6, 8 and Figure 5).
2. Language models (arms ``lm-bpe``, ``lm-scaffold``, N = 4096 only): the preset's dense decoder
   trained with ``plain-bpe:N`` and ``scaffold:N`` at an equal number of training tokens (the
   paper's default comparison), paired seeds, scored by bits per byte on the validation split.

Statistics and verdicts: ``repro_core.experiment`` / ``repro_core.claims``.
"""

from __future__ import annotations

import dataclasses
import sys

from repro_core.claims import Claim
from repro_core.config import ModelConfig, load_config, package_preset_dirs
from repro_core.experiment import Arm, Grid, Metric, RunSpec, config_loader, train_run
from repro_core.experiment import checkpoints as grid_checkpoints
from repro_core.experiment import main as run_experiment

SIZES = ("1024", "4096", "8192", "16384")
LM_SIZE = "4096"
LM_TOKENIZER = {"lm-bpe": "plain-bpe", "lm-scaffold": "scaffold"}


def run_one(spec: RunSpec) -> dict:
    """A tokenizer measurement, or an LM trained with the arm's tokenizer at N = the setting."""
    from repro_core.data import resolve_corpus

    cfg = load_config(spec.preset, spec.overrides, ModelConfig, package_preset_dirs(__file__))
    corpus = resolve_corpus(cfg.data.corpus)
    if spec.arm in ("bpe", "scaffold"):
        from .stats import measure

        return measure(corpus, int(spec.setting), spec.seed, spec.arm)
    from .train import resolve_tokenizer

    tokenizer_spec = f"{LM_TOKENIZER[spec.arm]}:{spec.setting}"
    spec = dataclasses.replace(
        spec, overrides=(*spec.overrides, f"data.tokenizer={tokenizer_spec}")
    )
    tokenizer = resolve_tokenizer(tokenizer_spec, corpus)
    _, result = train_run(spec, ModelConfig, package_preset_dirs(__file__), tokenizer=tokenizer)
    keys = ("val_loss", "val_bits_per_byte", "tokens_seen", "train_seconds", "tokens_per_second")
    return {k: result[k] for k in keys} | {"tokenizer": tokenizer_spec}


GRID = Grid(
    package="scaffold_bpe",
    arms=(
        Arm("bpe"),
        Arm("scaffold"),
        Arm("lm-bpe", settings=(LM_SIZE,)),
        Arm("lm-scaffold", settings=(LM_SIZE,)),
    ),
    run=run_one,
    config_loader=config_loader(ModelConfig, __file__),
    settings={n: () for n in SIZES},
    metrics=(
        Metric("heldout_bytes_per_token", "held-out bytes/token", False, 4),
        Metric("entropy_bits", "entropy (bits)", False, 4),
        Metric("redundancy", "redundancy", True, 4),
        Metric("scaffold_fraction", "|S| / N", None, 4),
        Metric("replacement_frequency_gain", "replacement frequency gain", False, 3),
        Metric("val_bits_per_byte", "LM val bits/byte", True, 4),
    ),
    title="Scaffold-BPE reproduction",
    description=(
        "Settings are the vocabulary size N. Tokenizer arms: trained on a seeded 90% sample of "
        "the training lines (the seed is the sample). LM arms: a dense decoder per tokenizer at "
        "N = 4096, equal training tokens, paired seeds; bits per byte on the validation split."
    ),
)
TABLE6 = "Table 6, bytes per token, Pile 32K: BPE 3.879, Scaffold 3.889"
CLAIMS = (
    Claim('"Scaffold-BPE consistently outperforms the original BPE" (abstract): language modeling',
          "val_bits_per_byte", "lm-scaffold", "lm-bpe", settings=(LM_SIZE,)),
    Claim(TABLE6, "heldout_bytes_per_token", "scaffold", "bpe", lower_is_better=False),
    Claim("Table 8, Pile 32K: entropy BPE 11.2382, Scaffold 11.2443", "entropy_bits",
          "scaffold", "bpe", lower_is_better=False),
    Claim("Table 8, Pile 32K: redundancy BPE 0.2491, Scaffold 0.2487", "redundancy",
          "scaffold", "bpe"),
    Claim("Figure 5: tokens that replace scaffold tokens are more frequent (+76.40% at 32K, "
          "+68.58% at 64K, +58.99% at 128K)", "replacement_frequency_gain", "scaffold", "bpe",
          lower_is_better=False),
)  # fmt: skip


def checkpoints(preset: str = "tiny") -> dict[str, str]:
    """``repro-bench`` entry point: the LM arms' seed-0 model directories (those that exist)."""
    import repro_scaffold_bpe.hf_tokenizer  # noqa: F401  (AutoTokenizer registration)

    found = grid_checkpoints(GRID, preset, setting=LM_SIZE)
    return {f"scaffold_bpe/{arm.removeprefix('lm-')}": path for arm, path in found.items()}


def main(argv: list[str] | None = None) -> int:
    return run_experiment(GRID, CLAIMS, argv)


if __name__ == "__main__":
    sys.exit(main())
