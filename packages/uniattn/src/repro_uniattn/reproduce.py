"""UniAttn vs standard fine-tuning, its ablations and cross-layer KV sharing; ``make reproduce-uniattn``.

    python -m repro_uniattn.reproduce --preset tiny                      # 6 arms x 3 seeds + costs
    python -m repro_uniattn.reproduce --preset tiny --seeds 0 --arms finetune,uniattn
    python -m repro_uniattn.reproduce --preset tiny --report-only        # rebuild the report

Every arm post-trains the same base checkpoint (``model.init_from`` of the preset: ``make base``
or ``REPRO_BASE``) on the same data, steps, learning rate and seeds; UniAttn arms run their
stage 1 (W_c only, ``model.stage1_steps``) before the shared stage 2 (the official schedule).
Each final model is scored on the held-out task (response loss, exact match), on the base
corpus (perplexity: forgetting) and for cost (KV bytes per token, softmax calls, parameters);
prefill and decode latency are measured on CPU for seed 0, interleaved with the base model.
Run directories: ``runs/uniattn/<preset>/<arm>/seed<seed>`` (finished runs are reused). Writes
``results/<preset>/{results.json, results.md, uniattn.png}`` and the README results block.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from repro_core.config import load_config, package_preset_dirs, resolve_base
from repro_core.results import mean_std, replace_block, write_json_atomic, write_text_atomic

from .config import UniAttnModelConfig

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
ARMS = {
    "finetune": ["model.variant=base", "model.stage1_steps=0"],
    "uniattn": ["model.variant=uniattn"],
    "uniattn-zero-init": ["model.variant=uniattn", "model.compensation_init=zero"],
    "softmax-only": ["model.variant=softmax", "model.stage1_steps=0"],
    "cla": ["model.variant=cla", "model.stage1_steps=0"],
    # spec §4.2 arm G: the converted model with its LS-initialised W_c and no post-training
    "uniattn-untrained": ["model.variant=uniattn", "model.stage1_steps=0"],
}
UNTRAINED = "uniattn-untrained"
LABELS = {
    "base": "base model (no post-training)",
    "finetune": "standard full fine-tuning",
    "uniattn": "UniAttn (LS init, 2 stages)",
    "uniattn-zero-init": "UniAttn (W_c = 0 init, 2 stages)",
    "softmax-only": "unification without W_c",
    "cla": "cross-layer KV sharing (CLA)",
    "uniattn-untrained": "UniAttn, LS init, no post-training",
}
METRICS = ("task_loss", "task_accuracy", "base_perplexity")


def runs_root(preset: str) -> Path:
    return Path(os.environ.get("REPRO_RUNS_DIR", "runs")) / "uniattn" / preset


def arm_config(preset: str, arm: str, seed: int, extra: list[str]):
    overrides = list(extra) + ARMS[arm] + [f"seed={seed}", f"name=uniattn-{arm}"]
    return load_config(preset, overrides, UniAttnModelConfig, package_preset_dirs(__file__))


def run_one(preset: str, arm: str, seed: int, extra: list[str], eval_batches: int) -> dict:
    """Train (unless finished) and evaluate one arm/seed; returns its metrics."""
    from repro_core.evaluate import load_run
    from repro_core.train import reset_accelerate

    from .evaluate import evaluate_model
    from .train import run

    run_dir = runs_root(preset) / arm / f"seed{seed}"
    eval_file = run_dir / "eval.json"
    if eval_file.is_file():
        return json.loads(eval_file.read_text())
    cfg = arm_config(preset, arm, seed, extra)
    start = time.perf_counter()
    if arm == UNTRAINED:
        model, tok, corpus = untrained_model(cfg)
    else:
        if not (run_dir / "results.json").is_file():
            run(cfg, run_dir)
            reset_accelerate()
        model, tok, saved = load_run(run_dir)
        corpus = saved["data"]["corpus"]
    train_seconds = time.perf_counter() - start
    out = evaluate_model(model.eval(), tok, corpus, "wikitext-2", 256, eval_batches)
    out.update(arm=arm, seed=seed, wall_seconds=train_seconds)
    write_json_atomic(eval_file, out)
    return out


def untrained_model(cfg):
    """Arm G: convert the base and fit W_c (as the training entry point does), no training."""
    from .task import resolve_task_corpus
    from .train import build_model, run_tokenizer

    corpus = resolve_task_corpus(cfg.data.corpus)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, corpus=corpus))
    tokenizer = run_tokenizer(cfg)
    return build_model(cfg, tokenizer, log=lambda *_: None), tokenizer, corpus


def _run_in_worker(preset, arm, seed, extra, eval_batches) -> dict:
    torch.set_num_threads(1)
    print(f"[reproduce] {arm} seed {seed}", flush=True)
    return run_one(preset, arm, seed, extra, eval_batches)


def run_grid(preset: str, grid: list, extra: list[str], eval_batches: int, jobs: int) -> list:
    """Every (arm, seed) of ``grid``, in order; ``jobs`` > 1 runs that many at once, each in a
    fresh single-threaded process (on a small CPU, N one-thread runs beat one N-thread run)."""
    if jobs <= 1:
        out = []
        for arm, seed in grid:
            print(f"[reproduce] {arm} seed {seed}", flush=True)
            out.append(run_one(preset, arm, seed, extra, eval_batches))
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .task import resolve_task_corpus

    resolve_task_corpus(arm_config(preset, "finetune", 0, extra).data.corpus)  # write it once
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the children's OpenMP before torch starts
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1
        ) as pool:
            futures = [
                pool.submit(_run_in_worker, preset, arm, seed, extra, eval_batches)
                for arm, seed in grid
            ]
            return [f.result() for f in futures]
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def evaluate_base(preset: str, extra: list[str], eval_batches: int) -> dict:
    from repro_core.data import get_tokenizer
    from repro_core.modeling import load_llama_checkpoint

    from .evaluate import evaluate_model
    from .task import resolve_task_corpus

    cfg = arm_config(preset, "finetune", 0, extra)
    path = resolve_base(cfg.model.init_from)
    model = load_llama_checkpoint(path).eval()
    return evaluate_model(
        model,
        get_tokenizer(path),
        resolve_task_corpus(cfg.data.corpus),
        "wikitext-2",
        256,
        eval_batches,
    )


def measure_costs(preset: str, extra: list[str], prefill: int, decode: int, repeats: int) -> dict:
    """Latency / KV / softmax / parameter ratios of each arm's seed-0 model to the base."""
    from repro_core.modeling import load_llama_checkpoint
    from transformers import AutoModelForCausalLM

    from . import modeling  # noqa: F401

    cfg = arm_config(preset, "finetune", 0, extra)
    models = {"base": load_llama_checkpoint(resolve_base(cfg.model.init_from))}
    for arm in ARMS:
        final = runs_root(preset) / arm / "seed0" / "final"
        # finetune has the base architecture, uniattn-zero-init the uniattn one
        if final.is_dir() and arm not in ("finetune", "uniattn-zero-init", UNTRAINED):
            models[arm] = AutoModelForCausalLM.from_pretrained(final)
    return cost_ratios(models, prefill, decode, repeats)


