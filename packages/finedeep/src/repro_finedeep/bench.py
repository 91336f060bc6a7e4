"""Forward+backward throughput of a Finedeep FFN block against the dense SwiGLU FFN it replaces.

Both blocks have the same expert parameters (3 D F); Finedeep adds its router and sub-layer
norms. Each Finedeep sub-layer runs its K experts as one gate+up GEMM and one down GEMM (no
Python loop over experts), so the cost over dense is M - 1 extra norms, the router and M times
more, smaller kernels.

    python -m repro_finedeep.bench              # D=256, F=1024, 8 x 256 tokens, (M, K) with M K = 8
"""

from __future__ import annotations

import json
import statistics
import time

import torch
from repro_core.layers import ForwardState, SwiGLUMLP

from .modeling import FinedeepConfig, FinedeepMLP

GRID = ((1, 8), (2, 4), (4, 2), (8, 1))


def _blocks(hidden_size, intermediate_size, grid):
    shape = dict(
        vocab_size=8,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=1,
        num_attention_heads=4,
    )
    blocks = {"dense SwiGLU FFN": SwiGLUMLP(FinedeepConfig(**shape))}
    for m, k in grid:
        blocks[f"Finedeep (M={m}, K={k})"] = FinedeepMLP(
            FinedeepConfig(num_sublayers=m, experts_per_sublayer=k, **shape)
        )
    return blocks


def _step_fn(block, h: torch.Tensor):
    """One forward+backward of ``h + block(norm(h))`` (the decoder's FFN half)."""
    x = h.detach().clone().requires_grad_(True)

    def step():
        block.zero_grad(set_to_none=True)
        x.grad = None
        state = ForwardState(shared={"residual": x})
        out = x + block(x, state)
        out.pow(2).mean().backward()
        if x.is_cuda:
            torch.cuda.synchronize()

    return step


def perf_cases(quick: bool = False) -> list[dict]:
    """Cases for ``repro-perf``: each Finedeep (M, K) layer vs the dense FFN, same input."""
    hidden, inter, batch, seq = (64, 256, 2, 64) if quick else (256, 1024, 8, 256)
    grid = ((2, 4),) if quick else GRID
    torch.manual_seed(0)
    blocks = _blocks(hidden, inter, grid)
    h = torch.randn(batch, seq, hidden)
    dense = blocks.pop("dense SwiGLU FFN")
    flops = 6 * 3 * hidden * inter * batch * seq  # fwd+bwd of the expert/dense weights
    return [
        {
            "name": f"FFN block fwd+bwd, D={hidden}, F={inter}, {batch}x{seq} tokens",
            "unit": "tokens",
            "work": batch * seq,
            "flops": flops,
            "candidate": (label, _step_fn(block, h)),
            "baseline": ("dense SwiGLU FFN", _step_fn(dense, h)),
        }
        for label, block in blocks.items()
    ]


def measure_layer_speed(
    hidden_size=256,
    intermediate_size=1024,
    batch_size=8,
    seq_len=256,
    repeats=9,
    warmup=2,
    grid=GRID,
    device="cpu",
) -> list[dict]:
    """Median fwd+bwd tokens/s of each block, interleaved round by round; ratio to dense."""
    torch.manual_seed(0)
    blocks = {
        name: b.to(device) for name, b in _blocks(hidden_size, intermediate_size, grid).items()
    }
    h = torch.randn(batch_size, seq_len, hidden_size, device=device)
    steps = {name: _step_fn(block, h) for name, block in blocks.items()}
    seconds = {name: [] for name in blocks}
    for r in range(warmup + repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if r >= warmup:
                seconds[name].append(time.perf_counter() - start)
    tokens = batch_size * seq_len
    dense = statistics.median(seconds["dense SwiGLU FFN"])
    return [
        {
            "name": name,
            "tokens_per_second": tokens / statistics.median(s),
            "ratio_to_dense": dense / statistics.median(s),
            "repeats": repeats,
            "threads": torch.get_num_threads(),
            "device": device,
        }
        for name, s in seconds.items()
    ]


if __name__ == "__main__":
    print(
        json.dumps(
            measure_layer_speed(device="cuda" if torch.cuda.is_available() else "cpu"), indent=1
        )
    )
