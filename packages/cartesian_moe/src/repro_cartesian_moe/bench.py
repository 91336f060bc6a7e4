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
from collections.abc import Callable

import torch
from repro_core.moe import swiglu_mlp

from repro_cartesian_moe.layers import VARIANTS, build_ffn, run_ffn

BENCH_VOCAB = 2048  # ids of the hash_share block's token table (the tiny preset's vocabulary)


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


def ffn_step_functions(
    hidden_size: int = 256,
    dense_hidden_size: int = 512,
    num_experts: int = 8,
    batch_size: int = 8,
    seq_len: int = 256,
    variants: tuple[str, ...] = VARIANTS,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, Callable[[], None]]:
    """One forward+backward function per block, all on the same (B, T, D) input.

    Keys: "dense" (SwiGLU of width 3W: the activated expert width of the parameter-matched MoE
    blocks) and each of ``variants``. The MoE blocks add 0.01 x their load-balancing losses to
    the output, as in training. ``hash_share`` routes by random token ids of a
    :data:`BENCH_VOCAB`-id vocabulary.
    """
    torch.manual_seed(seed)
    blocks = {"dense": swiglu_mlp(hidden_size, 3 * dense_hidden_size)}
    for variant in variants:
        blocks[variant] = build_ffn(
            variant, hidden_size, dense_hidden_size, num_experts, vocab_size=BENCH_VOCAB
        )
    blocks = {name: block.to(device=device, dtype=dtype) for name, block in blocks.items()}
    h = torch.randn(batch_size, seq_len, hidden_size, device=device, dtype=dtype)
    x = h.clone().requires_grad_(True)
    ids = torch.randint(0, BENCH_VOCAB, (batch_size, seq_len), device=device)

    def make_step(name: str) -> Callable[[], None]:
        block = blocks[name]

        def step() -> None:
            block.zero_grad(set_to_none=True)
            x.grad = None
            if name == "dense":
                out = h + block(x)
            else:
                delta, auxes = run_ffn(block, x, h, token_ids=ids)
                out = h + delta + 0.01 * sum(a.load_balancing_loss for a in auxes)
            out.float().pow(2).mean().backward()
            if device != "cpu":
                torch.cuda.synchronize()

        return step

    return {name: make_step(name) for name in blocks}


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
    tokens = batch_size * seq_len
    steps = ffn_step_functions(
        hidden_size,
        dense_hidden_size,
        num_experts,
        batch_size,
        seq_len,
        variants,
        device,
        dtype,
        seed,
    )
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    with intra_op_threads(num_threads):
        threads = torch.get_num_threads()
        if device != "cpu":
            torch.cuda.synchronize()
        for round_idx in range(warmup + repeats):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                if round_idx >= warmup:
                    seconds[name].append(time.perf_counter() - start)
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


PERF_VARIANTS = ("cartesian", "smoe_share", "smoe_top3", "fine_grained", "hash_share")


def perf_cases(quick: bool = False) -> list[dict]:
    """Performance-suite cases (``repro.perf`` entry point): forward+backward of each
    parameter-matched MoE block against a dense SwiGLU FFN with equal activated parameters
    (width 3W), tokens/s. ``quick``: small shapes for a smoke run."""
    shape = dict(hidden_size=256, dense_hidden_size=512, num_experts=8, batch_size=8, seq_len=256)
    if quick:
        shape = dict(hidden_size=32, dense_hidden_size=64, num_experts=4, batch_size=2, seq_len=32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = ffn_step_functions(**shape, variants=PERF_VARIANTS, device=device)
    tokens = shape["batch_size"] * shape["seq_len"]
    d, w = shape["hidden_size"], shape["dense_hidden_size"]
    # fwd+bwd = 3 x forward; forward = 2 x activated FFN weights (3 units of 3·D·W) per token
    flops = 3 * 2 * 3 * (3 * d * w) * tokens
    n = shape["num_experts"]
    return [
        {
            "name": f"MoE FFN layer fwd+bwd, D={d}, W={w}, N={n}, {tokens} tokens: {variant}",
            "unit": "tokens",
            "work": tokens,
            "flops": flops,
            "candidate": (f"{variant} (activates 3W)", steps[variant]),
            "baseline": (f"dense SwiGLU width 3W={3 * w}", steps["dense"]),
        }
        for variant in PERF_VARIANTS
    ]


if __name__ == "__main__":
    import argparse

    from repro_core.results import write_text_atomic

    parser = argparse.ArgumentParser(description="MoE FFN blocks vs dense FFN, fwd+bwd tokens/s")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    result = measure_ffn_speed(repeats=args.repeats, device=args.device, num_threads=args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        write_text_atomic(args.out, text + "\n")
