"""Inference cost of a UniAttn model against its base: KV bytes, softmax calls, parameters, and
measured prefill / decode time; plus the forward+backward cases of the performance suite.

    python -m repro_uniattn.bench                     # a random 4-layer model, superblock {2, 3}
    python -m repro_uniattn.bench --base runs/base/final --group-size 2 --start 2 --end 4

Latency is the median over ``repeats`` of: one prefill call on ``prefill_tokens`` tokens, then
``decode_tokens`` greedy single-token calls with the cache (batch 1, no sampling), with the
candidate and the baseline interleaved round by round so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from repro_core.modeling import DecoderConfig, DecoderLM, count_parameters
from transformers.cache_utils import DynamicCache

from .convert import convert_checkpoint
from .modeling import UniAttnForCausalLM, kv_cache_bytes


def softmax_calls_per_token(model) -> int:
    """Softmax evaluations (one per layer that computes attention probabilities) per token."""
    if isinstance(model, UniAttnForCausalLM):
        return len(model.softmax_layers())
    return model.config.num_hidden_layers


@torch.no_grad()
def _prefill_decode(model, ids: torch.Tensor, decode_tokens: int) -> tuple[float, float, int]:
    cache = DynamicCache()
    start = time.perf_counter()
    out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - start
    token = out.logits[:, -1:].argmax(-1)
    start = time.perf_counter()
    for _ in range(decode_tokens):
        out = model(input_ids=token, cache=cache, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
    decode = time.perf_counter() - start
    return prefill, decode, kv_cache_bytes(cache)


@torch.no_grad()
def measure_inference(
    models: dict[str, torch.nn.Module],
    prefill_tokens: int = 1024,
    decode_tokens: int = 64,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, dict]:
    """Per model: prefill seconds, decode seconds (all ``decode_tokens``), KV bytes per token,
    softmax calls per token, parameters. Models are run interleaved."""
    vocab = min(m.config.vocab_size for m in models.values())
    ids = torch.randint(
        0, vocab, (1, prefill_tokens), generator=torch.Generator().manual_seed(seed)
    )
    times = {name: ([], []) for name in models}
    kv = {}
    for m in models.values():
        m.eval()
    for m in models.values():  # warm-up
        _prefill_decode(m, ids[:, :64], 2)
    for _ in range(repeats):
        for name, m in models.items():
            prefill, decode, nbytes = _prefill_decode(m, ids, decode_tokens)
            times[name][0].append(prefill)
            times[name][1].append(decode)
            kv[name] = nbytes / (prefill_tokens + decode_tokens)
    return {
        name: {
            "prefill_seconds": statistics.median(times[name][0]),
            "decode_seconds": statistics.median(times[name][1]),
            "prefill_rounds": times[name][0],  # one per interleaved round, for paired ratios
            "decode_rounds": times[name][1],
            "kv_bytes_per_token": kv[name],
            "softmax_calls_per_token": softmax_calls_per_token(m),
            "parameters": count_parameters(m)["total"],
            "prefill_tokens": prefill_tokens,
            "decode_tokens": decode_tokens,
            "threads": torch.get_num_threads(),
        }
        for name, m in models.items()
    }


# A wider, deeper shape for the cost table with the paper's LLaMA-3.1-8B grouping ratio (g = 4 on
# the top half: 12 of 32 layers reuse P there, 6 of 16 here). Latency does not depend on the
# weights, so a random model of this shape measures what a trained one would cost.
PAPER_LIKE_SHAPE = dict(
    layers=16, hidden=512, intermediate=1408, heads=8, kv_heads=2, group_size=4, start=8, end=16
)


def random_base(
    layers=4, hidden=256, intermediate=688, heads=4, kv_heads=2, vocab=8192, **_
) -> DecoderLM:
    """A randomly initialised base decoder of the given shape (seed 0), in eval mode."""
    torch.manual_seed(0)
    cfg = DecoderConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
    )
    return DecoderLM(cfg).eval()


def grouped_models(base, group_size: int, start: int, end: int) -> dict[str, torch.nn.Module]:
    """The base and its UniAttn (W_c = 0) and CLA conversions on one grouping, in eval mode."""
    return {
        "base": base.eval(),
        "uniattn": convert_checkpoint(base, group_size, start, end).eval(),
        "cla": convert_checkpoint(base, group_size, start, end, sharing="kv").eval(),
    }


def shape_models(shape: dict) -> dict[str, torch.nn.Module]:
    """Base, UniAttn and CLA models of one shape (random weights, W_c = 0)."""
    return grouped_models(random_base(**shape), shape["group_size"], shape["start"], shape["end"])


@torch.no_grad()
def attention_time_split(
    seq_len: int = 1024, heads: int = 8, head_dim: int = 64, repeats: int = 5, seed: int = 0
) -> dict:
    """Eager causal attention of one layer (batch 1) split into QK^T, mask + softmax and PV, with
    the fused SDPA kernel for comparison; median seconds of ``repeats`` and each part's share of
    the eager total. Tests the abstract's "Softmax is a primary bottleneck" on this machine."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, heads, seq_len, head_dim, generator=gen) for _ in range(3))
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    scale = 1.0 / head_dim**0.5
    parts = {"qk": [], "softmax": [], "pv": [], "sdpa": []}
    for _ in range(repeats + 1):  # the first round warms up
        t0 = time.perf_counter()
        scores = (q * scale) @ k.transpose(-1, -2)
        t1 = time.perf_counter()
        probs = torch.softmax(scores.masked_fill_(~causal, float("-inf")), dim=-1)
        t2 = time.perf_counter()
        probs @ v
        t3 = time.perf_counter()
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        t4 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key].append(dt)
    med = {key: statistics.median(times[1:]) for key, times in parts.items()}
    eager = med["qk"] + med["softmax"] + med["pv"]
    return {
        "seq_len": seq_len,
        "heads": heads,
        "head_dim": head_dim,
        "threads": torch.get_num_threads(),
        **{f"{key}_seconds": value for key, value in med.items()},
        **{f"{key}_share": med[key] / eager for key in ("qk", "softmax", "pv")},
    }


