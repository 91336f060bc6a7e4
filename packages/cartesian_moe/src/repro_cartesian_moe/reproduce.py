"""The experiment grid of the paper's Tables 1 and 4 at a preset's scale.

Dense, SMoE-Top3, SMoE-Share, Fine-grained and CartesianMoE (equal total and activated
parameters for the MoE variants), ``--seeds`` seeds each, trained with the core Trainer; each
trained model is then evaluated intact and with every token's top-1 expert disabled (Table 4).
Writes ``results/<preset>/{results.json, results.md, results.png}`` and refreshes the results
table of the package README (between the ``results`` markers).

    make reproduce-cartesian_moe                        # = python -m repro_cartesian_moe.reproduce --preset tiny
    python -m repro_cartesian_moe.reproduce --preset tiny --seeds 0 --variants cartesian,smoe_share
    python -m repro_cartesian_moe.reproduce --preset small --out results/small --set train.max_steps=5000

Runs go to ``runs/cartesian_moe/<preset>/<variant>/seed<k>``; a run whose ``eval.json`` exists is
reused (delete it, or pass ``--fresh``, to train it again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from repro_core.config import load_config, package_preset_dirs
from repro_core.results import mean_std as core_mean_std
from repro_core.results import replace_block, write_json_atomic, write_text_atomic
from repro_core.train import Trainer, reset_accelerate

from repro_cartesian_moe.evaluate import evaluate_model
from repro_cartesian_moe.modeling import CartesianMoEModelConfig

GRID = ("dense", "smoe_top3", "smoe_share", "fine_grained", "smoe_topp", "cartesian")
LABELS = {
    "dense": "Dense",
    "smoe_top3": "SMoE-Top3 (top-k SMoE)",
    "smoe_share": "SMoE-Share (+ shared expert)",
    "fine_grained": "Fine-grained (DeepSeekMoE-style)",
    "cartesian": "CartesianMoE",
    "cartesian_no_shared": "CartesianMoE w/o shared expert",
    "smoe_topp": "TopP routing (p = 0.4, + shared expert)",
}
MOE_BASELINES = ("smoe_top3", "smoe_share", "fine_grained", "smoe_topp")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # packages/cartesian_moe in a checkout
README_START = "<!-- results:{preset}:start -->"
README_END = "<!-- results:{preset}:end -->"


def run_one(preset: str, variant: str, seed: int, overrides: list[str], run_dir: Path) -> dict:
    """Train one (variant, seed), evaluate it intact and with top-1 disabled; returns a record."""
    eval_file = run_dir / "eval.json"
    if eval_file.is_file():
        print(f"[reproduce] reusing {run_dir}", flush=True)
        return json.loads(eval_file.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = load_config(
        preset,
        [*overrides, f"model.variant={variant}", f"seed={seed}", f"name={variant}"],
        CartesianMoEModelConfig,
        package_preset_dirs(__file__),
    )
    reset_accelerate()
    trainer = Trainer(cfg, run_dir)
    trained = trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    with trainer.accelerator.autocast():
        ev = evaluate_model(
            model,
            trainer.val_blocks,
            trainer.val_split.bytes_per_token,
            cfg.train.batch_size,
            cfg.train.eval_batches,
            disable_top1=True,
        )
    record = {
        "variant": variant,
        "seed": seed,
        "run_dir": str(run_dir),
        "val_loss": ev["intact"]["loss"],
        "val_perplexity": ev["intact"]["perplexity"],
        "val_bits_per_byte": ev["intact"].get("bits_per_byte"),
        "eval_tokens": ev["intact"]["tokens"],
        "top1_disabled_perplexity": (ev["top1_disabled"] or {}).get("perplexity"),
        "top1_disabled_ppl_ratio": ev["top1_disabled_ppl_ratio"],
        "load_cv": ev["expert_load"]["mean_cv"],
        "load_max_over_mean": ev["expert_load"]["mean_max_over_mean"],
        "experts_per_token": ev["expert_load"].get("mean_experts_per_token"),
        "expert_load": ev["expert_load"]["routers"],
        "tokens_per_second": trained["tokens_per_second"],
        "train_seconds": trained["train_seconds"],
        "tokens_seen": trained["tokens_seen"],
        "parameters": trained["parameters"],
    }
    write_json_atomic(eval_file, record, indent=1)
    return record


def mean_std(values: list[float | None]) -> dict | None:
    """Mean and std of the values that are not None (``repro_core.results.mean_std``) and those
    values themselves; None if there is none."""
    values = [v for v in values if v is not None]
    stats = core_mean_std(values)
    return None if stats is None else {"mean": stats["mean"], "std": stats["std"], "values": values}


METRICS = (
    "val_perplexity",
    "val_bits_per_byte",
    "val_loss",
    "top1_disabled_perplexity",
    "top1_disabled_ppl_ratio",
    "load_cv",
    "load_max_over_mean",
    "tokens_per_second",
    "experts_per_token",
)


def summarize(records: list[dict], variants: list[str]) -> dict:
    summary = {}
    for variant in variants:
        rows = [r for r in records if r["variant"] == variant]
        if not rows:
            continue
        summary[variant] = {m: mean_std([r.get(m) for r in rows]) for m in METRICS}
        summary[variant]["parameters"] = rows[0]["parameters"]
        summary[variant]["seeds"] = [r["seed"] for r in rows]
    return summary


def verdict(method: dict, baseline: dict) -> str:
    """Lower is better. Reproduced: the method is lower by more than the combined seed std;
    contradicted: the baseline is lower by more than that; else not at this scale."""
    noise = math.hypot(method["std"], baseline["std"])
    gap = baseline["mean"] - method["mean"]
    if gap > noise:
        return "reproduced"
    if -gap > noise:
        return "contradicted"
    return "not at this scale (within seed noise)"


def claims(summary: dict) -> list[dict]:
    out = []
    if "cartesian" not in summary:
        return out
    spec = [
        (
            "Table 1: CartesianMoE has the lowest validation perplexity (MoE-Base 7.19 vs 7.33 "
            "Fine-grained, 7.37 SMoE-Share, 7.40 SMoE-Top3, 7.41 TopP, 8.55 Dense)",
            "val_perplexity",
            [v for v in summary if v not in ("cartesian", "cartesian_no_shared")],
        ),
        (
            "Table 4: disabling each token's top-1 expert degrades CartesianMoE least "
            "(MoE-Large PPL 6.08 -> 27.72, x4.6, vs x14 TopP, x137 SMoE-Top3, x502 Fine-grained, "
            "x1235 SMoE-Share)",
            "top1_disabled_ppl_ratio",
            [v for v in MOE_BASELINES if v in summary],
        ),
    ]
    for text, metric, baselines in spec:
        candidates = [v for v in baselines if summary[v][metric] is not None]
        if not candidates or summary["cartesian"][metric] is None:
            continue
        best = min(candidates, key=lambda v: summary[v][metric]["mean"])
        out.append(
            {
                "claim": text,
                "metric": metric,
                "method": "cartesian",
                "method_value": summary["cartesian"][metric],
                "baseline": best,
                "baseline_value": summary[best][metric],
                "verdict": verdict(summary["cartesian"][metric], summary[best][metric]),
            }
        )
    return out


def fmt(stat: dict | None, digits: int = 2) -> str:
    if stat is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def tables_markdown(report: dict) -> str:
    """The results table and the claims table (README and results.md share them)."""
    s = report["summary"]
    lines = [
        "| variant | params total / activated (non-emb.) | val PPL | val bits/byte | PPL top-1 disabled "
        "| ratio disabled / intact | load CV | max / mean load | train tokens/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variant, row in s.items():
        p = row["parameters"]
        lines.append(
            f"| {LABELS.get(variant, variant)} | {p['total'] / 1e6:.3f}M / {p['activated'] / 1e6:.3f}M "
            f"| {fmt(row['val_perplexity'])} | {fmt(row['val_bits_per_byte'], 4)} "
            f"| {fmt(row['top1_disabled_perplexity'])} | {fmt(row['top1_disabled_ppl_ratio'], 3)} "
            f"| {fmt(row['load_cv'], 3)} | {fmt(row['load_max_over_mean'], 2)} "
            f"| {fmt(row['tokens_per_second'], 0)} |"
        )
    topp = s.get("smoe_topp", {}).get("experts_per_token")
    if topp:
        lines += [
            "",
            f"TopP routing used {fmt(topp)} routed experts per token on the validation tokens "
            "(mean over its routers; 2 for SMoE-Share). Its 'activated' count above is the cap, "
            "all N experts.",
        ]
    lines += [
        "",
        "| claim (paper) | metric | CartesianMoE | best baseline | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in report["claims"]:
        digits = 3 if "ratio" in c["metric"] else 2
        lines.append(
            f"| {c['claim']} | {c['metric']} | {fmt(c['method_value'], digits)} "
            f"| {LABELS.get(c['baseline'], c['baseline'])}: {fmt(c['baseline_value'], digits)} "
            f"| {c['verdict']} |"
        )
    return "\n".join(lines)


def results_markdown(report: dict) -> str:
    cfg = report["config"]
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    header = [
        f"# CartesianMoE reproduction, preset `{report['preset']}`",
        "",
        f"Generated by `{report['command']}` on {report['date']} (UTC); wall time "
        f"{report['wall_seconds'] / 60:.1f} min (this invocation; finished runs are reused), "
        f"training time of all runs {sum(r.get('train_seconds') or 0 for r in report['runs']) / 60:.1f} "
        f"min; hardware: {report['hardware']}.",
        "",
        f"Model: d={m['hidden_size']}, W={m['intermediate_size']}, {m['num_hidden_layers']} layers, "
        f"{m['num_attention_heads']} heads, MoE every {m['moe_layer_interval']} layers (from layer 0), "
        f"N={m['num_experts']} experts, load-balancing coef {m['load_balancing_coef']} per router, "
        f"shared mix `{m['shared_mix']}`. Data: {d['corpus']}, tokenizer {d['tokenizer']}, "
        f"seq {d['seq_len']}. Training: {t['max_steps']} steps x {t['batch_size']} x {d['seq_len']} "
        f"tokens, lr {t['lr']}, warmup {t['warmup_steps']}. Seeds {report['seeds']}; mean ± std "
        f"(sample std over seeds). Validation metrics on the first {t['eval_batches']} batches of "
        "the validation split (same blocks for every run); 'top-1 disabled' zeroes each token's "
        "highest router probability before the top-k in every router (both sub-layers for "
        "CartesianMoE). Load CV = std/mean of tokens per expert over the validation tokens, "
        "averaged over routers (0 = balanced). Tokens/s are training throughput on a shared "
        "machine: compare them only within this table.",
        "",
        f"1-minute load average of the machine at start / end: "
        f"{report['load_average_1min']['start']:.1f} / {report['load_average_1min']['end']:.1f} "
        f"on {os.cpu_count()} cores (other jobs were running when it is above the core count).",
        "",
    ]
    if report.get("report_regenerated"):
        header += [
            f"Tables regenerated from the runs' eval.json on {report['report_regenerated']} "
            "(UTC); date and wall time are those of the training.",
            "",
        ]
    return "\n".join(header) + "\n" + tables_markdown(report) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["summary"]
    variants = list(s)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    means = [s[v]["val_perplexity"]["mean"] for v in variants]
    stds = [s[v]["val_perplexity"]["std"] for v in variants]
    colors = ["tab:red" if v == "cartesian" else "tab:gray" for v in variants]
    ax.bar(range(len(variants)), means, yerr=stds, color=colors, capsize=4)
    ax.set_xticks(
        range(len(variants)), [LABELS.get(v, v).split(" (")[0] for v in variants], rotation=20
    )
    lo = min(m - sd for m, sd in zip(means, stds))
    hi = max(m + sd for m, sd in zip(means, stds))
    ax.set_ylim(lo - 0.1 * (hi - lo) - 1e-6, hi + 0.1 * (hi - lo) + 1e-6)
    ax.set_ylabel("validation perplexity")
    ax.set_title(f"Table 1 analogue ({report['preset']}, {len(report['seeds'])} seeds)")
    ax = axes[1]
    moe = [v for v in variants if s[v]["top1_disabled_ppl_ratio"] is not None]
    ratios = [s[v]["top1_disabled_ppl_ratio"]["mean"] for v in moe]
    errs = [s[v]["top1_disabled_ppl_ratio"]["std"] for v in moe]
    colors = ["tab:red" if v == "cartesian" else "tab:gray" for v in moe]
    ax.bar(range(len(moe)), ratios, yerr=errs, color=colors, capsize=4)
    ax.set_xticks(range(len(moe)), [LABELS.get(v, v).split(" (")[0] for v in moe], rotation=20)
    ax.set_ylabel("PPL top-1 disabled / PPL intact")
    ax.set_title("Table 4 analogue: routing robustness")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def update_readme(report: dict, readme: Path) -> bool:
    """Replace the text between the preset's results markers in the README; False if absent."""
    start, end = (m.format(preset=report["preset"]) for m in (README_START, README_END))
    body = (
        f"\n_Generated from `results/{report['preset']}/results.json` by `reproduce.py` on "
        f"{report['date']} (UTC), {report['wall_seconds'] / 60:.1f} min wall time, "
        f"{report['hardware']}._\n\n" + tables_markdown(report) + "\n"
    )
    return replace_block(readme, start, end, body)


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return (
        f"{gpu or cpu}, {os.cpu_count()} CPU cores visible, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op thread(s)"
    )


