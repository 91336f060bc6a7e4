"""Speed of per-head RoPE against the core's single-base RoPE (``make perf`` cases).

    python -m repro_harpe.bench            # prints the two ratios (1 thread)

Both models have the same weights; the only difference is the rotary table: (B, H, T, hd) for
one base per head versus (B, 1, T, hd) broadcast over heads. The table is computed once per
forward from the position ids and shared by all layers, so per-head bases should cost nothing
measurable. Cases: one forward+backward at length 1024, and decoding 32 tokens after a
1024-token prefill with the KV cache.
"""

from __future__ import annotations

import json
import statistics
import time

import torch
from repro_core.modeling import DecoderConfig, DecoderLM
from transformers.cache_utils import DynamicCache

from .bases import uniform_bases
from .modeling import HarpeConfig, HarpeForCausalLM

SHAPE = dict(vocab_size=320, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
             num_attention_heads=8, max_position_embeddings=2048)  # fmt: skip


def model_pair(seed: int = 0) -> tuple[HarpeForCausalLM, DecoderLM]:
    """(HARPE with 8 uniform bases 1e6..5e6, the core decoder with base 5e6), same weights."""
    torch.manual_seed(seed)
    harpe = HarpeForCausalLM(HarpeConfig(**SHAPE, rope_theta_per_head=uniform_bases(1e6, 5e6, 8)))
    core = DecoderLM(DecoderConfig(**SHAPE, rope_theta=5e6))
    core.load_state_dict(harpe.state_dict())
    return harpe, core


def _train_step(model, ids):
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    return step


def _decode(model, ids, new_tokens):
    model.eval()

    @torch.no_grad()
    def run():
        cache = DynamicCache()
        out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1:].argmax(-1)
        for _ in range(new_tokens):
            out = model(input_ids=token, cache=cache, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)

    return run


def perf_cases(quick: bool = False) -> list[dict]:
    """``repro-perf`` cases: per-head bases vs one base, training step and decoding."""
    seq, new = (128, 8) if quick else (1024, 32)
    harpe, core = model_pair()
    ids = torch.randint(0, 320, (1, seq), generator=torch.Generator().manual_seed(0))
    return [
        {
            "name": f"HARPE fwd+bwd, 2 layers x 8 heads, 1x{seq} tokens",
            "unit": "tokens",
            "work": seq,
            "candidate": ("per-head RoPE bases (8 bases)", _train_step(harpe, ids)),
            "baseline": ("core RoPE, one base", _train_step(core, ids)),
        },
        {
            "name": f"HARPE decode {new} tokens after a {seq}-token prefill (KV cache)",
            "unit": "tokens",
            "work": seq + new,
            "candidate": ("per-head RoPE bases (8 bases)", _decode(harpe, ids, new)),
            "baseline": ("core RoPE, one base", _decode(core, ids, new)),
        },
    ]


def main(argv=None) -> int:
    torch.set_num_threads(1)
    out = {}
    for case in perf_cases():
        fns = [case["candidate"][1], case["baseline"][1]]
        for fn in fns:
            fn()
        times = [[], []]
        for _ in range(7):  # interleaved rounds
            for i, fn in enumerate(fns):
                start = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - start)
        ratios = [b / a for a, b in zip(*times)]  # speed of candidate relative to baseline
        out[case["name"]] = {
            "candidate_seconds": statistics.median(times[0]),
            "baseline_seconds": statistics.median(times[1]),
            "speed_ratio_median": statistics.median(ratios),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
