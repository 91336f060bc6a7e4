"""Dense vs Finedeep at equal parameters and FLOPs, M x K fixed, 3 seeds; ``make reproduce-finedeep``.

    python -m repro_finedeep.reproduce --preset tiny --jobs 2          # the whole grid
    python -m repro_finedeep.reproduce --preset tiny --arms dense,finedeep-2x4 --seeds 0
    python -m repro_finedeep.reproduce --preset tiny --report-only     # rebuild the report

Every run trains from the preset with the arm's model overrides, then measures validation loss /
perplexity / bits per byte (the trainer's final evaluation) and NSAR on the same validation
batches. The grid, the statistics and the verdicts are ``repro_core.experiment`` /
``repro_core.claims``; this file only declares them.
"""

from __future__ import annotations

import sys

from repro_core.claims import Claim
from repro_core.config import package_preset_dirs
from repro_core.experiment import Arm, Grid, Metric, RunSpec, config_loader, train_run
from repro_core.experiment import checkpoints as grid_checkpoints
from repro_core.experiment import main as run_experiment

from .config import DEFAULT_THRESHOLD, FinedeepModelConfig

TAU = str(DEFAULT_THRESHOLD)
# (M, K) with M K = 8: width only, two balanced settings, depth only (spec §2.6)
SHAPES = ((1, 8), (2, 4), (4, 2), (8, 1))
FINEDEEP = ("model.variant=finedeep",)
ARMS = (
    Arm("dense", ("model.variant=dense",)),
    *(
        Arm(f"finedeep-{m}x{k}", (*FINEDEEP, f"model.num_sublayers={m}", f"model.experts_per_sublayer={k}"))
        for m, k in SHAPES
    ),
    # router ablations of the spec (§2.4, unverified details), all at M x K = 2 x 4
    Arm("finedeep-2x4-router-on-input", (*FINEDEEP, "model.router_input=sublayer_input")),
    Arm("finedeep-2x4-softmax", (*FINEDEEP, "model.router_act=softmax")),
    Arm("finedeep-2x4-sum-to-k", (*FINEDEEP, "model.router_norm=sum_to_k")),
)  # fmt: skip


def run_one(spec: RunSpec) -> dict:
    """Train one arm and seed; NSAR on the validation batches the trainer evaluated."""
    from .nsar import measure_nsar

    trainer, results = train_run(spec, FinedeepModelConfig, package_preset_dirs(__file__))
    model = trainer.accelerator.unwrap_model(trainer.model)
    t = trainer.cfg.train
    nsar = measure_nsar(model, trainer.val_blocks, t.batch_size, t.eval_batches)
    keys = ("val_loss", "val_perplexity", "val_bits_per_byte", "tokens_per_second", "train_seconds")
    return {k: results[k] for k in keys} | {
        "nsar_silu": nsar["mean"]["silu"][TAU],
        "nsar_gated": nsar["mean"]["gated"][TAU],
        "nsar": nsar,
        "parameters": results["parameters"],
        "flops_per_token": results["flops_per_token"],
        "tokens_seen": results["tokens_seen"],
    }


GRID = Grid(
    package="finedeep",
    arms=ARMS,
    run=run_one,
    config_loader=config_loader(FinedeepModelConfig, __file__),
    metrics=(
        Metric("val_perplexity", "val PPL", True, 2),
        Metric("val_bits_per_byte", "val bits/byte", True, 4),
        Metric("nsar_silu", f"NSAR SiLU (τ={TAU})", False, 4),
        Metric("nsar_gated", f"NSAR gated (τ={TAU})", False, 4),
        Metric("tokens_per_second", "train tokens/s", False, 0),
    ),
    title="Finedeep reproduction",
    description=(
        "Dense SwiGLU FFN vs Finedeep (M sub-layers x K experts of width F / (M K), sigmoid "
        "routing) at equal expert parameters; FLOPs/token differ only by the routers and norms "
        "(table below). NSAR = share of FFN activations above τ."
    ),
)

PERPLEXITY = (
    'lower perplexity than dense (abstract: "significantly") "while maintaining a comparable '
    'number of parameters and floating-point operations"'
)
SHAPE_ARMS = tuple(f"finedeep-{m}x{k}" for m, k in SHAPES)
CLAIMS = (
    *(Claim(PERPLEXITY, "val_perplexity", arm, "dense") for arm in SHAPE_ARMS),
    *(
        Claim('"achieves optimal results when balancing depth and width"', "val_perplexity",
              arm, ("finedeep-1x8", "finedeep-8x1"))
        for arm in ("finedeep-2x4", "finedeep-4x2")
    ),
    *(
        Claim('"Finedeep effectively alleviates sparse activation"', metric, arm, "dense",
              lower_is_better=False)
        for metric in ("nsar_silu", "nsar_gated")
        for arm in SHAPE_ARMS
    ),
)  # fmt: skip


def sections(results: dict) -> list[str]:
    """Parameter / FLOP parity, NSAR per layer and the layer speed (from results.json)."""
    first = {}
    for r in results["runs"]:
        first.setdefault(r["arm"], r["metrics"])
    lines = ["## Parameters and FLOPs", "", "| arm | params (total / non-emb.) | FLOPs/token (fwd) |",
             "| --- | --- | --- |"]  # fmt: skip
    for arm, m in first.items():
        if "parameters" in m:
            p, f = m["parameters"], m["flops_per_token"]
            lines.append(
                f"| {arm} | {p['total']:,} / {p['non_embedding']:,} | {f['forward'] / 1e6:.3f} M |"
            )
    per_layer = []
    for arm in first:
        layers = [r["metrics"]["nsar"]["per_layer"]["silu"][TAU] for r in results["runs"]
                  if r["arm"] == arm and "nsar" in r["metrics"]]  # fmt: skip
        if layers:
            mean = [sum(col) / len(col) for col in zip(*layers)]
            per_layer.append(f"{arm}: " + ", ".join(f"{v:.3f}" for v in mean))
    imported = results.get("extra", {}).get("imported_nsar_silu_per_layer", {})
    per_layer += [f"{arm}: " + ", ".join(f"{v:.3f}" for v in vals) + " (imported mean)"
                  for arm, vals in imported.items()]  # fmt: skip
    out = ["\n".join(lines)]
    if per_layer:
        out.append(
            f"NSAR per layer (SiLU output, τ={TAU}, mean over seeds): " + "; ".join(per_layer) + "."
        )
    speed = results.get("extra", {}).get("speed", [])
    if speed:
        rows = [
            f"| {r['name']} | {r['tokens_per_second']:,.0f} | {r['ratio_to_dense']:.2f}x |"
            for r in speed
        ]
        out.append("\n".join(
            ["## Speed of the layer", "",
             f"| layer (D=256, F=1024, 8 x 256 tokens, fp32, CPU, {speed[0]['threads']} thread(s)) "
             "| tokens/s fwd+bwd | ratio to dense FFN |", "| --- | --- | --- |", *rows]
        ))  # fmt: skip
    return out


def finalize(results: dict) -> dict:
    from .bench import measure_layer_speed

    return {"speed": measure_layer_speed(repeats=9)}


def checkpoints() -> dict[str, str]:
    """Arm -> final model directory of the tiny reproduction, seed 0 (lm-eval benchmarks)."""
    return grid_checkpoints(GRID)


def main(argv: list[str] | None = None) -> int:
    return run_experiment(GRID, CLAIMS, argv, sections=sections, finalize=finalize)


if __name__ == "__main__":
    sys.exit(main())