def default_out(preset: str) -> Path:
    if (PACKAGE_ROOT / "pyproject.toml").is_file():
        return PACKAGE_ROOT / "results" / preset
    return Path("results") / preset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m repro_cartesian_moe.reproduce", description=__doc__.split("\n")[0]
    )
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument(
        "--variants", default=",".join(GRID), help=f"comma-separated, default {','.join(GRID)}"
    )
    p.add_argument(
        "--out",
        default=None,
        help="results folder (default packages/cartesian_moe/results/<preset>)",
    )
    p.add_argument("--runs-dir", default=None, help="default runs/cartesian_moe/<preset>")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every run, e.g. --set train.max_steps=100",
    )
    p.add_argument("--fresh", action="store_true", help="retrain runs that already have eval.json")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    preset_name = Path(args.preset).stem
    runs_dir = Path(args.runs_dir or f"runs/cartesian_moe/{preset_name}")
    out = Path(args.out) if args.out else default_out(preset_name)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    records = []
    trained_any = False
    for seed in seeds:  # seed-major: a partial grid still compares every variant
        for variant in variants:
            run_dir = runs_dir / variant / f"seed{seed}"
            if args.fresh and (run_dir / "eval.json").exists():
                (run_dir / "eval.json").unlink()
            t0 = time.perf_counter()
            trained_any |= not (run_dir / "eval.json").is_file()
            record = run_one(args.preset, variant, seed, args.overrides, run_dir)
            records.append(record)
            ratio = record["top1_disabled_ppl_ratio"]
            print(
                f"[reproduce] {variant} seed {seed}: val ppl {record['val_perplexity']:.2f}, "
                f"top-1 disabled ratio {'n/a' if ratio is None else f'{ratio:.3f}'}, "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    wall = time.perf_counter() - start
    cfg = load_config(
        args.preset, args.overrides, CartesianMoEModelConfig, package_preset_dirs(__file__)
    )
    summary = summarize(records, variants)
    report = {
        "preset": preset_name,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": "python -m repro_cartesian_moe.reproduce "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_seconds": wall,
        "hardware": hardware(),
        "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]},
        "seeds": seeds,
        "variants": variants,
        "config": cfg.to_dict(),
        "summary": summary,
        "claims": claims(summary),
        "runs": records,
    }
    previous = out / "results.json"
    if not trained_any and previous.is_file():
        # Only the report was rebuilt from eval.json files: keep the training's date and time.
        old = json.loads(previous.read_text())
        if old.get("seeds") == seeds and old.get("variants") == variants:
            for key in ("date", "command", "wall_seconds", "hardware", "load_average_1min"):
                report[key] = old[key]
            report["report_regenerated"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    write_json_atomic(out / "results.json", report, indent=1)
    write_text_atomic(out / "results.md", results_markdown(report))
    plot(report, out / "results.png")
    if out.resolve() == (PACKAGE_ROOT / "results" / preset_name).resolve():
        update_readme(report, PACKAGE_ROOT / "README.md")
    print(tables_markdown(report))
    print(
        f"[reproduce] wrote {out}/results.json, results.md, results.png "
        f"({report['wall_seconds'] / 60:.1f} min of training)"
    )
    return 0


def checkpoints(preset: str = "tiny") -> dict[str, str]:
    """``repro.bench`` entry point: variant -> ``final/`` model directory of seed 0 of the
    reproduction, for the runs that exist (looked up under ./runs and the checkout's runs/)."""
    found = {}
    roots = [Path("runs/cartesian_moe") / preset]
    if (PACKAGE_ROOT / "pyproject.toml").is_file():
        roots.append(PACKAGE_ROOT.parents[1] / "runs" / "cartesian_moe" / preset)
    for variant in (*GRID, "cartesian_no_shared"):
        for root in roots:
            final = root / variant / "seed0" / "final"
            if (final / "config.json").is_file():
                found[variant] = str(final.resolve())
                break
    return found


if __name__ == "__main__":
    sys.exit(main())
