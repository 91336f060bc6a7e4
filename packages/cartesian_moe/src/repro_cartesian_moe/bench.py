"""Forward+backward throughput of the MoE FFN blocks against a dense SwiGLU FFN.

The dense FFN has the same activated expert parameters as the parameter-matched MoE blocks:
width 3W (three W-wide units per token, spec §1.4). All blocks run in one process on the same
input, interleaved round by round so that load from other processes hits them alike; the
median over rounds is reported.

    python -m repro_cartesian_moe.bench            # hidden 256, W 512, N 8, 8 x 256 tokens
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time

import torch
from repro_cartesian_moe.layers import VARIANTS, build_ffn, run_ffn
from repro_core.moe import swiglu_mlp


@contextlib.contextmanager
def intra_op_threads(num_threads: int | None):
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_ffn_speed(
    hidden_size: int = 256,
    dense_hidden_size: int = 512,
    num_experts: int = 8,
    batch_size: int = 8,
    seq_len: int = 256,
    repeats: int = 7,
    warmup: int = 2,
    variants: tuple[str, ...] = VARIANTS,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    num_threads: int | None = None,
) -> dict:
    """Median forward+backward tokens/s of each variant and of the dense FFN.

    ``num_threads`` sets torch's intra-op threads for the measurement: on a CPU shared with
    other jobs, 1 thread avoids OpenMP barriers waiting on descheduled threads, which penalise
    many small matmuls (MoE) far more than one large one (dense).

    Returns ``{"config": {...}, "dense_tokens_per_s": float, "variants": {variant:
    {"tokens_per_s": float, "ratio_to_dense": float, "seconds": float}}}``.
    """
    torch.manual_seed(seed)
    tokens = batch_size * seq_len
    blocks = {"dense": swiglu_mlp(hidden_size, 3 * dense_hidden_size)}
    for variant in variants:
        blocks[variant] = build_ffn(variant, hidden_size, dense_hidden_size, num_experts)
    blocks = {name: block.to(device=device, dtype=dtype) for name, block in blocks.items()}
    h = torch.randn(batch_size, seq_len, hidden_size, device=device, dtype=dtype)
    x = h.clone().requires_grad_(True)

    def step(name: str) -> float:
        block = blocks[name]
        block.zero_grad(set_to_none=True)
        x.grad = None
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if name == "dense":
            out = h + block(x)
        else:
            delta, auxes = run_ffn(block, x, h)
            out = h + delta + 0.01 * sum(a.load_balancing_loss for a in auxes)
        out.float().pow(2).mean().backward()
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    seconds: dict[str, list[float]] = {name: [] for name in blocks}
    with intra_op_threads(num_threads):
        threads = torch.get_num_threads()
        for round_idx in range(warmup + repeats):
            for name in blocks:
                elapsed = step(name)
                if round_idx >= warmup:
                    seconds[name].append(elapsed)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "config": dict(
            hidden_size=hidden_size,
            dense_hidden_size=dense_hidden_size,
            num_experts=num_experts,
            tokens=tokens,
            repeats=repeats,
            device=device,
            dtype=str(dtype),
            threads=threads,
        ),
        "dense_tokens_per_s": tokens / median["dense"],
        "variants": {
            variant: {
                "tokens_per_s": tokens / median[variant],
                "ratio_to_dense": median["dense"] / median[variant],
                "seconds": median[variant],
            }
            for variant in variants
        },
    }


if __name__ == "__main__":
    print(json.dumps(measure_ffn_speed(), indent=2))