def _train_step(model, ids):
    def step():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        if ids.is_cuda:
            torch.cuda.synchronize()

    return step


def perf_cases(quick: bool = False) -> list[dict]:
    """``repro-perf`` cases: UniAttn (superblocks of 2 on the top half) vs its base, one
    forward+backward on the same tokens."""
    layers, batch, seq = (4, 2, 64) if quick else (8, 4, 512)
    base = random_base(layers=layers).train()
    uni = convert_checkpoint(base, 2, layers // 2, layers).train()
    ids = torch.randint(0, 8192, (batch, seq), generator=torch.Generator().manual_seed(0))
    return [
        {
            "name": f"UniAttn fwd+bwd, {layers} layers, superblocks of 2 on the top half, {batch}x{seq} tokens",
            "unit": "tokens",
            "work": batch * seq,
            "candidate": ("UniAttn (P shared, no Q/K in reusing layers)", _train_step(uni, ids)),
            "baseline": ("base decoder (SDPA)", _train_step(base, ids)),
        }
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m repro_uniattn.bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--base", default=None, help="checkpoint dir (default: a random 4-layer model)")
    p.add_argument("--group-size", type=int, default=2)
    p.add_argument("--start", type=int, default=2)
    p.add_argument("--end", type=int, default=4)
    p.add_argument("--prefill", type=int, default=1024)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--attention-split", action="store_true", help="only the QK^T/softmax/PV split")
    p.add_argument(
        "--shape",
        choices=("tiny", "paper-like"),
        default="tiny",
        help="random model when --base is not given: tiny (4 x 256) or paper-like (16 x 512, g=4)",
    )
    args = p.parse_args(argv)
    if args.attention_split:
        print(json.dumps(attention_time_split(args.prefill), indent=1))
        return 0
    if args.base:
        from repro_core.modeling import load_llama_checkpoint

        base = load_llama_checkpoint(args.base)
        models = grouped_models(base, args.group_size, args.start, args.end)
    elif args.shape == "paper-like":
        models = shape_models(PAPER_LIKE_SHAPE)
    else:
        shape = dict(layers=4, group_size=args.group_size, start=args.start, end=args.end)
        models = shape_models(shape)
    print(json.dumps(measure_inference(models, args.prefill, args.decode, args.repeats), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
