"""Inference speed of one DSMoE layer: the sparse path against the dense FFN and the masked path.

All three compute the same layer on the same tokens (eval mode, no gradient): the dense SwiGLU
FFN (every unit), the DSMoE dense-masked path (every unit, gates as a mask, plus the router) and
the DSMoE sparse path (the router, then per expert only its tokens: gather, three GEMMs,
scatter-add). The threshold is set so that a chosen fraction of (token, expert) pairs is active.

    python -m repro_dsmoe.bench                        # D=512, F=2048, n=8, 8 x 256 tokens
"""

from __future__ import annotations

import json
import statistics
import time

import torch
from repro_core.layers import SwiGLUMLP

from .modeling import DSMoEConfig, DSMoEMLP

FRACTIONS = (0.125, 0.25, 0.375, 0.5, 0.75)


def _layers(hidden_size: int, intermediate_size: int, active_fraction: float, x: torch.Tensor):
    """(dense FFN, masked DSMoE, sparse DSMoE) with shared weights, τ at the wanted activation."""
    config = DSMoEConfig(
        vocab_size=8,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_experts=8,
    )
    torch.manual_seed(0)
    moe = DSMoEMLP(config).eval()
    with torch.no_grad():
        moe.router.weight.normal_(0, 1.0 / hidden_size**0.5)
        q = moe.router(x).flatten()
        # τ = the (1 - fraction) quantile of the gate values: that share of pairs is active
        moe.eval_tau = float(q.kthvalue(max(1, round((1 - active_fraction) * q.numel()))).values)
    dense = SwiGLUMLP(config).eval()
    dense.load_state_dict({k: v for k, v in moe.state_dict().items() if "router" not in k})
    return dense, moe


def _fn(module, x, path=None):
    def call():
        if path is not None:
            module.inference_path = path
        with torch.no_grad():
            module(x)

    return call


def perf_cases(quick: bool = False) -> list[dict]:
    """Cases for ``repro-perf``: the sparse path vs the dense FFN and vs the masked path."""
    hidden, inter, batch, seq = (64, 256, 2, 64) if quick else (512, 2048, 8, 256)
    fractions = (0.375,) if quick else (0.25, 0.375, 0.5)
    torch.manual_seed(0)
    x = torch.randn(batch, seq, hidden)
    cases = []
    for frac in fractions:
        dense, moe = _layers(hidden, inter, frac, x)
        shape = f"D={hidden}, F={inter}, n=8, {batch}x{seq} tokens, {frac:.0%} of experts active"
        sparse = (f"DSMoE sparse path ({frac:.0%} active)", _fn(moe, x, "sparse"))
        cases.append(
            {
                "name": f"DSMoE layer inference vs dense FFN, {shape}",
                "unit": "tokens",
                "work": batch * seq,
                "flops": 2 * 3 * hidden * inter * batch * seq * frac,
                "candidate": sparse,
                "baseline": ("dense SwiGLU FFN", _fn(dense, x)),
            }
        )
        cases.append({"name": f"DSMoE layer inference vs masked path, {shape}", "unit": "tokens",
                      "work": batch * seq, "flops": 2 * 3 * hidden * inter * batch * seq * frac,
                      "candidate": sparse,
                      "baseline": ("DSMoE dense-masked path", _fn(moe, x, "masked"))})  # fmt: skip
    return cases


def measure_layer_speed(
    hidden_size=512,
    intermediate_size=2048,
    batch_size=8,
    seq_len=256,
    fractions=FRACTIONS,
    repeats=9,
    warmup=2,
    threads=1,
) -> list[dict]:
    """Median inference tokens/s of the three paths at each active fraction, interleaved, on
    ``threads`` torch threads (1 by default: many small per-expert kernels and a shared machine
    make multi-thread timings of the sparse path unstable)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(
            hidden_size, intermediate_size, batch_size, seq_len, fractions, repeats, warmup
        )
    finally:
        torch.set_num_threads(saved)


def _measure(hidden_size, intermediate_size, batch_size, seq_len, fractions, repeats, warmup):
    torch.manual_seed(0)
    x = torch.randn(batch_size, seq_len, hidden_size)
    tokens = batch_size * seq_len
    rows = []
    for frac in fractions:
        dense, moe = _layers(hidden_size, intermediate_size, frac, x)
        calls = {
            "dense": _fn(dense, x),
            "masked": _fn(moe, x, "masked"),
            "sparse": _fn(moe, x, "sparse"),
        }
        seconds = {k: [] for k in calls}
        for r in range(warmup + repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                if r >= warmup:
                    seconds[name].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in seconds.items()}
        rows.append(
            {
                "active_fraction": frac,
                **{f"{k}_tokens_per_second": tokens / v for k, v in med.items()},
                "sparse_speedup_vs_dense": med["dense"] / med["sparse"],
                "sparse_speedup_vs_masked": med["masked"] / med["sparse"],
                "repeats": repeats,
                "threads": torch.get_num_threads(),
                "shape": f"D={hidden_size}, F={intermediate_size}, n=8, {batch_size}x{seq_len}",
            }
        )
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(measure_layer_speed(), indent=1))
