"""Inference costs of the UniAttn arms against their base: KV bytes, softmax calls, parameters,
prefill and decode latency (interleaved rounds on one thread), at the trained tiny shape and at a
paper-like shape with random weights; plus the base model's own task scores."""

from __future__ import annotations

import contextlib

import torch
from repro_core.config import resolve_base

# one trained model per architecture of the grid (full fine-tuning has the base's)
COST_ARMS = ("uniattn", "softmax-only", "cla")


def evaluate_base(preset: str, extra: list[str], eval_batches: int) -> dict:
    """The base checkpoint scored like every arm (task loss/accuracy, base-corpus perplexity)."""
    from repro_core.data import get_tokenizer
    from repro_core.modeling import load_llama_checkpoint

    from .evaluate import evaluate_model
    from .task import resolve_task_corpus

    cfg = arm_config(preset, extra)
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


def measure_costs(
    preset: str, extra: list[str], finals: dict, prefill: int, decode: int, repeats: int
) -> dict:
    """Latency / KV / softmax / parameter ratios of each arm's seed-0 model to the base."""
    from repro_core.modeling import load_llama_checkpoint
    from transformers import AutoModelForCausalLM

    from . import modeling  # noqa: F401

    cfg = arm_config(preset, extra)
    models = {"base": load_llama_checkpoint(resolve_base(cfg.model.init_from))}
    for arm, final in finals.items():
        if arm in COST_ARMS:  # the other arms share one of these architectures (or the base's)
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


def arm_config(preset: str, extra: list[str]):
    """The finetune arm's config (its base checkpoint and data are every arm's)."""
    from repro_core.config import load_config, package_preset_dirs

    from .config import UniAttnModelConfig

    overrides = [*extra, "model.variant=base", "model.stage1_steps=0"]
    return load_config(preset, overrides, UniAttnModelConfig, package_preset_dirs(__file__))
