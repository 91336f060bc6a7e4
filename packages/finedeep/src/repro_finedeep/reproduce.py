"""Dense vs Finedeep at equal parameters and FLOPs, M x K fixed, 3 seeds; ``make reproduce-finedeep``.

    python -m repro_finedeep.reproduce --preset tiny                    # the whole grid
    python -m repro_finedeep.reproduce --preset tiny --seeds 0 --variants dense,finedeep-2x4
    python -m repro_finedeep.reproduce --preset tiny --report-only      # rebuild the report

Every run trains from the preset with the variant's model overrides, then measures validation
loss / perplexity / bits per byte (the trainer's final evaluation) and NSAR on the same
validation batches. Run directories: ``runs/finedeep/<preset>/<variant>/seed<seed>`` (a finished
run is reused, so an interrupted grid continues where it stopped). Writes
``results/<preset>/{results.json, results.md, finedeep.png}`` and the generated results block
of the package README.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from repro_core.config import load_config, package_preset_dirs
from repro_core.results import mean_std as core_mean_std
from repro_core.results import replace_block, write_json_atomic, write_text_atomic

from .config import FinedeepModelConfig
from .nsar import DEFAULT_THRESHOLD, measure_nsar

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# (M, K) with M K = 8: width only, two balanced settings, depth only (spec §2.6)
GRID = ((1, 8), (2, 4), (4, 2), (8, 1))
VARIANTS = {"dense": ["model.variant=dense"]} | {
    f"finedeep-{m}x{k}": [
        "model.variant=finedeep",
        f"model.num_sublayers={m}",
        f"model.experts_per_sublayer={k}",
    ]
    for m, k in GRID
}
BALANCED, EXTREMES = ("finedeep-2x4", "finedeep-4x2"), ("finedeep-1x8", "finedeep-8x1")
TAU = str(DEFAULT_THRESHOLD)


def runs_root(preset: str) -> Path:
    return Path(os.environ.get("REPRO_RUNS_DIR", "runs")) / "finedeep" / preset


SWITCH_KEYS = (
    "model.num_sublayers",
    "model.experts_per_sublayer",
    "model.router_input",
    "model.router_act",
    "model.router_norm",
    "model.norm_placement",
    "model.residual_per_sublayer",
)


def relevant_overrides(variant: str, extra: list[str]) -> list[str]:
    """The overrides that change ``variant``: the dense model ignores the Finedeep switches, so
    an ablation of a switch reuses the dense runs of the main grid."""
    if variant != "dense":
        return list(extra)
    return [o for o in extra if o.split("=", 1)[0].strip() not in SWITCH_KEYS]


def run_dir_of(preset: str, variant: str, seed: int, extra: list[str]) -> Path:
    """``runs/finedeep/<preset>/<variant>[+override...]/seed<seed>``."""
    extra = relevant_overrides(variant, extra)
    suffix = "".join("+" + re.sub(r"[^A-Za-z0-9_.=-]", "_", o) for o in extra)
    return runs_root(preset) / f"{variant}{suffix}" / f"seed{seed}"


def done_path(preset: str, variant: str, seed: int, extra: list[str]) -> Path:
    """Results of a finished run (training + NSAR); its presence makes the grid skip the run."""
    return run_dir_of(preset, variant, seed, extra) / "finedeep_results.json"


def run_one(preset: str, variant: str, seed: int, extra: list[str]) -> dict:
    """Train one (variant, seed) unless its run directory already holds results; add NSAR."""
    from repro_core.train import Trainer, reset_accelerate

    run_dir = run_dir_of(preset, variant, seed, extra)
    done = done_path(preset, variant, seed, extra)
    if done.is_file():
        return json.loads(done.read_text())
    overrides = VARIANTS[variant] + [f"seed={seed}", f"name={variant}", "train.progress=false"]
    overrides += relevant_overrides(variant, extra)
    cfg = load_config(preset, overrides, FinedeepModelConfig, package_preset_dirs(__file__))
    if (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()  # an interrupted run restarts from step 0
    reset_accelerate()
    trainer = Trainer(cfg, run_dir)
    results = trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    results["nsar"] = measure_nsar(
        model, trainer.val_blocks, cfg.train.batch_size, cfg.train.eval_batches
    )
    results.update(variant=variant, seed=seed, model=cfg.model.__dict__ | {}, run_dir=str(run_dir))
    write_json_atomic(done, results, indent=1)
    return results


def mean_std(values: list[float]) -> dict:
    """``repro_core.results.mean_std`` plus the seed values themselves (kept in results.json)."""
    return core_mean_std(values) | {"values": values}


def summarize(runs: list[dict]) -> dict:
    first = runs[0]
    per_layer = [r["nsar"]["per_layer"] for r in runs]
    layers = len(per_layer[0]["silu"][TAU])
    return {
        "val_perplexity": mean_std([r["val_perplexity"] for r in runs]),
        "val_bits_per_byte": mean_std([r["val_bits_per_byte"] for r in runs]),
        "val_loss": mean_std([r["val_loss"] for r in runs]),
        "nsar_silu": mean_std([r["nsar"]["mean"]["silu"][TAU] for r in runs]),
        "nsar_gated": mean_std([r["nsar"]["mean"]["gated"][TAU] for r in runs]),
        "nsar_silu_per_layer": [
            statistics.fmean(p["silu"][TAU][i] for p in per_layer) for i in range(layers)
        ],
        "nsar_gated_per_layer": [
            statistics.fmean(p["gated"][TAU][i] for p in per_layer) for i in range(layers)
        ],
        "nsar_all_thresholds": {
            t: {
                name: statistics.fmean(r["nsar"]["mean"][name][t] for r in runs)
                for name in ("silu", "gated")
            }
            for t in first["nsar"]["mean"]["silu"]
        },
        "tokens_per_second": mean_std([r["tokens_per_second"] for r in runs]),
        "train_seconds": mean_std([r["train_seconds"] for r in runs]),
        "parameters": first["parameters"],
        "flops_per_token": first["flops_per_token"],
        "tokens_seen": first["tokens_seen"],
        "seeds": [r["seed"] for r in runs],
    }


def verdict(method: dict, baseline: dict, lower_is_better: bool) -> str:
    """reproduced / contradicted when the mean difference exceeds 2 standard errors, else
    "not at this scale"."""
    diff = (
        baseline["mean"] - method["mean"] if lower_is_better else method["mean"] - baseline["mean"]
    )
    se = math.sqrt(method["std"] ** 2 / method["n"] + baseline["std"] ** 2 / baseline["n"])
    if diff > 2 * se:
        return "reproduced"
    if diff < -2 * se:
        return "contradicted"
    return "not at this scale"


def claims(summary: dict) -> list[dict]:
    out = []
    others = [n for n in summary if n != "dense"] if "dense" in summary else []
    # Only the quoted words are the paper's (abstract, spec F.1); the paper body was not readable.
    quote = (
        'lower perplexity than dense (abstract: "significantly") "while maintaining a comparable number '
        'of parameters and floating-point operations"'
    )
    for name in others:
        out.append(
            dict(
                claim=quote,
                metric="val perplexity (lower is better)",
                method=name,
                baseline="dense",
                lower_is_better=True,
                key="val_perplexity",
            )
        )
    ranked_bal = (
        min(BALANCED, key=lambda n: summary[n]["val_perplexity"]["mean"])
        if all(n in summary for n in BALANCED)
        else None
    )
    ranked_ext = (
        min(EXTREMES, key=lambda n: summary[n]["val_perplexity"]["mean"])
        if all(n in summary for n in EXTREMES)
        else None
    )
    if ranked_bal and ranked_ext:
        out.append(
            dict(
                claim='"achieves optimal results when balancing depth and width"',
                metric="val perplexity, best balanced vs best extreme (M,K)",
                method=ranked_bal,
                baseline=ranked_ext,
                lower_is_better=True,
                key="val_perplexity",
            )
        )
    for tensor, label in (("nsar_silu", "SiLU output"), ("nsar_gated", "silu(gate)*up")):
        for name in others:
            out.append(
                dict(
                    claim='"Finedeep effectively alleviates sparse activation"',
                    metric=f"NSAR (tau={TAU}, {label}; higher = less sparse)",
                    method=name,
                    baseline="dense",
                    lower_is_better=False,
                    key=tensor,
                )
            )
    for c in out:
        m, b = summary[c["method"]][c["key"]], summary[c["baseline"]][c["key"]]
        c.update(
            method_mean=m["mean"],
            method_std=m["std"],
            baseline_mean=b["mean"],
            baseline_std=b["std"],
            verdict=verdict(m, b, c["lower_is_better"]),
        )
    return out


def speed_ratios(quick: bool = False) -> list[dict]:
    """Finedeep layer vs dense FFN forward+backward tokens/s (see bench.py)."""
    from .bench import measure_layer_speed

    return measure_layer_speed(repeats=5 if quick else 9)


def fmt(stat: dict, digits: int = 2) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def results_table(report: dict) -> str:
    lines = [
        "| variant | (M, K) | params (total / non-emb.) | FLOPs/token (fwd) | val PPL | val bits/byte | "
        f"NSAR SiLU (τ={TAU}) | NSAR gated (τ={TAU}) | train tokens/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in report["summary"].items():
        mk = "dense" if name == "dense" else name.split("-")[1].replace("x", ", ")
        lines.append(
            f"| {name} | {mk} | {s['parameters']['total']:,} / {s['parameters']['non_embedding']:,} | "
            f"{s['flops_per_token']['forward'] / 1e6:.3f} M | {fmt(s['val_perplexity'])} | "
            f"{fmt(s['val_bits_per_byte'], 4)} | {fmt(s['nsar_silu'], 4)} | {fmt(s['nsar_gated'], 4)} | "
            f"{s['tokens_per_second']['mean']:,.0f} |"
        )
    return "\n".join(lines)


def claims_table(report: dict) -> str:
    seeds = len(report["seeds"])
    lines = [
        f"| claim (quoted) | metric | method vs baseline (mean ± std, {seeds} seeds) | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for c in report["claims"]:
        digits = 2 if "perplexity" in c["metric"] else 4
        lines.append(
            f"| {c['claim']} | {c['metric']} | {c['method']} {c['method_mean']:.{digits}f} ± "
            f"{c['method_std']:.{digits}f} vs {c['baseline']} {c['baseline_mean']:.{digits}f} ± "
            f"{c['baseline_std']:.{digits}f} | {c['verdict']} |"
        )
    return "\n".join(lines)


def speed_table(report: dict) -> str:
    speed = report.get("speed", [])
    threads = f", {speed[0]['threads']} thread(s)" if speed else ""
    lines = [
        f"| layer (D=256, F=1024, 8 x 256 tokens, fp32, CPU{threads}) | tokens/s fwd+bwd | ratio to dense FFN |",
        "| --- | --- | --- |",
    ]
    for r in speed:
        lines.append(
            f"| {r['name']} | {r['tokens_per_second']:,.0f} | {r['ratio_to_dense']:.2f}x |"
        )
    return "\n".join(lines)


def to_markdown(report: dict) -> str:
    s = report["summary"]
    pd = s["dense"]["parameters"]["total"] if "dense" in s else None
    parity = (
        ", ".join(f"{n}: +{v['parameters']['total'] - pd:,}" for n, v in s.items() if n != "dense")
        if pd
        else ""
    )
    return "\n".join(
        [
            f"# Finedeep reproduction, preset `{report['preset']}` ({report['date']})",
            "",
            f"Command: `{report['command']}`. Hardware: {report['hardware']}. Wall time of that command: "
            f"{report['wall_seconds'] / 60:.1f} min; it trained every run it did not find finished (a run "
            f"already finished, e.g. a dense run of the main grid, is reused). The machine was shared "
            f"with other jobs: {report['load_note']}. {report['runs']} runs in the table.",
            f"Seeds {report['seeds']}; every run: {report['setup']}.",
            f"Switches (all Finedeep runs): {report['switches']}.",
            "",
            results_table(report),
            "",
            f"Parameters over dense (routers + sub-layer RMSNorm gains): {parity}. FLOPs/token are 2 x activated "
            "non-embedding parameters + attention (core counter), so they differ by twice that.",
            "NSAR per layer (SiLU output, τ=0.1, mean over seeds): "
            + "; ".join(
                f"{n}: {', '.join(f'{v:.3f}' for v in x['nsar_silu_per_layer'])}"
                for n, x in s.items()
            )
            + ".",
            "",
            "## Speed of the layer",
            "",
            speed_table(report),
            "",
            "![validation perplexity and NSAR per layer](finedeep.png)",
            "",
            "## Claims",
            "",
            "Verdict: reproduced (or contradicted) when the mean difference exceeds two standard errors "
            "(sqrt(std_a²/n + std_b²/n)), else not at this scale.",
            "",
            claims_table(report),
            "",
        ]
    )


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["summary"]
    names = list(s)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.bar(
        names,
        [s[n]["val_perplexity"]["mean"] for n in names],
        yerr=[s[n]["val_perplexity"]["std"] for n in names],
        capsize=4,
        color="tab:blue",
    )
    lo = min(s[n]["val_perplexity"]["mean"] - 2 * s[n]["val_perplexity"]["std"] for n in names)
    hi = max(s[n]["val_perplexity"]["mean"] + 2 * s[n]["val_perplexity"]["std"] for n in names)
    ax1.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    ax1.set_ylabel("validation perplexity (mean ± std)")
    ax1.tick_params(axis="x", rotation=30)
    for n in names:
        ax2.plot(
            range(len(s[n]["nsar_silu_per_layer"])),
            s[n]["nsar_silu_per_layer"],
            marker="o",
            label=n,
        )
    ax2.set_xlabel("layer")
    ax2.set_ylabel(f"NSAR (SiLU output, τ={TAU})")
    ax2.legend(fontsize=8)
    fig.suptitle(f"Finedeep vs dense, preset {report['preset']}, seeds {report['seeds']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_readme(report: dict, readme: Path) -> None:
    """Replace the block between the results markers of the package README (if both are there)."""
    start, end = "<!-- results:start (generated by reproduce.py) -->", "<!-- results:end -->"
    body = "\n".join(
        [
            "",
            f"Preset `{report['preset']}`, {report['date']}, {report['hardware']}, grid wall time "
            f"{report['wall_seconds'] / 60:.1f} min ({report['load_note']}). Mean ± std over seeds {report['seeds']}.",
            "",
            results_table(report),
            "",
            claims_table(report),
            "",
            speed_table(report),
            "",
        ]
    )
    replace_block(readme, start, end, body)


def checkpoints() -> dict[str, str]:
    """Variant -> final model directory of the tiny reproduction, seed 0 (those that exist)."""
    out = {}
    for variant in VARIANTS:
        final = runs_root("tiny") / variant / "seed0" / "final"
        if (final / "config.json").is_file():
            out[variant] = str(final.resolve())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m repro_finedeep.reproduce", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override for every run (e.g. model.router_norm=sum_to_one)",
    )
    p.add_argument(
        "--out", default=None, help="results folder (default packages/finedeep/results/<preset>)"
    )
    p.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)"
    )
    p.add_argument(
        "--report-only", action="store_true", help="rebuild the report from finished runs"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}; allowed: {list(VARIANTS)}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else PACKAGE_ROOT / "results" / args.preset
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    runs: dict[str, list[dict]] = {}
    trained_any = False
    for variant in variants:
        for seed in seeds:
            if args.report_only:
                done = done_path(args.preset, variant, seed, args.overrides)
                if done.is_file():
                    runs.setdefault(variant, []).append(json.loads(done.read_text()))
                continue
            t0 = time.perf_counter()
            trained_any |= not done_path(args.preset, variant, seed, args.overrides).is_file()
            result = run_one(args.preset, variant, seed, args.overrides)
            runs.setdefault(variant, []).append(result)
            print(
                f"[reproduce] {variant} seed {seed}: ppl {result['val_perplexity']:.2f} "
                f"bpb {result['val_bits_per_byte']:.4f} NSAR {result['nsar']['mean']['silu'][TAU]:.4f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    wall = time.perf_counter() - start
    previous = (
        json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    )
    cfg = load_config(
        args.preset, args.overrides, FinedeepModelConfig, package_preset_dirs(__file__)
    )
    switches = {
        k: getattr(cfg.model, k)
        for k in (
            "router_input",
            "router_act",
            "router_norm",
            "norm_placement",
            "residual_per_sublayer",
        )
    }
    # Nothing trained now (--report-only, or every run reused): keep the measured wall time.
    reuse = (args.report_only or not trained_any) and "wall_seconds" in previous
    command = "python -m repro_finedeep.reproduce " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    hardware = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    report = {
        "preset": args.preset,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": previous.get("command", command) if reuse else command,
        "hardware": previous.get("hardware", hardware) if reuse else hardware,
        "wall_seconds": previous.get("wall_seconds", wall) if reuse else wall,
        "load_note": previous.get("load_note", "")
        if reuse
        else f"1-min load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end",
        "runs": sum(len(v) for v in runs.values()),
        "seeds": seeds,
        "setup": (
            f"{cfg.model.hidden_size} wide, {cfg.model.num_hidden_layers} layers, FFN {cfg.model.intermediate_size}, "
            f"{cfg.data.corpus} {cfg.data.tokenizer}, {cfg.train.max_steps} steps x {cfg.train.batch_size} x "
            f"{cfg.data.seq_len} tokens, lr {cfg.train.lr}, eval on {cfg.train.eval_batches} validation batches"
        ),
        "switches": switches,
        "overrides": args.overrides,
        "summary": {name: summarize(r) for name, r in runs.items()},
    }
    report["claims"] = claims(report["summary"])
    report["speed"] = previous.get("speed", []) if reuse else speed_ratios()
    write_json_atomic(out / "results.json", report, indent=1)
    write_text_atomic(out / "results.md", to_markdown(report))
    plot(report, out / "finedeep.png")
    if out == PACKAGE_ROOT / "results" / args.preset and args.preset == "tiny":
        update_readme(report, PACKAGE_ROOT / "README.md")
    print(f"[reproduce] wrote {out / 'results.md'} ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