@contextlib.contextmanager
def one_thread():
    """Time on one torch thread (less noise from a shared machine), then restore the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def cost_ratios(models: dict, prefill: int, decode: int, repeats: int) -> dict:
    """:func:`~repro_uniattn.bench.measure_inference` on one thread, plus each cost's ratio to
    the model named ``base``."""
    from .bench import measure_inference

    with one_thread():
        raw = measure_inference(models, prefill, decode, repeats)
    base = raw["base"]
    keys = (
        "prefill_seconds",
        "decode_seconds",
        "kv_bytes_per_token",
        "softmax_calls_per_token",
        "parameters",
    )
    out = {name: {**r, **{f"{k}_ratio": r[k] / base[k] for k in keys}} for name, r in raw.items()}
    for r in out.values():
        for key in ("prefill", "decode"):  # the same round of model and base: paired ratios
            paired = [a / b for a, b in zip(r[f"{key}_rounds"], base[f"{key}_rounds"])]
            r[f"{key}_seconds_ratio_range"] = [min(paired), max(paired)]
    return out


def measure_paper_like_costs(prefill: int, decode: int, repeats: int) -> dict:
    """The same cost ratios for random models of :data:`~repro_uniattn.bench.PAPER_LIKE_SHAPE`
    (latency does not depend on the weights), plus the eager attention time split."""
    from .bench import PAPER_LIKE_SHAPE, attention_time_split, shape_models

    out = {"shape": PAPER_LIKE_SHAPE}
    out["models"] = cost_ratios(shape_models(PAPER_LIKE_SHAPE), prefill, decode, repeats)
    with one_thread():
        hd = PAPER_LIKE_SHAPE["hidden"] // PAPER_LIKE_SHAPE["heads"]
        out["attention_split"] = attention_time_split(prefill, PAPER_LIKE_SHAPE["heads"], hd)
    return out


def summarize(runs: list[dict]) -> dict:
    by_arm: dict[str, list[dict]] = {}
    for r in runs:
        by_arm.setdefault(r["arm"], []).append(r)
    return {
        arm: {
            m: mean_std([r[m] for r in rs]) for m in METRICS + ("kv_bytes_per_token", "parameters")
        }
        for arm, rs in by_arm.items()
    }


def compare(method: dict, baseline: dict, lower_is_better: bool, close: bool = False) -> str:
    """Verdict from means and stds: a difference counts when it exceeds the pooled std."""
    diff = method["mean"] - baseline["mean"]
    noise = max((method["std"] ** 2 + baseline["std"] ** 2) ** 0.5, 1e-12)
    if close:  # "method is close to baseline": within 2 std or 2 % of the baseline
        return (
            "reproduced"
            if abs(diff) <= max(2 * noise, 0.02 * abs(baseline["mean"]))
            else "not at this scale"
        )
    better = -diff if lower_is_better else diff
    if better > noise:
        return "reproduced"
    if better < -noise:
        return "contradicted"
    return "not at this scale"


def claims(summary: dict, costs: dict, paper_like: dict | None = None) -> list[dict]:
    out = []

    def add(claim, source, metric, arm, base, lower, close=False):
        if arm in summary and base in summary:
            m, b = summary[arm][metric], summary[base][metric]
            out.append(
                dict(
                    claim=claim,
                    source=source,
                    metric=metric,
                    method=arm,
                    baseline=base,
                    method_value=m,
                    baseline_value=b,
                    verdict=compare(m, b, lower, close),
                )
            )

    add(
        "UniAttn matches standard post-training",
        "arxivlens summary (3P); abstract framing",
        "task_loss",
        "uniattn",
        "finetune",
        True,
        close=True,
    )
    add(
        "cross-layer KV sharing leads to significant performance degradation",
        "abstract v1",
        "task_loss",
        "uniattn",
        "cla",
        True,
    )
    add(
        "cross-layer KV sharing leads to significant performance degradation",
        "abstract v1",
        "task_accuracy",
        "uniattn",
        "cla",
        False,
    )
    add(
        "W_c matters (ablation)",
        "spec §1.7 claim 3 [U]",
        "task_loss",
        "uniattn",
        "softmax-only",
        True,
    )
    add(
        "the LS init matters (ablation)",
        "spec §4.2",
        "task_loss",
        "uniattn",
        "uniattn-zero-init",
        True,
    )
    add(
        "post-training is needed after unification",
        "spec §4.2 arm G",
        "task_loss",
        "uniattn",
        UNTRAINED,
        True,
    )

    def single(value: float) -> dict:
        return {"mean": value, "std": 0.0, "n": 1}

    shapes = [("trained tiny models", costs)]
    if paper_like:
        shapes.append(("paper-like shape, random weights", paper_like["models"]))
    for where, table in shapes:
        if "uniattn" not in table:
            continue
        for key in ("kv_bytes_per_token", "decode_seconds", "prefill_seconds"):
            ratio = table["uniattn"][f"{key}_ratio"]
            # KV bytes are exact. A time is lower (higher) only if it is in every interleaved
            # round, paired with the base's time of the same round; otherwise it is noise.
            lo, hi = table["uniattn"].get(f"{key}_ratio_range", [ratio, ratio])
            verdict = "not at this scale"
            if hi < 1.0:
                verdict = "reproduced"
            elif lo > 1.0:
                verdict = "contradicted"
            value = single(ratio)
            if key != "kv_bytes_per_token":
                value["range"] = [lo, hi]
            out.append(
                dict(
                    claim="Reducing Inference Costs via Softmax Unification",
                    source="title",
                    metric=f"{key} / base ({where})",
                    method="uniattn",
                    baseline="base",
                    method_value=value,
                    baseline_value=single(1.0),
                    verdict=verdict,
                )
            )
    if paper_like and "attention_split" in paper_like:
        split = paper_like["attention_split"]
        shares = {k: split[f"{k}_share"] for k in ("qk", "softmax", "pv")}
        out.append(
            dict(
                claim="Softmax is a primary bottleneck for LLM inference",
                source="abstract v1",
                metric=f"softmax share of eager attention time (T={split['seq_len']}, 1 thread)",
                method="softmax",
                baseline="largest of QK^T, PV",
                method_value=single(shares["softmax"]),
                baseline_value=single(max(shares["qk"], shares["pv"])),
                verdict="reproduced"
                if shares["softmax"] >= max(shares["qk"], shares["pv"])
                else "not at this scale",
            )
        )
    return out


def fmt(stat: dict, digits: int = 3) -> str:
    if "range" in stat:  # a median ratio and its range over the timing rounds
        lo, hi = stat["range"]
        return f"{stat['mean']:.{digits}f} (rounds {lo:.{digits}f}-{hi:.{digits}f})"
    if stat["n"] > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def to_markdown(report: dict) -> str:
    s, costs = report["summary"], report["costs"]
    base = report.get("base_model", {})
    lines = [
        f"# UniAttn, preset `{report['preset']}`",
        "",
        f"Base: `{report['base_checkpoint']}`. Seeds {report['seeds']}; mean ± std over seeds. "
        f"Hardware: {report['hardware']}. Wall time of this invocation "
        f"{report['wall_seconds'] / 60:.1f} min (finished runs are reused); the runs themselves "
        f"{sum(r.get('wall_seconds', 0.0) for r in report.get('runs', [])) / 60:.1f} min of training + "
        f"evaluation in total, {report.get('jobs', 1)} at a time. {report['date']}.",
        "",
        "| arm | task loss | task exact match | base-corpus ppl | KV bytes/token | softmax calls | params | prefill time / base | decode time / base |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    if base:
        lines.append(
            f"| {LABELS['base']} | {base['task_loss']:.3f} | {base['task_accuracy']:.3f} | "
            f"{base['base_perplexity']:.1f} | {base['kv_bytes_per_token']:.0f} | "
            f"{base['softmax_calls_per_token']} | {base['parameters']:,} | 1 | 1 |"
        )
    for arm, st in s.items():
        same_arch = {"finetune": "base", "uniattn-zero-init": "uniattn", UNTRAINED: "uniattn"}.get(
            arm, arm
        )
        c = costs.get(same_arch) or {}
        ratio = lambda k, c=c: f"{c[k]:.2f}" if k in c else "n/a"  # noqa: E731
        lines.append(
            f"| {LABELS.get(arm, arm)} | {fmt(st['task_loss'])} | {fmt(st['task_accuracy'])} | "
            f"{fmt(st['base_perplexity'], 1)} | {st['kv_bytes_per_token']['mean']:.0f} "
            f"({c.get('kv_bytes_per_token_ratio', 1):.3f}x) | "
            f"{c.get('softmax_calls_per_token', base.get('softmax_calls_per_token', 'n/a'))} | "
            f"{int(st['parameters']['mean']):,} | {ratio('prefill_seconds_ratio')} | {ratio('decode_seconds_ratio')} |"
        )
    if costs:
        b = costs["base"]
        lines += [
            "",
            f"Latency: batch 1, {b['prefill_tokens']}-token prefill then {b['decode_tokens']} greedy "
            f"decode steps with the cache, 1 CPU thread, median of {report['latency_repeats']} interleaved "
            f"rounds; base: prefill {b['prefill_seconds']:.3f} s, decode {b['decode_seconds']:.3f} s.",
        ]
    lines += paper_like_markdown(report.get("paper_like_costs"))
    lines += [
        "",
        "## Claims",
        "",
        "| claim | source | metric | method vs baseline | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in report["claims"]:
        lines.append(
            f'| "{c["claim"]}" | {c["source"]} | {c["metric"]} | {c["method"]} {fmt(c["method_value"])} '
            f"vs {c['baseline']} {fmt(c['baseline_value'])} | {c['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def paper_like_markdown(paper_like: dict | None) -> list[str]:
    if not paper_like:
        return []
    sh, models = paper_like["shape"], paper_like["models"]
    b = models["base"]
    lines = [
        "",
        f"Costs at a paper-like shape (random weights; latency does not depend on them): "
        f"{sh['layers']} layers, d={sh['hidden']}, {sh['heads']} heads / {sh['kv_heads']} kv heads, "
        f"superblocks of {sh['group_size']} on layers {sh['start']}-{sh['end'] - 1} (the paper's "
        f"LLaMA-3.1-8B ratio, 37.5% of layers reuse P). Same latency protocol; base: prefill "
        f"{b['prefill_seconds']:.3f} s, decode {b['decode_seconds']:.3f} s.",
        "",
        "| model | KV bytes/token | softmax calls | params | prefill time / base | decode time / base |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in models.items():
        lines.append(
            f"| {name} | {c['kv_bytes_per_token']:.0f} ({c['kv_bytes_per_token_ratio']:.3f}x) | "
            f"{c['softmax_calls_per_token']} | {c['parameters']:,} | "
            f"{c['prefill_seconds_ratio']:.2f} | {c['decode_seconds_ratio']:.2f} |"
        )
    split = paper_like.get("attention_split")
    if split:
        lines += [
            "",
            f"Eager attention of one layer (T={split['seq_len']}, {split['heads']} heads x "
            f"{split['head_dim']}, 1 thread): QK^T {split['qk_share']:.0%}, mask + softmax "
            f"{split['softmax_share']:.0%}, PV {split['pv_share']:.0%} of "
            f"{(split['qk_seconds'] + split['softmax_seconds'] + split['pv_seconds']) * 1e3:.1f} ms; "
            f"fused SDPA (causal) {split['sdpa_seconds'] * 1e3:.1f} ms.",
        ]
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["summary"]
    arms = list(s)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ("task_loss", "base_perplexity")):
        ax.bar(
            range(len(arms)),
            [s[a][metric]["mean"] for a in arms],
            yerr=[s[a][metric]["std"] for a in arms],
            color="tab:blue",
        )
        ax.set_xticks(range(len(arms)), arms, rotation=20, fontsize=8)
        ax.set_title(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def update_readme(report: dict, readme: Path) -> bool:
    """Replace the generated results block of the package README (False if it has none)."""
    body = to_markdown(report).split("\n", 2)[2]  # drop the title
    return replace_block(readme, "<!-- results:start -->", "<!-- results:end -->", "\n" + body)


def checkpoints() -> dict[str, str]:
    """Arm -> final model directory of the tiny reproduction (seed 0), for those that exist."""
    root = runs_root("tiny")
    return {
        f"uniattn-{arm}": str(root / arm / "seed0" / "final")
        for arm in ARMS
        if (root / arm / "seed0" / "final" / "config.json").is_file()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m repro_uniattn.reproduce", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="results folder (default results/<preset>)")
    p.add_argument("--eval-batches", type=int, default=8, help="base-corpus batches of 8 x 256")
    p.add_argument("--prefill", type=int, default=1024)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--latency-repeats", type=int, default=7)
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads for training (0 = default)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="runs at once, one thread each (0 = the CPU core count without a GPU, 1 with one)",
    )
    p.add_argument(
        "--no-paper-like-costs",
        dest="paper_like_costs",
        action="store_false",
        help="skip the cost table of the random paper-like shape (~1 min)",
    )
    p.add_argument(
        "--report-only", action="store_true", help="only rebuild the report from eval.json files"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        print(f"unknown arms {unknown}; available: {list(ARMS)}", file=sys.stderr)
        return 2
    init_from = arm_config(args.preset, "finetune", 0, args.overrides).model.init_from
    if init_from and not args.report_only:  # fail here, not in every worker
        try:
            path = resolve_base(init_from)
        except FileNotFoundError as err:
            print(err, file=sys.stderr)
            return 2
        hub_id = not Path(path).is_absolute() and path.count("/") == 1 and not Path(path).exists()
        if not hub_id and not Path(path, "config.json").is_file():
            print(
                f"model.init_from={path!r} is not a model directory (no config.json): pass the "
                "output of save_pretrained, e.g. runs/base/final from `make base`",
                file=sys.stderr,
            )
            return 2
    if not init_from:
        print(
            f"preset {args.preset!r} has no model.init_from: the grid post-trains a base checkpoint. "
            "Run `make base` (tiny presets read $REPRO_BASE, default runs/base/final) or pass "
            "--set model.init_from=DIR",
            file=sys.stderr,
        )
        return 2
    out_dir = Path(args.out) if args.out else PACKAGE_ROOT / "results" / args.preset
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = []
    grid = [(arm, seed) for seed in seeds for arm in arms]
    if args.report_only:
        for arm, seed in grid:
            eval_file = runs_root(args.preset) / arm / f"seed{seed}" / "eval.json"
            if eval_file.is_file():
                runs.append(json.loads(eval_file.read_text()))
    else:
        jobs = args.jobs or (
            1 if torch.cuda.is_available() else min(os.cpu_count() or 1, len(grid))
        )
        runs = run_grid(args.preset, grid, args.overrides, args.eval_batches, jobs)
    previous = (
        json.loads((out_dir / "results.json").read_text())
        if (out_dir / "results.json").is_file()
        else {}
    )
    if args.report_only and previous:
        base_eval, costs = previous.get("base_model", {}), previous.get("costs", {})
        paper_like = previous.get("paper_like_costs")
    else:
        base_eval = evaluate_base(args.preset, args.overrides, args.eval_batches)
        costs = measure_costs(
            args.preset, args.overrides, args.prefill, args.decode, args.latency_repeats
        )
        paper_like = (
            measure_paper_like_costs(args.prefill, args.decode, args.latency_repeats)
            if args.paper_like_costs
            else None
        )
    summary = summarize(runs)
    cfg = arm_config(args.preset, "uniattn", 0, args.overrides)
    base_path = resolve_base(cfg.model.init_from)
    base_meta = Path(base_path).parent / "results.json"
    # report-only keeps the wall time of the invocation that trained / measured
    wall = previous.get("wall_seconds", 0.0) if args.report_only else time.perf_counter() - start
    report = {
        "preset": args.preset,
        "seeds": seeds,
        "arms": arms,
        "base_checkpoint": str(base_path),
        "base_training": json.loads(base_meta.read_text()) if base_meta.is_file() else None,
        "config": cfg.to_dict(),
        "base_model": base_eval,
        "runs": runs,
        "summary": summary,
        "costs": costs,
        "paper_like_costs": paper_like,
        "latency_repeats": args.latency_repeats,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), torch {torch.__version__}",
        "wall_seconds": wall,
        "jobs": previous.get("jobs", 1) if args.report_only else jobs,
        # report-only keeps the date of the invocation that trained / measured
        "date": previous.get("date") if args.report_only and previous else now_utc(),
    }
    report["claims"] = claims(summary, costs, paper_like)
    write_json_atomic(out_dir / "results.json", report)
    write_text_atomic(out_dir / "results.md", to_markdown(report))
    if summary:
        plot(report, out_dir / "uniattn.png")
    update_readme(report, PACKAGE_ROOT / "README.md")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
