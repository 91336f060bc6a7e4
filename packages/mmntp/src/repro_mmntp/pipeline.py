"""One MMNTP run from a config: data -> image tokenizer -> sequences -> decoder LM(s) -> metrics.

Used by ``repro-mmntp-train`` and by every run of the reproduction grid.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from repro_core.train import build_optimizer, lr_multiplier

from .config import MMNTPRunConfig
from .data import DigitsData, Split, augment_shifts, load_data
from .masks import build_mask, leak_free_targets
from .metrics import PixelClassifier
from .modeling import MMNTPConfig, MMNTPForCausalLM
from .objectives import segment_losses
from .tasks import SEGMENT_NAMES, SequenceBuilder, SequenceSet, collate, training_records
from .tokenizers import to_patches
from .tokenizers.training import cached_tokenizer
from .vocab import Vocabulary


@dataclass
class Context:
    """Everything a run's models are trained and evaluated on."""

    cfg: MMNTPRunConfig
    data: DigitsData
    train_pool: Split  # augmented training images
    vocab: Vocabulary
    tokenizer: torch.nn.Module
    tokenizer_info: dict
    classifier: PixelClassifier
    train_codes: np.ndarray  # (P, L)
    test_codes: np.ndarray  # (N_test, L)
    features: dict = field(default_factory=dict)  # "train"/"test" -> (N, 16, d) continuous inputs
    latents: dict = field(default_factory=dict)  # "train"/"test" -> (N, 16, D) regression targets

    @property
    def continuous_inputs(self) -> bool:
        return self.cfg.model.image_input != "codes"

    @property
    def latent_targets(self) -> bool:
        return self.cfg.model.generation_target == "latents"


