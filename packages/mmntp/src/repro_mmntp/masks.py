"""Attention masks of the survey's Fig. 2 (causal, prefix-LM, semi-causal) as boolean
(B, 1, T, T) matrices, True = the query (row) may attend to the key (column).

* causal: j <= i.
* prefix_lm: causal, plus every pair inside the prefix (the condition) sees each other.
* block_causal ("semi-causal"): causal, plus every pair inside the same input image span
  (the sequence builder gives images being generated span id 0, so they stay causal).

A non-causal mask lets position t see token t+1 in places; :func:`leak_free_targets` drops the
next-token targets there, so no mask can train on a token it was shown.
"""

from __future__ import annotations

import torch

MASK_KINDS = ("causal", "prefix_lm", "block_causal")


def build_mask(kind: str, prefix_len: torch.Tensor, span_id: torch.Tensor) -> torch.Tensor:
    """Args:
        kind: one of MASK_KINDS.
        prefix_len: (B,) length of each sequence's bidirectional prefix (prefix_lm).
        span_id: (B, T) image-span number per position (0 = not in an image; block_causal).
    Returns (B, 1, T, T) bool."""
    if kind not in MASK_KINDS:
        raise ValueError(f"attention mask {kind!r}: allowed {MASK_KINDS}")
    B, T = span_id.shape
    pos = torch.arange(T, device=span_id.device)
    mask = (pos[None, :] <= pos[:, None])[None].expand(B, T, T)  # (B, T, T) causal
    if kind == "prefix_lm":
        inside = pos[None] < prefix_len[:, None]  # (B, T)
        mask = mask | (inside[:, :, None] & inside[:, None, :])
    elif kind == "block_causal":
        same = (span_id[:, :, None] == span_id[:, None, :]) & (span_id[:, :, None] > 0)
        mask = mask | same
    return mask[:, None]


def leak_free_targets(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) mask -> (B, T) bool: True where position t may be trained to predict token
    t+1 (t cannot see t+1); the last position has no target."""
    B, _, T, _ = mask.shape
    t = torch.arange(T - 1, device=mask.device)
    sees_next = mask[:, 0, t, t + 1]  # (B, T-1)
    return torch.cat([~sees_next, torch.zeros(B, 1, dtype=torch.bool, device=mask.device)], 1)
