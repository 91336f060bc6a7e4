"""Continuous image tokens (survey section 2.4.1, Fig. 2 "Encoder -> Projector -> vectors"):
2x2 patches (Fuyu-style, no encoder) or a frozen tokenizer's encoder latents, mapped into the
LM's width by a linear or two-layer MLP projector (LLaVA-1.5); optionally a small resampler of
``num_queries`` learned queries with one cross-attention (Perceiver Resampler / Q-Former idea)."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """(N, L, d_in) -> (N, L', hidden): linear or MLP, then an optional resampler (L' = queries)."""

    def __init__(
        self, d_in: int, hidden: int, kind: str = "linear", num_queries: int = 0, heads: int = 4
    ):
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise ValueError(f"projector kind {kind!r}: allowed 'linear' or 'mlp'")
        if kind == "linear":
            self.proj = nn.Linear(d_in, hidden)
        else:
            self.proj = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.num_queries = num_queries
        if num_queries:
            self.queries = nn.Parameter(torch.randn(num_queries, hidden) * 0.02)
            self.cross = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.position = nn.Parameter(torch.zeros(1, 64, hidden))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.proj(features)  # (N, L, hidden)
        if not self.num_queries:
            return x
        x = x + self.position[:, : x.shape[1]]
        q = self.queries[None].expand(x.shape[0], -1, -1)  # (N, Q, hidden)
        out, _ = self.cross(q, x, x, need_weights=False)
        return out  # (N, Q, hidden)
