"""DSMoE vs its ablations and the paper's baselines, continued from one dense base; ``make reproduce-dsmoe``.

    python -m repro_dsmoe.reproduce --preset tiny --jobs 2             # 7 arms x 3 seeds + speed
    python -m repro_dsmoe.reproduce --preset tiny --arms dsmoe,topk --seeds 0
    python -m repro_dsmoe.reproduce --preset tiny --report-only       # rebuild the report
    python -m repro_dsmoe.reproduce --preset debug --out /tmp/dsmoe-debug   # smoke test, minutes

Every arm starts from the same dense base (``model.init_from`` of the preset: ``make base`` or
``REPRO_BASE``; the debug preset converts a fresh random model instead) and continues training
for the same steps, batch and learning rate. Each run then reports validation loss / perplexity /
bits per byte at the training τ (hard gates), the mean number of active experts per token
(overall and per layer), the activated FFN fraction and, for the sigmoid-gated arms, a τ sweep at
evaluation (0.2 .. 0.8). The top-k arm uses k = ``model.top_k`` and the prune arm keeps
``model.prune_fraction`` of the FFN: both are preset values fixed before the grid (the arms run in
parallel), and the measured DSMoE activation is reported next to them.
"""

from __future__ import annotations

import sys

from repro_core.claims import Claim
from repro_core.config import package_preset_dirs
from repro_core.experiment import Arm, Grid, Metric, RunSpec, config_loader, train_run
from repro_core.experiment import checkpoints as grid_checkpoints
from repro_core.experiment import main as run_experiment

from .config import DSMoEModelConfig

TAUS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
ARMS = (
    Arm("dsmoe", ("model.variant=dsmoe",)),
    Arm("dsmoe-no-ste", ("model.variant=dsmoe", "model.gate_mode=hard")),
    Arm("dsmoe-soft", ("model.variant=dsmoe", "model.gate_mode=soft", "model.sparsity_on=S")),
    Arm("dsmoe-lambda0", ("model.variant=dsmoe", "model.sparsity_coef=0")),
    Arm("topk", ("model.variant=topk",)),
    Arm("prune", ("model.variant=prune",)),
    Arm("dense", ("model.variant=dense",)),
)


def run_one(spec: RunSpec) -> dict:
    """Continue training one arm and seed; evaluate activation and the τ sweep."""
    from .evaluate import evaluate_model, tau_sweep
    from .modeling import DSMoEMLP

    trainer, results = train_run(spec, DSMoEModelConfig, package_preset_dirs(__file__))
    model = trainer.accelerator.unwrap_model(trainer.model)
    t, bpt = trainer.cfg.train, trainer.val_split.bytes_per_token
    n = trainer.cfg.model.num_experts
    ev = evaluate_model(model, trainer.val_blocks, bpt, t.batch_size, t.eval_batches, None, n)
    out = {
        "val_loss": ev["loss"],
        "val_perplexity": ev["perplexity"],
        "val_bits_per_byte": ev["bits_per_byte"],
        "mean_active_experts": ev["mean_active_experts"],
        "activated_ffn_fraction": ev["activated_ffn_fraction"],
        "active_experts_per_layer": ev["active_experts_per_layer"],
        "activated_parameters": ev["activated_parameters"],
        "tokens_per_second": results["tokens_per_second"],
        "train_seconds": results["train_seconds"],
        "parameters": results["parameters"],
    }
    if any(type(m) is DSMoEMLP for m in model.modules()):
        sweep = tau_sweep(model, trainer.val_blocks, bpt, TAUS, t.batch_size, t.eval_batches)
        out["tau_sweep"] = [
            {k: r[k] for k in ("tau", "perplexity", "bits_per_byte", "mean_active_experts",
                               "activated_ffn_fraction", "activated_parameters")}
            for r in sweep
        ]  # fmt: skip
    return out


GRID = Grid(
    package="dsmoe",
    arms=ARMS,
    run=run_one,
    config_loader=config_loader(DSMoEModelConfig, __file__),
    metrics=(
        Metric("val_perplexity", "val PPL", True, 2),
        Metric("val_bits_per_byte", "val bits/byte", True, 4),
        Metric("mean_active_experts", "active experts / token (of 8)", None, 2),
        Metric("activated_ffn_fraction", "activated FFN fraction", None, 3),
        Metric("tokens_per_second", "train tokens/s", False, 0),
    ),
    title="DSMoE reproduction",
    description=(
        "Continued training of one dense base at equal steps, batch and learning rate: DSMoE "
        "(8 contiguous blocks of the FFN, sigmoid gates, τ = 0.5, STE, λ = 1), its ablations "
        "(no STE, soft gates Eq. 20, λ = 0), softmax top-k over the same blocks, a static neuron "
        "prune, and the dense model (upper bound). Perplexity at the training τ with hard gates; "
        "activation measured on the same validation batches. Training computes every expert "
        "(the STE needs them); only inference is sparse."
    ),
)

