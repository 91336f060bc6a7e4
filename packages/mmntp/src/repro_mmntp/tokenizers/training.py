"""Build an image tokenizer from its config section, train it, cache it on disk.

The cache key is a hash of the tokenizer section, the data section and the seed, so the arms of
a grid that share a tokenizer (every arm except the tokenizer ablations) train it once per seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .fsq import FSQTokenizer
from .kmeans import KMeansPaletteTokenizer
from .rvq import ResidualVQTokenizer
from .vq import VQTokenizer


def build_tokenizer(cfg) -> torch.nn.Module:
    """A fresh tokenizer for a :class:`~repro_mmntp.config.TokenizerSection`."""
    if cfg.kind == "vq":
        return VQTokenizer(
            cfg.num_codes, cfg.latent_dim, cfg.ema_decay, cfg.commitment, cfg.dead_code_threshold
        )
    if cfg.kind == "rvq":
        return ResidualVQTokenizer(
            cfg.num_codes, cfg.latent_dim, cfg.ema_decay, cfg.commitment, cfg.dead_code_threshold
        )
    if cfg.kind == "fsq":
        return FSQTokenizer(tuple(cfg.fsq_levels))
    if cfg.kind == "kmeans":
        return KMeansPaletteTokenizer(cfg.num_codes)
    raise ValueError(f"tokenizer.kind={cfg.kind!r}: allowed vq, fsq, rvq, kmeans")


def train_tokenizer(tok: torch.nn.Module, images: np.ndarray, cfg, seed: int, log=None) -> dict:
    """Fit ``tok`` on (N, 8, 8) training images; returns {seconds, images_per_second, ...}."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    if isinstance(tok, KMeansPaletteTokenizer):
        info = tok.fit(images, seed)
        seconds = time.perf_counter() - start
        return {**info, "seconds": seconds, "images_per_second": len(images) / max(seconds, 1e-9)}
    data = torch.as_tensor(images)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(tok.parameters(), lr=cfg.lr)
    tok.train()
    last = {}
    for step in range(cfg.steps):
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
        loss, last = tok.loss(data[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and (step + 1) % max(1, cfg.steps // 5) == 0:
            log(
                f"tokenizer step {step + 1}/{cfg.steps} "
                + " ".join(f"{k}={v:.4f}" for k, v in last.items())
            )
    tok.eval()
    seconds = time.perf_counter() - start
    return {
        **{f"final_{k}": v for k, v in last.items()},
        "seconds": seconds,
        "images_per_second": cfg.steps * cfg.batch_size / max(seconds, 1e-9),
    }


def tokenizer_key(tok_cfg, data_cfg, seed: int) -> str:
    blob = json.dumps(
        {
            "tokenizer": dataclasses.asdict(tok_cfg),
            "data": dataclasses.asdict(data_cfg),
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_tokenizer(
    tok_cfg, data_cfg, seed: int, images: np.ndarray, cache_dir: Path | None, log=None
):
    """(trained tokenizer, training info); loaded from ``cache_dir`` when trained before."""
    tok = build_tokenizer(tok_cfg)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{tok_cfg.kind}-{tokenizer_key(tok_cfg, data_cfg, seed)}.pt"
        if path.is_file():
            blob = torch.load(path, weights_only=True)
            tok.load_state_dict(blob["state"])
            tok.eval()
            return tok, {**json.loads(blob["info"]), "cached": True}
    info = train_tokenizer(tok, images, tok_cfg, seed, log)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"state": tok.state_dict(), "info": json.dumps(info)}, tmp)
        os.replace(tmp, path)
    return tok, {**info, "cached": False}
