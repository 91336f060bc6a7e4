"""Forward+backward throughput of the MaskMoE layer (mask gather included) against the core's
SMoE layer of the same shape (same weights, top-1, no mask).

Both run in one process on the same input, interleaved, so load from other processes hits them
alike; ``make perf`` reports the median ratio (target >= 0.95).

    python -m repro_maskmoe.bench            # D 256, W 512, N 8, vocab 8192, 8 x 256 tokens
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from repro_core.moe import MoEFeedForward, random_token_expert_mask


def layer_step_functions(
    hidden_size: int = 256,
    expert_hidden_size: int = 512,
    num_experts: int = 8,
    vocab_size: int = 8192,
    frequent_fraction: float = 0.2,
    frequent_experts: int = 4,
    batch_size: int = 8,
    seq_len: int = 256,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Callable[[], None]]:
    """``{"maskmoe": fn, "smoe": fn}``: one forward+backward of each layer (plus 0.01 x its
    load-balancing loss, as in training) on the same (B, T, D) input and (B, T) token ids."""
    torch.manual_seed(seed)
    smoe = MoEFeedForward(hidden_size, num_experts, expert_hidden_size, 1).to(device)
    visible = torch.ones(vocab_size, dtype=torch.long)
    visible[: int(frequent_fraction * vocab_size)] = frequent_experts
    maskmoe = copy.deepcopy(smoe)
    maskmoe.router.set_token_expert_mask(random_token_expert_mask(visible, num_experts, seed))
    x = torch.randn(batch_size, seq_len, hidden_size, device=device, requires_grad=True)
    # Zipf-like ids so that frequent ids dominate the tokens, as in text
    ranks = torch.arange(1, vocab_size + 1, dtype=torch.float64)
    ids = torch.multinomial(1.0 / ranks, batch_size * seq_len, replacement=True)
    ids = ids.view(batch_size, seq_len).to(device)

    def make_step(layer: MoEFeedForward, token_ids) -> Callable[[], None]:
        def step() -> None:
            layer.zero_grad(set_to_none=True)
            x.grad = None
            y, aux = layer(x, token_ids=token_ids)
            (y.float().pow(2).mean() + 0.01 * aux.load_balancing_loss).backward()
            if device != "cpu":
                torch.cuda.synchronize()

        return step

    return {"maskmoe": make_step(maskmoe, ids), "smoe": make_step(smoe, None)}


def perf_cases(quick: bool = False) -> list[dict]:
    """Performance-suite case (``repro.perf`` entry point): MaskMoE layer vs SMoE layer."""
    shape = dict(hidden_size=256, expert_hidden_size=512, num_experts=8, batch_size=8, seq_len=256)
    if quick:
        shape = dict(hidden_size=32, expert_hidden_size=64, num_experts=4, batch_size=2, seq_len=32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = layer_step_functions(**shape, device=device)
    tokens = shape["batch_size"] * shape["seq_len"]
    d, f, n = shape["hidden_size"], shape["expert_hidden_size"], shape["num_experts"]
    flops = 3 * 2 * (3 * d * f + d * n) * tokens  # fwd+bwd of one expert + the router per token
    return [
        {
            "name": f"MaskMoE layer fwd+bwd (mask gather included), D={d}, F={f}, N={n}, "
            f"top-1, {tokens} tokens",
            "unit": "tokens",
            "work": tokens,
            "flops": flops,
            "candidate": ("MaskMoE (20% of ids see 4 experts)", steps["maskmoe"]),
            "baseline": ("core SMoE top-1, same weights", steps["smoe"]),
        }
    ]


def measure_speed(rounds: int = 10, warmup: int = 2, **shape) -> dict:
    """Median seconds per forward+backward of both layers, interleaved, on 1 thread, and the
    ratio smoe / maskmoe (>= 1: MaskMoE is as fast)."""
    import statistics
    import time

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fns = layer_step_functions(**shape)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for round_idx in range(warmup + rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                if round_idx >= warmup:
                    times[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    median = {name: statistics.median(t) for name, t in times.items()}
    defaults = dict(hidden_size=256, expert_hidden_size=512, num_experts=8, tokens=8 * 256)
    return {
        "shape": ", ".join(f"{k}={v}" for k, v in (defaults | shape).items()),
        "rounds": rounds,
        "maskmoe_seconds": median["maskmoe"],
        "smoe_seconds": median["smoe"],
        "ratio": median["smoe"] / median["maskmoe"],
    }


if __name__ == "__main__":
    print(measure_speed())