CLAIMS = (
    Claim('"DSMoE achieves superior performance compared to existing pruning and MoE approaches '
          'under equivalent computational constraints" (abstract; Table 1: LLaMA-MoE top-k)',
          "val_perplexity", "dsmoe", "topk"),
    Claim('"DSMoE achieves superior performance compared to existing pruning and MoE approaches '
          'under equivalent computational constraints" (abstract; Table 1: LLM-Pruner-block)',
          "val_perplexity", "dsmoe", "prune"),
    Claim('removing S(x) raises PPL 7.41 -> 12.75 (Table 3, "w/o S(x)")',
          "val_perplexity", "dsmoe", "dsmoe-no-ste"),
    Claim('training without G (Eq. 20) is worse at equal activation (Sec. 6, Figure 2)',
          "val_perplexity", "dsmoe", "dsmoe-soft"),
)  # fmt: skip


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def sections(results: dict) -> list[str]:
    """Activation per layer, the τ sweep (with a per-seed monotonicity check) and the speed."""
    runs = results["runs"]
    by_arm: dict[str, list[dict]] = {}
    for r in runs:
        by_arm.setdefault(r["arm"], []).append(r["metrics"])
    lines = ["## Activation", "", "| arm | active experts per layer (mean over seeds) | "
             "activated params (of total) |", "| --- | --- | --- |"]  # fmt: skip
    for arm, ms in by_arm.items():
        layers = [m["active_experts_per_layer"] for m in ms if "active_experts_per_layer" in m]
        if not layers:
            continue
        per_layer = ", ".join(f"{_mean(col):.2f}" for col in zip(*layers))
        act = _mean([m["activated_parameters"] for m in ms])
        total = ms[0]["parameters"]["total"]
        lines.append(f"| {arm} | {per_layer} | {act / 1e6:.2f}M of {total / 1e6:.2f}M |")
    out = ["\n".join(lines)]
    for arm, ms in by_arm.items():
        sweeps = [m["tau_sweep"] for m in ms if "tau_sweep" in m]
        if not sweeps:
            continue
        rows = [f"### τ sweep at evaluation: {arm}", "", "| τ | val PPL | active experts | "
                "activated FFN fraction |", "| --- | --- | --- | --- |"]  # fmt: skip
        for i, tau in enumerate(TAUS):
            ppl = _mean([s[i]["perplexity"] for s in sweeps])
            act = _mean([s[i]["mean_active_experts"] for s in sweeps])
            frac = _mean([s[i]["activated_ffn_fraction"] for s in sweeps])
            rows.append(f"| {tau} | {ppl:.2f} | {act:.2f} | {frac:.3f} |")
        ppl_mono = sum(all(a["perplexity"] <= b["perplexity"] for a, b in zip(s, s[1:]))
                       for s in sweeps)  # fmt: skip
        act_mono = sum(
            all(a["mean_active_experts"] >= b["mean_active_experts"] for a, b in zip(s, s[1:]))
            for s in sweeps
        )
        rows.append("")
        rows.append(f"Monotone in τ (checked per seed, not a CI verdict): PPL non-decreasing in "
                    f"{ppl_mono} of {len(sweeps)} seeds, activation non-increasing in {act_mono} "
                    f"of {len(sweeps)} seeds.")  # fmt: skip
        out.append("\n".join(rows))
    speed = results.get("extra", {}).get("speed", [])
    if speed:
        rows = [f"## Speed of the layer at inference ({speed[0]['shape']}, fp32, CPU, "
                f"{speed[0]['threads']} thread(s))", "",
                "| active fraction | dense FFN tokens/s | masked tokens/s | sparse tokens/s | "
                "sparse / dense | sparse / masked |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in speed:
            rows.append(
                f"| {r['active_fraction']:.3f} | {r['dense_tokens_per_second']:,.0f} | "
                f"{r['masked_tokens_per_second']:,.0f} | {r['sparse_tokens_per_second']:,.0f} | "
                f"{r['sparse_speedup_vs_dense']:.2f}x | {r['sparse_speedup_vs_masked']:.2f}x |"
            )
        out.append("\n".join(rows))
    return out


def finalize(results: dict) -> dict:
    """Layer speed at the measured DSMoE active fraction (and fixed reference fractions)."""
    from .bench import FRACTIONS, measure_layer_speed

    measured = [r["metrics"].get("activated_ffn_fraction") for r in results["runs"]
                if r["arm"] == "dsmoe"]  # fmt: skip
    measured = [round(m, 3) for m in measured if m is not None]
    measured = [m for m in measured if 0 < m <= 1]
    fractions = sorted(set(FRACTIONS) | ({round(_mean(measured), 3)} if measured else set()))
    return {"speed": measure_layer_speed(fractions=tuple(fractions), repeats=7)}


def checkpoints() -> dict[str, str]:
    """Arm -> final model directory of the tiny reproduction, seed 0 (lm-eval benchmarks)."""
    return grid_checkpoints(GRID)


def main(argv: list[str] | None = None) -> int:
    return run_experiment(GRID, CLAIMS, argv, sections=sections, finalize=finalize)


if __name__ == "__main__":
    sys.exit(main())
