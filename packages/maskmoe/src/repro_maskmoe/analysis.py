"""What the MaskMoE reproduction measures besides perplexity (spec §2.6):

* loss by input-token frequency: the next-token loss at position s is attributed to the
  bucket of the *input* id x_s (the id that picks the route), with buckets by rank of the id's
  training count: ``frequent`` = top 5% of vocabulary types, ``middle`` = 5-20%, ``rare`` = the
  other 80% (unseen ids included). The edges equal the two frequent fractions of the grid, so
  under MaskMoE-5% the middle bucket is routed like rare ids and under MaskMoE-20% like frequent
  ones;
* routing fluctuation: on a fixed probe set of validation blocks, the share of (MoE layer,
  occurrence) pairs whose top-1 expert changes between consecutive snapshots taken during
  training, by bucket (:class:`RoutingProbe`, :func:`routing_fluctuation`);
* expert-load entropy: entropy of the top-1 expert distribution over the validation tokens,
  divided by log N (1 = perfectly balanced), mean over MoE layers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repro_maskmoe.modeling import record_routes, recorded_routes

BUCKETS = ("frequent", "middle", "rare")
BUCKET_EDGES = (0.05, 0.20)


@torch.no_grad()
def evaluate_routing(
    model,
    blocks: np.ndarray,
    buckets: np.ndarray,
    batch_size: int = 16,
    max_batches: int = 0,
) -> dict:
    """One pass over ``blocks`` (N, L): mean loss, loss per input-token bucket, expert load.

    Args:
        buckets: (vocab,) bucket index of each id (0..len(BUCKETS)-1).
    Returns:
        ``{"loss", "perplexity", "loss_<bucket>", "tokens_<bucket>", "load_entropy",
        "load_entropy_per_layer": [...], "tokens_per_expert": [[...] per MoE layer]}``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(blocks) if not max_batches else min(len(blocks), max_batches * batch_size)
    sums = np.zeros(len(BUCKETS))
    counts = np.zeros(len(BUCKETS))
    record_routes(model, True)
    try:
        for start in range(0, n, batch_size):
            x = torch.from_numpy(np.asarray(blocks[start : start + batch_size], dtype=np.int64))
            x = x.to(device)
            logits = model(input_ids=x).logits  # (b, L, V)
            loss = F.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), x[:, 1:], reduction="none"
            )
            bucket = buckets[x[:, :-1].cpu().numpy()].reshape(-1)  # bucket of the input id
            sums += np.bincount(
                bucket, weights=loss.double().cpu().numpy().reshape(-1), minlength=len(BUCKETS)
            )
            counts += np.bincount(bucket, minlength=len(BUCKETS))
        routes = recorded_routes(model).numpy()  # (layers, tokens)
    finally:
        record_routes(model, False)
        model.train(was_training)
    num_experts = model.config.num_experts
    loads = [np.bincount(r[r >= 0], minlength=num_experts) for r in routes]
    entropies = [load_entropy(load) for load in loads]
    mean_loss = float(sums.sum() / counts.sum())
    out = {"loss": mean_loss, "perplexity": math.exp(min(mean_loss, 50.0))}
    for i, name in enumerate(BUCKETS):
        out[f"loss_{name}"] = float(sums[i] / counts[i]) if counts[i] else float("nan")
        out[f"tokens_{name}"] = int(counts[i])
    out["load_entropy"] = float(np.mean(entropies))
    out["load_entropy_per_layer"] = [float(e) for e in entropies]
    out["tokens_per_expert"] = [[int(v) for v in load] for load in loads]
    return out


def load_entropy(tokens_per_expert: np.ndarray) -> float:
    """Entropy of the load distribution / log N: 1 = balanced, 0 = one expert takes all."""
    load = np.asarray(tokens_per_expert, dtype=np.float64)
    p = load / max(load.sum(), 1.0)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(load))) if len(load) > 1 else 1.0


@torch.no_grad()
def routing_snapshot(model, blocks: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Top-1 expert of every MoE layer at every position of ``blocks``: (layers, N*L) int64."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    record_routes(model, True)
    try:
        for start in range(0, len(blocks), batch_size):
            x = torch.from_numpy(np.asarray(blocks[start : start + batch_size], dtype=np.int64))
            model(input_ids=x.to(device))
        return recorded_routes(model).numpy()
    finally:
        record_routes(model, False)
        model.train(was_training)


def routing_fluctuation(
    snapshots: list[np.ndarray], probe_ids: np.ndarray, buckets: np.ndarray
) -> dict[str, float]:
    """Share of (layer, probe occurrence) whose top-1 expert differs between consecutive
    snapshots, averaged over the snapshot pairs; per bucket of the input id and ``all``.

    Args:
        snapshots: each (layers, T) from :func:`routing_snapshot` on the same probe blocks.
        probe_ids: (T,) the probe's input ids (the blocks flattened).
    """
    if len(snapshots) < 2:
        return {name: float("nan") for name in (*BUCKETS, "all")}
    changed = np.stack([a != b for a, b in zip(snapshots[:-1], snapshots[1:])])  # (P, layers, T)
    per_token = changed.mean(axis=(0, 1))  # (T,)
    bucket = buckets[np.asarray(probe_ids).reshape(-1)]
    out = {}
    for i, name in enumerate(BUCKETS):
        sel = bucket == i
        out[name] = float(per_token[sel].mean()) if sel.any() else float("nan")
    out["all"] = float(per_token.mean())
    return out


class RoutingProbe:
    """Trainer callback: a :func:`routing_snapshot` of the first ``num_blocks`` validation
    blocks every ``every`` steps and at the end of training, kept in ``snapshots`` and in
    ``routing_snapshots.npz`` of the run directory (rewritten atomically; a resumed run keeps
    the earlier snapshots)."""

    def __init__(self, num_blocks: int, every: int):
        self.num_blocks = int(num_blocks)
        self.every = max(1, int(every))
        self.steps: list[int] = []
        self.snapshots: list[np.ndarray] = []
        self._loaded = False

    def probe_blocks(self, trainer) -> np.ndarray:
        return np.asarray(trainer.val_blocks[: self.num_blocks])

    def _take(self, trainer, step: int) -> None:
        if not self._loaded:  # after --resume, keep what was measured before the checkpoint
            self._loaded = True
            path = Path(trainer.run_dir) / "routing_snapshots.npz"
            if path.is_file():
                with np.load(path) as old:
                    keep = old["steps"] < step
                    self.steps = [int(s) for s in old["steps"][keep]]
                    self.snapshots = list(old["routes"][keep])
        if self.steps and self.steps[-1] == step:
            return
        model = trainer.accelerator.unwrap_model(trainer.model)
        with trainer.accelerator.autocast():
            routes = routing_snapshot(
                model, self.probe_blocks(trainer), trainer.cfg.train.batch_size
            )
        self.steps.append(step)
        self.snapshots.append(routes)
        if trainer.accelerator.is_main_process:
            path = Path(trainer.run_dir) / "routing_snapshots.npz"
            tmp = path.with_name(".routing_snapshots.tmp.npz")
            np.savez(tmp, steps=np.array(self.steps), routes=np.stack(self.snapshots))
            os.replace(tmp, path)

    def on_step_end(self, trainer, step: int) -> None:
        if step % self.every == 0:
            self._take(trainer, step)

    def on_train_end(self, trainer) -> None:
        self._take(trainer, trainer.step)


__all__ = [
    "BUCKETS",
    "BUCKET_EDGES",
    "RoutingProbe",
    "evaluate_routing",
    "load_entropy",
    "routing_fluctuation",
    "routing_snapshot",
]
