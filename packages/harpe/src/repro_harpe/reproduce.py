"""The long-context extension grid of the paper's Tables 3, 4 and 6 at a preset's scale.

One base (``configs/base-<preset>.yaml``: RoPE base 1e4 at length 128, trained once before the
grid into ``$REPRO_RUNS_DIR/harpe/<preset>/base`` and reused by every arm and seed), then
continued training at the target length with an equal token budget per arm: ABF with one large
base, ABF in three stages, PI, YaRN, HARPE uniform (ascending, descending), HARPE peak-valley,
and the control (HARPE with every base equal to ABF's, which must equal ABF exactly). Each run
is then evaluated on the RULER-style tasks and by sliding-window perplexity
(:mod:`repro_harpe.evaluate`). Grid, statistics and verdicts: ``repro_core.experiment``.

    make reproduce-harpe                  # = python -m repro_harpe.reproduce --preset tiny
    python -m repro_harpe.reproduce --preset debug --out /tmp/harpe-debug      # smoke test
    python -m repro_harpe.reproduce --preset tiny --seeds 0 --arms abf_single,harpe_pv
    python -m repro_harpe.reproduce --preset tiny --report-only
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from repro_core.claims import Claim
from repro_core.config import load_config, package_preset_dirs
from repro_core.experiment import Arm, Grid, Metric, RunSpec, config_loader, runs_root
from repro_core.experiment import checkpoints as grid_checkpoints
from repro_core.experiment import main as run_experiment

from .config import HarpeModelConfig

# what each preset evaluates: retrieval lengths, samples per (task, length, depth), ppl contexts
EVAL = {
    "debug": dict(lengths=(128, 256), depths=(0.0, 1.0), samples=1, contexts=(128, 256),
                  short=64, tokens=600),
    "tiny": dict(lengths=(128, 256, 512, 1024, 2048), depths=(0.0, 0.5, 1.0), samples=4,
                 contexts=(256, 512, 1024, 2048), short=128, tokens=4096),
    "small": dict(lengths=(256, 1024, 2048, 4096, 8192), depths=(0.0, 0.25, 0.5, 0.75, 1.0),
                  samples=20, contexts=(1024, 2048, 4096, 8192), short=256, tokens=32768),
}  # fmt: skip
LABELS = {
    "abf_single": "ABF, one stage (base 5e6)",
    "abf_multi": "ABF, 3 stages (1e6@256, 2e6@512, 5e6@1024; equal token shares)",
    "pi": "PI (base 1e4, linear x8)",
    "yarn": "YaRN (base 1e4, x8)",
    "harpe_asc": "HARPE uniform ascending (Eq. 9, 1e6..5e6)",
    "harpe_desc": "HARPE uniform descending",
    "harpe_pv": "HARPE peak-valley (Alg. 1, s = 1e5)",
    "control": "control: HARPE with every base 5e6 (= ABF one stage)",
}
ARMS = (
    Arm("abf_single", ("model.rope_scheme=single",)),
    Arm("abf_multi", ("model.rope_scheme=single", 'model.stages=["1e6:0.25","2e6:0.5"]')),
    Arm("pi", ("model.rope_scheme=single", "model.rope_theta=1e4", "model.rope_scaling=linear")),
    Arm("yarn", ("model.rope_scheme=single", "model.rope_theta=1e4", "model.rope_scaling=yarn")),
    Arm("harpe_asc", ("model.rope_scheme=uniform",)),
    Arm("harpe_desc", ("model.rope_scheme=uniform", "model.descending=true")),
    Arm("harpe_pv", ("model.rope_scheme=peak_valley",)),
    Arm("control", ("model.rope_scheme=uniform", "model.base_min=5e6", "model.base_max=5e6")),
)


def base_dir(preset: str) -> Path:
    return runs_root() / "harpe" / preset / "base"


def ensure_base(preset: str) -> Path:
    """Train the shared base of ``preset`` once (``configs/base-<preset>.yaml``, seed 0)."""
    from repro_core.train import reset_accelerate

    from .train import run

    final = base_dir(preset) / "final"
    if not (final / "config.json").is_file():
        cfg = load_config(f"base-{preset}", [], HarpeModelConfig, package_preset_dirs(__file__))
        print(f"[harpe] training the shared base of preset {preset!r} into {final.parent}")
        run(cfg, base_dir(preset))
        reset_accelerate()
    return final


def run_one(spec: RunSpec) -> dict:
    """Continued training of one arm and seed from the shared base, then the evaluation."""
    import torch

    from .evaluate import evaluate_model
    from .train import run

    torch.set_num_threads(1)
    overrides = [*spec.overrides, f"name={spec.arm}", "train.progress=false",
                 f"model.init_from={ensure_base(spec.preset)}"]  # fmt: skip
    cfg = load_config(spec.preset, overrides, HarpeModelConfig, package_preset_dirs(__file__))
    trained = run(cfg, spec.path)
    from transformers import AutoTokenizer

    from .modeling import HarpeForCausalLM

    model = HarpeForCausalLM.from_pretrained(spec.path / "final").eval()
    tok = AutoTokenizer.from_pretrained(spec.path / "final")
    ev = evaluate_model(model, tok, **EVAL.get(spec.preset, EVAL["tiny"]))  # noqa
    lengths = EVAL.get(spec.preset, EVAL["tiny"])["lengths"]
    target = cfg.data.seq_len
    near = [n for n in lengths if target // 2 <= n <= target]  # 512-1024 for tiny

    def retrieval(ns):
        return float(np.mean([ev[f"{k}@{n}"] for n in ns for k in ("passkey", "ruler")]))

    e = EVAL.get(spec.preset, EVAL["tiny"])
    return {
        **{k: v for k, v in ev.items() if "@" in k},
        "passkey_target": ev[f"passkey@{target}"],
        "ruler_target": ev[f"ruler@{target}"],
        "ppl_target": ev[f"ppl@{target}"],
        "ppl_extrapolate": ev[f"ppl@{max(e['contexts'])}"],
        "ppl_short": ev[f"ppl_short@{e['short']}"],
        "retrieval_near": retrieval(near),
        "retrieval_target": retrieval([target]),
        "retrieval_all": retrieval(lengths),
        "induction": ev["induction"],
        "val_loss": trained["val_loss"],
        "cells": ev["cells"],
        "bases": model.config.head_bases(),
        "tokens_seen": trained["tokens_seen"],
        "train_seconds": trained["train_seconds"],
    }


GRID = Grid(
    package="harpe",
    arms=ARMS,
    run=run_one,
    # 5 seeds: retrieval is scored on 12 samples per task and length, so a run's retrieval is
    # noisy (a seed's passkey@1024 moves in steps of 8.3 points) and 3 seeds left every retrieval
    # claim's interval ~ +-25 points wide (2026-12-04).
    seeds=(0, 1, 2, 3, 4),
    config_loader=config_loader(HarpeModelConfig, __file__),
    preflight=lambda preset, _overrides: ensure_base(preset),  # after the configs are checked
    metrics=(
        Metric("retrieval_near", "retrieval 512-1024", False, 1),
        Metric("retrieval_target", "retrieval 1024", False, 1),
        Metric("passkey_target", "passkey 1024", False, 1),
        Metric("ruler_target", "RULER-sub 1024", False, 1),
        Metric("retrieval_all", "retrieval 128-2048", False, 1),
        Metric("ppl_target", "ppl@1024", True, 3),
        Metric("ppl_extrapolate", "ppl@2048", True, 3),
        Metric("ppl_short", "ppl short@128", True, 3),
        Metric("induction", "induction", False, 3),
    ),
    title="HARPE reproduction: long-context extension from 128 to 1024 tokens",
    description=(
        "Arms: " + "; ".join(f"`{k}` = {v}" for k, v in LABELS.items()) + ". Every arm continues "
        "the same base (RoPE base 1e4, length 128) for the same number of tokens at length 1024 "
        "(ABF-multi: a third of them in each stage). Retrieval = mean of passkey and the RULER "
        "subset (niah_single, niah_multikey, vt, cwe; string_match_all, 0-100) over depths "
        "0, 50, 100%; 'retrieval 512-1024' averages lengths 512 and 1024. Perplexity: "
        "sliding window (stride 256) on held-out prose at a context of L tokens; short = "
        "disjoint 128-token blocks (retention). Induction: next-token accuracy on the repeated "
        "half of 30 random ids repeated once (the copy mechanism retrieval needs)."
    ),
)
CLAIMS = (
    Claim('"HARPE ... single-stage training ... matches or even outperforms the multi-stage '
          'ABF" (abstract; Table 4 NIAH avg 86.82 vs 81.36)', "retrieval_near", "harpe_pv",
          "abf_multi", lower_is_better=False, kind="no_worse", margin=3.0),
    Claim("Table 3: HARPE perplexity <= ABF multi-stage (Proof-pile 3.02 vs 3.03)", "ppl_target",
          "harpe_pv", "abf_multi", lower_is_better=True, kind="no_worse", margin=0.05),
    Claim("Table 4: HARPE retrieval beats ABF multi-stage (86.82 vs 81.36)", "retrieval_near",
          "harpe_pv", "abf_multi", lower_is_better=False),
    Claim("Table 4: PI and YaRN lag at the longest lengths (128k: 0 and 0 vs HARPE 67.19)",
          "retrieval_target", "harpe_pv", ("pi", "yarn"), lower_is_better=False),
    Claim("Table 3: PI and YaRN have higher long-context perplexity (20.73, 4.53 vs 3.02)",
          "ppl_target", "harpe_pv", ("pi", "yarn"), lower_is_better=True),
    Claim("Table 6: uniform descending beats uniform ascending (85.30 vs 84.30)",
          "retrieval_all", "harpe_desc", "harpe_asc", lower_is_better=False),
    Claim("Table 6: every HARPE scheme beats ABF one stage (83.7-86.8 vs 79.49); uniform "
          "ascending", "retrieval_near", "harpe_asc", "abf_single", lower_is_better=False),
    Claim("control: HARPE with all bases equal is ABF one stage (same function, same runs)",
          "ppl_target", "control", "abf_single", lower_is_better=True, kind="matches",
          margin=1e-6),
)  # fmt: skip


def _mean_by(results: dict, key) -> dict:
    acc: dict = {}
    for r in results["runs"]:
        for c in r["metrics"].get("cells", []):
            acc.setdefault((r["arm"], *key(c)), []).append(c["accuracy"])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def sections(results: dict) -> list[str]:
    """Accuracy by length (all tasks) and by depth (passkey and NIAH at the target length),
    means over seeds and depths; the head -> base map of every arm."""
    runs = results["runs"]
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    lengths = sorted({c["length"] for r in runs for c in r["metrics"].get("cells", [])})
    tasks = list(dict.fromkeys(c["task"] for r in runs for c in r["metrics"].get("cells", [])))
    out = []
    by_len = _mean_by(results, lambda c: (c["task"], c["length"]))
    lines = ["| arm | task | " + " | ".join(map(str, lengths)) + " |",
             "| --- | --- |" + " --- |" * len(lengths)]  # fmt: skip
    for a in arms:
        for t in tasks:
            vals = [by_len.get((a, t, n)) for n in lengths]
            lines.append(
                f"| {a} | {t} | " + " | ".join("" if v is None else f"{v:.1f}" for v in vals) + " |"
            )
    out.append(
        "## Accuracy by length (string_match_all, mean over depths and seeds)\n\n"
        + "\n".join(lines)
    )
    depth_cells = _mean_by(results, lambda c: (c["task"], c["length"], c["depth"]))
    depths = sorted({k[3] for k in depth_cells if k[3] is not None})
    top = max(lengths) if lengths else None
    target = sorted(n for n in lengths if n < (top or 0))[-1] if len(lengths) > 1 else top
    lines = ["| arm | task | " + " | ".join(f"depth {d:.0%}" for d in depths) + " |",
             "| --- | --- |" + " --- |" * len(depths)]  # fmt: skip
    for a in arms:
        for t in ("passkey", "niah_single", "niah_multikey"):
            vals = [depth_cells.get((a, t, target, d)) for d in depths]
            if any(v is not None for v in vals):
                lines.append(
                    f"| {a} | {t} | "
                    + " | ".join("" if v is None else f"{v:.1f}" for v in vals)
                    + " |"
                )
    out.append(f"## Accuracy by depth at length {target} (mean over seeds)\n\n" + "\n".join(lines))
    lines = ["| arm | RoPE base per head |", "| --- | --- |"]
    for a in arms:
        bases = next(r["metrics"].get("bases") for r in runs if r["arm"] == a)
        lines.append(f"| {a} | {', '.join(f'{b:.3g}' for b in bases)} |")
    out.append("## Head -> base maps\n\n" + "\n".join(lines))
    return out


def checkpoints(preset: str = "tiny") -> dict[str, str]:
    """``repro-bench`` entry point: arm -> ``final/`` model directory of seed 0 (those that exist)."""
    return grid_checkpoints(GRID, preset)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # the shared base is trained once by GRID.preflight, after the arguments and configs are
    # checked and before the workers start
    return run_experiment(GRID, CLAIMS, argv, sections=sections)


if __name__ == "__main__":
    sys.exit(main())