@torch.no_grad()
def _encode(tok, images: np.ndarray, fn: str, batch: int = 1024) -> np.ndarray:
    x = torch.as_tensor(images)
    return torch.cat([getattr(tok, fn)(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def prepare(cfg: MMNTPRunConfig, cache_dir: Path | None = None, log=print) -> Context:
    data = load_data(cfg.data.dataset, cfg.data.test_fraction, cfg.data.split_seed)
    pool = augment_shifts(data.train, cfg.data.shift_augment)
    tok, info = cached_tokenizer(cfg.tokenizer, cfg.data, cfg.seed, pool.images, cache_dir, log)
    classifier = cached_classifier(cfg, data, cache_dir)
    ctx = Context(
        cfg,
        data,
        pool,
        Vocabulary(tok.num_codes),
        tok,
        info,
        classifier,
        _encode(tok, pool.images, "encode"),
        _encode(tok, data.test.images, "encode"),
    )
    if ctx.continuous_inputs:
        if cfg.model.image_input == "patches":
            ctx.features = {
                "train": to_patches(torch.as_tensor(pool.images)),
                "test": to_patches(torch.as_tensor(data.test.images)),
            }
        else:  # the frozen tokenizer encoder (compositional: frozen encoder -> projector -> LM)
            ctx.features = {
                "train": torch.as_tensor(_encode(tok, pool.images, "latents")),
                "test": torch.as_tensor(_encode(tok, data.test.images, "latents")),
            }
    if ctx.latent_targets:
        ctx.latents = {
            "train": torch.as_tensor(_encode(tok, pool.images, "latents")),
            "test": torch.as_tensor(_encode(tok, data.test.images, "latents")),
        }
    return ctx


def cached_classifier(
    cfg: MMNTPRunConfig, data: DigitsData, cache_dir: Path | None
) -> PixelClassifier:
    """The pixel classifier of the split, fitted once per split and cached next to tokenizers."""
    key = f"classifier-{cfg.data.dataset}-{cfg.data.test_fraction}-{cfg.data.split_seed}.npz"
    path = Path(cache_dir) / key if cache_dir is not None else None
    if path is not None and path.is_file():
        blob = np.load(path)
        return PixelClassifier(coef=blob["coef"], intercept=blob["intercept"])
    clf = PixelClassifier(data.train.images, data.train.labels)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(tmp, coef=clf.coef, intercept=clf.intercept)
        os.replace(tmp, path)
    return clf


def build_model(ctx: Context, seed: int) -> MMNTPForCausalLM:
    m = ctx.cfg.model
    torch.manual_seed(seed)
    kwargs = m.decoder_kwargs(len(ctx.vocab), max_position_embeddings=256)
    config = MMNTPConfig(
        code_start=ctx.vocab.code_start,
        num_codes=ctx.vocab.num_codes,
        codes_per_image=ctx.tokenizer.codes_per_image,
        feature_dim=int(ctx.features["train"].shape[-1]) if ctx.features else 0,
        projector=m.projector,
        resampler_queries=m.resampler_queries,
        latent_dim=int(ctx.latents["train"].shape[-1]) if ctx.latents else 0,
        bos_token_id=ctx.vocab.bos,
        eos_token_id=ctx.vocab.eos,
        pad_token_id=ctx.vocab.pad,
        **kwargs,
    )
    return MMNTPForCausalLM(config)


def sequences(ctx: Context, split: str, tasks, seed: int) -> SequenceSet:
    """Training (augmented pool) or held-out (test) sequences of the given tasks."""
    t = ctx.cfg.task
    if split == "train":
        codes, labels, attrs = ctx.train_codes, ctx.train_pool.labels, ctx.train_pool.attributes
        dropout = t.condition_dropout
    else:
        codes, labels, attrs = ctx.test_codes, ctx.data.test.labels, ctx.data.test.attributes
        dropout = 0.0
    rng = np.random.default_rng(seed)
    records = training_records(
        SequenceBuilder(ctx.vocab, codes),
        labels,
        attrs,
        tasks,
        t.paraphrase,
        rng,
        t.icl_ways,
        t.icl_shots,
        dropout,
    )
    return SequenceSet.from_records([r for task in tasks for r in records[task]])


def model_inputs(ctx: Context, s: SequenceSet, idx: np.ndarray, split: str) -> dict:
    """A collated batch with the attention mask of the run and leak-free labels."""
    b = collate(
        s,
        idx,
        ctx.continuous_inputs,
        ctx.features.get(split),
        ctx.latent_targets,
        ctx.latents.get(split),
    )
    kind = ctx.cfg.model.attention
    if kind != "causal":
        mask = build_mask(kind, b["prefix_len"], b["span"])
        ok = leak_free_targets(mask)  # position t may predict t+1
        token_ok = torch.cat([torch.zeros_like(ok[:, :1]), ok[:, :-1]], 1)  # token j = t+1
        b["labels"] = b["labels"].masked_fill(~token_ok, -100)
        if "latent_target_index" in b:
            b["latent_target_index"] = b["latent_target_index"].masked_fill(~ok, -1)
        b["attention_mask"] = mask
    return b


def forward(model, b: dict):
    keys = (
        "input_ids",
        "attention_mask",
        "labels",
        "image_features",
        "feature_index",
        "latent_inputs",
        "latent_index",
        "latent_target_index",
    )
    return model(**{k: b[k] for k in keys if k in b})


def train_lm(ctx: Context, s: SequenceSet, seed: int, log=print) -> tuple[MMNTPForCausalLM, dict]:
    """AdamW with the core's warmup + cosine schedule on random batches of ``s``."""
    tc = ctx.cfg.train
    model = build_model(ctx, seed).train()
    opt = build_optimizer(model, tc)
    rng = np.random.default_rng(seed + 1)
    tokens, start, history = 0, time.perf_counter(), []
    for step in range(tc.max_steps):
        for g in opt.param_groups:
            g["lr"] = tc.lr * lr_multiplier(step, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio)
        b = model_inputs(ctx, s, rng.integers(0, len(s), tc.batch_size), "train")
        out = forward(model, b)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        tokens += b["input_ids"].numel()
        if tc.log_every and ((step + 1) % tc.log_every == 0 or step + 1 == tc.max_steps):
            history.append({"step": step + 1, "loss": out.loss.item()})
            if tc.progress:
                log(f"step {step + 1}/{tc.max_steps} loss {out.loss.item():.4f}")
    seconds = time.perf_counter() - start
    model.eval()
    return model, {
        "train_seconds": seconds,
        "train_tokens_per_second": tokens / max(seconds, 1e-9),
        "final_train_loss": history[-1]["loss"] if history else float("nan"),
        "history": history,
    }


@torch.no_grad()
def held_out_losses(ctx: Context, model, s: SequenceSet, batch: int = 256) -> dict:
    """Per-segment held-out CE (nats per target token) and, with latent targets, the latent MSE."""
    sums = {n: 0.0 for n in SEGMENT_NAMES}
    counts = {n: 0 for n in SEGMENT_NAMES}
    mse_sum, mse_n = 0.0, 0
    for i in range(0, len(s), batch):
        b = model_inputs(ctx, s, np.arange(i, min(i + batch, len(s))), "test")
        out = forward(model, b)
        seg = segment_losses(out.logits, b["labels"], b["segment"])
        for n in SEGMENT_NAMES:
            sums[n] += float(seg["sum"][n])
            counts[n] += int(seg["count"][n])
        if out.latent_loss is not None:
            k = int((b["latent_target_index"] >= 0).sum())
            mse_sum, mse_n = mse_sum + float(out.latent_loss) * k, mse_n + k
    total = sum(counts.values())
    out = {
        f"heldout_{n}_ce": sums[n] / counts[n] if counts[n] else float("nan") for n in SEGMENT_NAMES
    }
    out["heldout_ce"] = sum(sums.values()) / max(total, 1)
    if mse_n:
        out["heldout_latent_mse"] = mse_sum / mse_n
    return out
