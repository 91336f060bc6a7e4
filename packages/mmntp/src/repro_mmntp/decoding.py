"""Decoding with the survey's constraints (spec B.5): inside <boi> ... <eoi> only image codes,
exactly ``codes_per_image`` of them; captioning constrained to a set of candidate words.
Optional classifier-free guidance (LlamaGen): logits = u + s * (c - u)."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from .masks import build_mask


def _prompt_mask(kind: str, ids: torch.Tensor):
    """The mask of a prompt forward: prefix-LM prompts are wholly bidirectional."""
    if kind != "prefix_lm":
        return None
    B, P = ids.shape
    return build_mask("prefix_lm", torch.full((B,), P), torch.zeros(B, P, dtype=torch.long))


@torch.no_grad()
def generate_image_codes(
    model,
    prompt: torch.Tensor,
    code_range: tuple[int, int],
    codes_per_image: int,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    uncond_prompt: torch.Tensor | None = None,
    cfg_scale: float = 1.0,
    mask_kind: str = "causal",
) -> torch.Tensor:
    """Sample (B, codes_per_image) vocabulary ids, every one inside ``code_range``.

    ``prompt`` (B, P) ends with <boi>. With ``uncond_prompt`` (B, P') and ``cfg_scale`` != 1 the
    conditional and unconditional logits are mixed (classifier-free guidance)."""
    lo, hi = code_range
    streams = [(prompt, DynamicCache())]
    guided = uncond_prompt is not None and cfg_scale != 1.0
    if guided:
        streams.append((uncond_prompt, DynamicCache()))
    last = []
    for ids, cache in streams:
        out = model(
            input_ids=ids, attention_mask=_prompt_mask(mask_kind, ids), cache=cache, use_cache=True
        )
        last.append(out.logits[:, -1, lo:hi])
    codes = []
    for step in range(codes_per_image):
        logits = last[0] if not guided else last[1] + cfg_scale * (last[0] - last[1])
        logits = logits / temperature  # (B, K): only image codes can be emitted
        if top_k:
            kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        pick = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator) + lo  # (B, 1)
        codes.append(pick)
        if step + 1 < codes_per_image:
            last = [
                model(input_ids=pick, cache=cache, use_cache=True).logits[:, -1, lo:hi]
                for _, cache in streams
            ]
    return torch.cat(codes, 1)


@torch.no_grad()
def generate_latents(
    model, prompt: torch.Tensor, codes_per_image: int, mask_kind: str = "causal"
) -> torch.Tensor:
    """Continuous token prediction: regress (B, L, D) latents one position at a time, each fed
    back through the model's latent input projection (deterministic, as a direct-output head)."""
    cache = DynamicCache()
    out = model(
        input_ids=prompt,
        attention_mask=_prompt_mask(mask_kind, prompt),
        cache=cache,
        use_cache=True,
    )
    z = out.latent_pred[:, -1:]  # (B, 1, D)
    latents = [z]
    for _ in range(codes_per_image - 1):
        emb = model.latent_in(z)
        out = model(inputs_embeds=emb, cache=cache, use_cache=True)
        z = out.latent_pred[:, -1:]
        latents.append(z)
    return torch.cat(latents, 1)


@torch.no_grad()
def choose_next(
    model, batch: dict, position: torch.Tensor, candidates: torch.Tensor, mask_kind: str = "causal"
) -> torch.Tensor:
    """For each row, the candidate id with the highest logit at ``position`` (B,) (the token that
    follows it), among ``candidates`` (C,) or (B, C). Returns (B,) ids."""
    from .masks import build_mask as _mask

    kwargs = {k: batch[k] for k in ("image_features", "feature_index") if k in batch}
    mask = None
    if mask_kind != "causal":
        mask = _mask(mask_kind, batch["prefix_len"], batch["span"])
    logits = model(input_ids=batch["input_ids"], attention_mask=mask, **kwargs).logits
    rows = torch.arange(len(position))
    at = logits[rows, position]  # (B, V)
    cand = candidates if candidates.dim() == 2 else candidates[None].expand(len(position), -1)
    return cand.gather(1, at.gather(1, cand).argmax(1, keepdim=True))[:, 0]
