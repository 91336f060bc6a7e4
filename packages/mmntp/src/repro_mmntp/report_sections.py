"""Extra sections of results.md, built from results.json alone: the spec's prototype bar, the
fidelity / novelty trade-off with and without guidance, speed, and the figures."""

from __future__ import annotations

import math
import statistics

# spec B.6 (prototype run 2, +-1 px shifts, d=128 x 3 layers, 1500 steps; [M] by the spec's author)
PROTOTYPE = {
    "caption_class_acc": 0.925,
    "classifier_acc_real": 0.967,
    "heldout_text_ce": 0.436,
    "heldout_image_ce": 3.22,
    "gen_agreement": 0.508,
    "gen_unique": 1.0,
}


def _values(results: dict, arm: str, key: str) -> list[float]:
    out = []
    for r in results["runs"]:
        v = r["metrics"].get(key)
        if r["arm"] == arm and isinstance(v, int | float):
            out.append(float(v))
    return out


def _cell(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if any(math.isnan(v) for v in values):
        return "nan"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def markdown_sections(results: dict) -> list[str]:
    arms = [a["name"] for a in results["grid"]["arms"]]
    out = []
    if "unified" in arms:
        rows = [
            "| metric | spec B.6 prototype | canonical `unified` (this grid) |",
            "|---|---|---|",
        ]
        for key, ref in PROTOTYPE.items():
            rows.append(f"| {key} | {ref} | {_cell(_values(results, 'unified', key))} |")
        out.append(
            "## The spec's prototype as the bar\n\n"
            "The prototype (spec B.6) used a d=128 x 3-layer decoder trained 1500 steps; the "
            "preset of this grid may be smaller (see Setup). Chance: caption 0.10, agreement 0.10; "
            "uniform image CE = ln K.\n\n" + "\n".join(rows)
        )
    rows = [
        "| arm | agreement T=1 | agreement CFG | unique T=1 | unique CFG | novel T=1 | novel CFG | Frechet T=1 | Frechet CFG |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        keys = ("gen_agreement", "gen_agreement_cfg", "gen_unique", "gen_unique_cfg",
                "gen_novelty", "gen_novelty_cfg", "gen_frechet", "gen_frechet_cfg")  # fmt: skip
        rows.append(
            f"| {arm} | " + " | ".join(_cell(_values(results, arm, k), 2) for k in keys) + " |"
        )
    out.append(
        "## Fidelity and novelty, with and without classifier-free guidance\n\n"
        "Guidance mixes conditional and unconditional logits, u + s (c - u), with the preset's "
        "`task.cfg_scale` (10% of generation sequences are trained without their text). "
        "Unique = distinct samples / 500; novel = share of samples whose code sequence is no "
        "training image's (shift-augmented pool). `ctp_generation` regresses latents "
        "deterministically, so it has no guidance column and no code novelty.\n\n" + "\n".join(rows)
    )
    rows = [
        "| arm | tokenizer images/s | LM tokens/s | tokenizer s | LM s |",
        "|---|---|---|---|---|",
    ]
    for arm in arms:
        rows.append(
            f"| {arm} | {_cell(_values(results, arm, 'tokenizer_images_per_second'), 0)} | "
            f"{_cell(_values(results, arm, 'train_tokens_per_second'), 0)} | "
            f"{_cell(_values(results, arm, 'tokenizer_seconds'), 1)} | "
            f"{_cell(_values(results, arm, 'train_seconds'), 1)} |"
        )
    out.append(
        "## Training speed per run (single thread, shared machine)\n\n"
        "Tokenizers are trained once per (tokenizer, seed) and reused by the other arms, whose "
        "rows then show the first run's numbers.\n\n" + "\n".join(rows)
    )
    figs = [f"![{a}](samples_{a}.png) ![{a}](recon_{a}.png)" for a in arms
            if any(r["arm"] == a and r["metrics"].get("images") for r in results["runs"])]  # fmt: skip
    if figs:
        out.append(
            "## Samples and reconstructions (seed 0)\n\n"
            "Generated samples: one column per requested class (0..9), T=1, no guidance. "
            "Reconstructions: the first test image of each class over its tokenizer "
            "reconstruction.\n\n" + "\n\n".join(figs)
        )
    return out
