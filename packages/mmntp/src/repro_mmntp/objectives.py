"""Per-segment next-token losses (survey section 4.1): the plain NTP loss split by what the
target token is (structure / text / image), so a run reports held-out loss per modality.

``contribution[s] = sum of CE over targets in segment s / number of all targets``, hence
``sum_s contribution[s] == total`` exactly; ``mean[s]`` is the segment's own nats per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .tasks import SEGMENT_NAMES


def segment_losses(logits: torch.Tensor, labels: torch.Tensor, segment: torch.Tensor) -> dict:
    """Args: logits (B, T, V); labels (B, T) with -100 = no target (HF convention, shifted here);
    segment (B, T) segment id of each token.
    Returns {"total", "contribution": {name: value}, "mean": {name: value}, "count": {name: n}}
    as tensors (sums and counts, so batches can be accumulated)."""
    target = F.pad(labels[:, 1:], (0, 1), value=-100)  # (B, T): token t+1
    seg = F.pad(segment[:, 1:], (0, 1), value=0)
    valid = target != -100
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.clamp(min=0).reshape(-1), reduction="none"
    ).view(target.shape)
    ce = torch.where(valid, ce, torch.zeros_like(ce))
    n = valid.sum()
    out = {"total": ce.sum() / n, "contribution": {}, "mean": {}, "sum": {}, "count": {}}
    for k, name in enumerate(SEGMENT_NAMES):
        inside = valid & (seg == k)
        s = ce[inside].sum()
        out["sum"][name] = s
        out["count"][name] = inside.sum()
        out["contribution"][name] = s / n
        out["mean"][name] = s / inside.sum().clamp(min=1)
    return out
