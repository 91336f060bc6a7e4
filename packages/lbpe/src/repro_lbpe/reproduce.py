"""LBPE vs BPE (and with Scaffold-BPE): language models in bits per byte, continual pre-training,
and the tokenizer statistics; ``make reproduce-lbpe``.

    python -m repro_lbpe.reproduce --preset tiny                       # the whole grid
    python -m repro_lbpe.reproduce --preset tiny --arms bpe,lbpe
    python -m repro_lbpe.reproduce --preset tiny --report-only         # rebuild the report

Every arm trains the preset's dense decoder (`configs/<preset>.yaml`) on one vocabulary of size N
(the preset's `data.tokenizer=lbpe:N`, trained by repro_core.bpe on the train split) and changes
only how text is encoded. Arm options are `arm.*` pseudo-overrides read here, not config keys:

* `arm.vocab`: `bpe` (plain BPE vocabulary) or `scaffold` (Scaffold-BPE: E, then demolition);
* `arm.reading`: `bpe` (merge-rule BPE encoding, the baseline) or `b` (LBPE-B, leftmost ties);
* `arm.continue`: continual pre-training: start from the `bpe` arm's final model of the same seed
  (trained first if missing) and train max_steps / 2 more steps at lr / 3 with
  this arm's encoding (equal steps for both encodings);
* `arm.budget=bytes`: equal training bytes instead of equal tokens (the paper's comparison):
  steps scaled by bytes/token of the `bpe` arm over this arm's, measured on the train split.

Metrics: bits per byte on the whole validation split (never per-token perplexity across
tokenizers), and the share of 7-15-character token occurrences on a third of the held-out text
(validation + test lines `i % 3 == seed % 3`: the seeds give three disjoint text shards).
The tokenizer study at several N (`study.py`) runs once after the grid (`finalize`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

from repro_core.claims import Claim
from repro_core.experiment import (
    Arm,
    Grid,
    Metric,
    RunSpec,
    execute,
    load_result,
    make_spec,
    spec_fingerprint,
    train_run,
)
from repro_core.experiment import main as run_experiment

CONTINUE_FRACTION = 2  # continual pre-training: max_steps / 2 more steps at lr / 3
STUDY_SIZES = {"debug": (300, 512), "tiny": (1024, 4096, 8192), "small": (8192, 32000)}


def _own(overrides) -> tuple[dict[str, str], list[str]]:
    """Split `arm.*` pseudo-overrides from config overrides."""
    own, rest = {}, []
    for o in overrides:
        key, _, value = o.partition("=")
        if key.startswith("arm."):
            own[key[4:]] = value
        else:
            rest.append(o)
    return own, rest


def _config(preset: str, overrides: list[str]):
    from repro_core.config import ModelConfig, load_config, package_preset_dirs

    return load_config(preset, overrides, ModelConfig, package_preset_dirs(__file__))


def run_config(preset: str, overrides) -> object:
    """The config of a run, its `arm.*` pseudo-overrides aside (`GRID.config_loader`: every run's
    config is checked before any worker starts)."""
    return _config(preset, _own(overrides)[1])


def arm_tokenizer_spec(preset_spec: str, vocab: str, reading: str) -> str:
    """`lbpe:4096` (the preset's) -> `lbpe:scaffold:4096:reading=b` etc."""
    from repro_lbpe.tokenizer import _trained_size, parse_spec

    source, options = parse_spec(preset_spec.split(":", 1)[1])
    trained = _trained_size(source)
    if trained is None:
        raise ValueError(
            f"data.tokenizer={preset_spec!r}: the grid needs lbpe:N (a trained vocabulary)"
        )
    extra = f":pattern={options['pattern']}" if "pattern" in options else ""
    return f"lbpe:{vocab}:{trained[1]}:reading={reading}{extra}"


def _train_bytes_per_token(spec_str: str, corpus, val_fraction: float) -> float:
    """Bytes per token of the train split (the trainer's cached tokenization)."""
    from repro_core.data import get_tokenizer, tokenize_corpus

    tok = get_tokenizer(spec_str, corpus)
    return tokenize_corpus(corpus, tok, val_fraction)["train"].bytes_per_token


def run_one(spec: RunSpec) -> dict:
    """Train one arm (see the module docstring) and measure it."""
    from repro_core.data import get_tokenizer, resolve_corpus

    from repro_lbpe.study import heldout_shard_stats

    own, overrides = _own(spec.overrides)
    cfg = _config(spec.preset, overrides)
    corpus, vf = resolve_corpus(cfg.data.corpus), cfg.data.val_fraction
    tok_spec = arm_tokenizer_spec(
        cfg.data.tokenizer, own.get("vocab", "bpe"), own.get("reading", "b")
    )
    overrides.append(f"data.tokenizer={tok_spec}")
    if own.get("continue") == "true":
        base = make_spec(GRID, spec.preset, "bpe", "", spec.seed, _extra(spec))
        sha = spec_fingerprint(GRID, base)
        if load_result(base, sha) is None:  # the base model is the bpe arm's run: train it first
            from repro_core.train import reset_accelerate

            execute(GRID.run, base, None, sha)
            reset_accelerate()
        overrides += [
            f"train.max_steps={max(1, cfg.train.max_steps // CONTINUE_FRACTION)}",
            f"train.lr={cfg.train.lr / 3}",
            f"train.warmup_steps={max(1, cfg.train.warmup_steps // CONTINUE_FRACTION)}",
            f"model.init_from={Path(base.run_dir).resolve() / 'final'}",
        ]
    steps = _config(spec.preset, overrides).train.max_steps
    if own.get("budget") == "bytes":
        ref = arm_tokenizer_spec(cfg.data.tokenizer, "bpe", "bpe")
        ratio = _train_bytes_per_token(ref, corpus, vf) / _train_bytes_per_token(
            tok_spec, corpus, vf
        )
        steps = max(1, round(steps * ratio))
        overrides.append(f"train.max_steps={steps}")
    tok = get_tokenizer(tok_spec, corpus)
    from repro_core.config import package_preset_dirs

    _, res = train_run(
        replace(spec, overrides=tuple(overrides)),
        preset_dirs=package_preset_dirs(__file__),
        tokenizer=tok,
    )
    return {
        "val_bits_per_byte": res["val_bits_per_byte"],
        "val_loss": res["val_loss"],
        "val_bytes_per_token": res["val_loss"] / res["val_bits_per_byte"] / math.log(2),
        "train_steps": res["step"],
        "train_bytes": res["tokens_seen"] * _train_bytes_per_token(tok_spec, corpus, vf),
        "train_seconds": res["train_seconds"],
        "tokenizer": tok_spec,
        **heldout_shard_stats(tok, corpus, spec.seed),
    }


def _extra(spec: RunSpec) -> tuple[str, ...]:
    """The CLI's --set overrides of a spec (after arm + setting + seed, see make_spec)."""
    n = len(GRID.arm(spec.arm).overrides) + len(GRID.settings[spec.setting]) + 1
    return tuple(spec.overrides[n:])


def finalize(results: dict) -> dict:
    from repro_lbpe.study import tokenizer_study

    cfg = _config(
        results["preset"],
        [o for o in results["grid"]["extra_overrides"] if not o.startswith("arm.")],
    )
    sizes = STUDY_SIZES.get(results["preset"], (int(cfg.data.tokenizer.rsplit(":", 1)[-1]),))
    return {"tokenizers": tokenizer_study(cfg.data.corpus, sizes)}


def sections(results: dict) -> list[str]:
    from repro_lbpe.study import sections as study_sections

    return study_sections(results)


BPE, LBPE = ("arm.vocab=bpe", "arm.reading=bpe"), ("arm.vocab=bpe", "arm.reading=b")
SCAFFOLD, SCAFFOLD_LBPE = (
    ("arm.vocab=scaffold", "arm.reading=bpe"),
    ("arm.vocab=scaffold", "arm.reading=b"),
)
BYTES = ("arm.budget=bytes",)

GRID = Grid(
    package="lbpe",
    arms=(  # in run order: the main comparison first, so a grid cut short still answers it
        Arm("bpe", BPE),
        Arm("lbpe", LBPE),
        Arm("cpt_bpe", (*BPE, "arm.continue=true")),
        Arm("cpt_lbpe", (*LBPE, "arm.continue=true")),
        Arm("lbpe_bytes", (*LBPE, *BYTES)),
        Arm("scaffold", SCAFFOLD),
        Arm("scaffold_lbpe", SCAFFOLD_LBPE),
        Arm("scaffold_bytes", (*SCAFFOLD, *BYTES)),
        Arm("scaffold_lbpe_bytes", (*SCAFFOLD_LBPE, *BYTES)),
    ),
    run=run_one,
    config_loader=run_config,
    seeds=(0, 1, 2),
    metrics=(
        Metric("val_bits_per_byte", "val bits/byte", lower_is_better=True, digits=4),
        Metric("val_bytes_per_token", "val bytes/token", lower_is_better=False, digits=4),
        Metric("long_share_chars", "share 7-15 chars", lower_is_better=False, digits=4),
        Metric("train_steps", "steps", digits=0),
        Metric("train_bytes", "train bytes", digits=0),
    ),
    title="LBPE: long-token-first encoding vs BPE (same vocabulary)",
    description=(
        "One N=4096 vocabulary per family (plain BPE; Scaffold-BPE) trained on the wikitext-2 train "
        "split; arms differ only in encoding. Plain arms: equal training tokens (the paper's "
        "comparison); `*_bytes` arms: equal training bytes (steps scaled to the `bpe` arm's bytes). "
        "`cpt_*`: the `bpe` model continued for half its steps at a third of its LR with BPE or LBPE "
        "encoding (equal steps). Bits per byte on the whole validation split."
    ),
)

CLAIMS = (
    Claim(
        text='LBPE "smooths the frequency differences between short and long tokens": long tokens '
        "occur more often (paper: +2.37% / +2.24% / +2.28% at 7-9 / 10-12 / 13-15 characters) "
        "(abstract; digest of the paper, spec L2.4)",
        metric="long_share_chars", method="lbpe", baseline="bpe", lower_is_better=False,
    ),
    Claim(
        text='"LBPE consistently outperforms the original BPE" (abstract), at equal training tokens',
        metric="val_bits_per_byte", method="lbpe", baseline="bpe", lower_is_better=True,
    ),
    Claim(
        text='"LBPE consistently outperforms the original BPE" (abstract), at equal training bytes',
        metric="val_bits_per_byte", method="lbpe_bytes", baseline="bpe", lower_is_better=True,
    ),
    Claim(
        text="LBPE helps continual pre-training of a BPE-trained model (digests, spec L2.3)",
        metric="val_bits_per_byte", method="cpt_lbpe", baseline="cpt_bpe", lower_is_better=True,
    ),
    Claim(
        text="LBPE combines with Scaffold-BPE (digests, spec L2.3): LBPE over Scaffold-BPE beats "
        "Scaffold-BPE",
        metric="val_bits_per_byte", method="scaffold_lbpe", baseline="scaffold", lower_is_better=True,
    ),
    Claim(
        text="LBPE combines with Scaffold-BPE, at equal training bytes",
        metric="val_bits_per_byte", method="scaffold_lbpe_bytes", baseline="scaffold_bytes",
        lower_is_better=True,
    ),
)  # fmt: skip


def checkpoints(preset: str = "tiny") -> dict[str, str]:
    """`repro.bench` entry point: arm -> `final/` model directory of seed 0 (runs that exist)."""
    from repro_core.experiment import run_dir

    import repro_lbpe.tokenizer  # noqa: F401  (AutoTokenizer registration)

    found = {}
    for arm in (a.name for a in GRID.arms):
        final = run_dir(GRID, preset, arm, "", 0) / "final"
        if (final / "config.json").is_file():
            found[f"lbpe/{arm}"] = str(final.resolve())
    return found


def main(argv=None) -> int:
    return run_experiment(GRID, CLAIMS, argv, sections=sections, finalize=finalize)


if __name__ == "__main__":
    sys.exit(main())
