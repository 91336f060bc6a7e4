"""UniAttn (arXiv 2502.00439): softmax unification across the layers of a superblock.

Consecutive decoder layers are grouped into *superblocks* ``{r, r+1, ..., r+g-1}``. The first
layer ``r`` (the *root*) computes its attention probabilities explicitly,

    P_r = softmax(Q_r K_r^T / sqrt(hd) + M)                                    (Eq. 1)

and the other layers ``l`` of the superblock (the *reusing* layers) use them with their own
values and output projection, plus a linear compensation of their normalised input
``u_l = input_layernorm(x_l)`` (the tensor that feeds q/k/v):

    a_l = o_proj_l(P_r @ V_l) + W_c^l u_l                                      (Eq. 2)
    x_l + a_l -> residual stream (the MLP half of the layer is unchanged)

Grouping (official rule, 0-based layers): layer ``l`` computes its own softmax iff
``(l - start) % group_size == 0 or l < start or l >= end``; every other layer reuses the
probabilities of ``start + ((l - start) // group_size) * group_size``.

Unlike the official code, the savings are real: a reusing layer has no ``q_proj``/``k_proj``,
computes neither Q nor K nor a softmax, and caches only V (its cache layer holds zero-width
keys). ``uniattn_sharing="kv"`` gives the paper's cross-layer KV-sharing baseline (CLA) on the
same groups: reusing layers keep their own Q and o_proj and attend to the root's cached K/V.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from repro_core.layers import (
    Attention,
    apply_rotary,
    attention_flops_per_token,
    fused_linear,
    sdpa,
)
from repro_core.modeling import DecoderConfig, DecoderLM
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

SHARING_MODES = ("softmax", "kv")


class UniAttnConfig(DecoderConfig):
    """:class:`~repro_core.modeling.DecoderConfig` plus the superblock grouping.

    Args:
        uniattn_group_size: superblock size g (official ``grouping_idx``); 1 = no unification.
        uniattn_start: first layer of the first superblock b (``grouping_begin_idx``).
        uniattn_end: layers ``>= end`` are untouched (``grouping_end_idx``, exclusive).
        uniattn_sharing: ``"softmax"`` = UniAttn (share P_root); ``"kv"`` = cross-layer KV
            sharing (CLA baseline: share the root's post-RoPE K and V).
        uniattn_compensation: add ``W_c u_l`` in reusing layers (``False`` = the paper's
            "softmax unification only" ablation).
        uniattn_drop_unused_qk: reusing layers have no q_proj/k_proj (True, the efficient path).
            False keeps them (unused, no gradient) so that an official checkpoint loads verbatim.
        uniattn_block_size: query block of the root's explicit causal softmax (see
            :func:`causal_probs`; 0 = one T x S block). Changes speed only, not the result.
    """

    model_type = "repro_uniattn"

    def __init__(
        self,
        uniattn_group_size: int = 1,
        uniattn_start: int = 0,
        uniattn_end: int = 0,
        uniattn_sharing: str = "softmax",
        uniattn_compensation: bool = True,
        uniattn_drop_unused_qk: bool = True,
        uniattn_block_size: int = 128,
        **kwargs,
    ):
        self.uniattn_group_size = int(uniattn_group_size)
        self.uniattn_start = int(uniattn_start)
        self.uniattn_end = int(uniattn_end)
        self.uniattn_sharing = uniattn_sharing
        self.uniattn_compensation = bool(uniattn_compensation)
        self.uniattn_drop_unused_qk = bool(uniattn_drop_unused_qk)
        self.uniattn_block_size = int(uniattn_block_size)
        super().__init__(**kwargs)
        if self.uniattn_group_size < 1:
            raise ValueError(f"uniattn_group_size={uniattn_group_size} must be >= 1")
        if self.uniattn_start < 0 or self.uniattn_end < 0:
            raise ValueError(
                f"uniattn_start={uniattn_start}, uniattn_end={uniattn_end} must be >= 0"
            )
        if uniattn_sharing not in SHARING_MODES:
            raise ValueError(
                f"uniattn_sharing={uniattn_sharing!r} is invalid: allowed {' | '.join(SHARING_MODES)}"
            )

    def root_of(self, layer_idx: int) -> int | None:
        """The root whose attention this layer reuses, or None if it computes its own."""
        g, b, e = self.uniattn_group_size, self.uniattn_start, self.uniattn_end
        if layer_idx < b or layer_idx >= e or (layer_idx - b) % g == 0:
            return None
        return b + ((layer_idx - b) // g) * g

    def reusing_layers(self) -> dict[int, int]:
        """``{reusing layer: its root}`` in ascending layer order."""
        out = {}
        for layer in range(self.num_hidden_layers):
            root = self.root_of(layer)
            if root is not None:
                out[layer] = root
        return out

    def superblocks(self) -> list[list[int]]:
        """Superblocks with at least one reusing layer, root first."""
        groups: dict[int, list[int]] = {}
        for layer, root in self.reusing_layers().items():
            groups.setdefault(root, [root]).append(layer)
        return list(groups.values())


def causal_scores_mask(attention_mask, query_len: int, key_len: int, device) -> torch.Tensor | None:
    """Boolean (B|1, 1, T, S) mask (True = may attend) for an explicit softmax.

    ``attention_mask`` is the core's mask (``build_attention_mask``); None there means plain
    causal attention (T == S) or one new token attending to every cached key (T == 1).
    """
    if attention_mask is not None:
        return attention_mask
    if query_len == 1:
        return None
    q_pos = torch.arange(key_len - query_len, key_len, device=device)
    k_pos = torch.arange(key_len, device=device)
    return (k_pos[None, :] <= q_pos[:, None])[None, None]


class ProbBlock(NamedTuple):
    """Attention probabilities of queries ``start:end`` over keys ``:keys``, stored grouped by
    kv head as (B, Hkv, G * (end - start), keys) with G = H / Hkv query heads per kv head."""

    start: int
    end: int
    keys: int
    probs: torch.Tensor


def causal_probs(
    q: torch.Tensor,
    k: torch.Tensor,
    attention_mask: torch.Tensor | None,
    block_size: int = 0,
    dropout: float = 0.0,
) -> list[ProbBlock]:
    """P = softmax(Q K^T / sqrt(hd) + M) (Eq. 1) as a list of :class:`ProbBlock`.

    q (B, H, T, hd), k (B, Hkv, S, hd). Plain causal attention (``attention_mask`` None, T == S)
    is split into query blocks of ``block_size`` that only see the keys up to their last query,
    which skips most of the masked upper triangle (the work SDPA's causal kernel also skips):
    the QK^T and every layer's P V cost ~(1/2 + 1/(2n)) of the full T x S products for n blocks.
    Otherwise (a padding mask, a cache prefix, decoding, ``block_size`` 0) one block holds all.
    """
    B, H, T, hd = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    G = H // Hkv
    q = q * (1.0 / math.sqrt(hd))  # scale the (T, hd) queries, not the (T, S) scores
    softmax_dtype = torch.promote_types(q.dtype, torch.float32)  # fp32 for bf16/fp16, fp64 kept
    if attention_mask is None and T == S and 0 < block_size < T:
        bounds = [(a, min(a + block_size, T)) for a in range(0, T, block_size)]
    else:
        bounds = [(0, T)]
    mask = causal_scores_mask(attention_mask, T, S, q.device)  # (B|1, 1, T, S) or None
    blocks = []
    for a, b in bounds:
        keys = b + (S - T)  # queries a:b never see a key after the last one's position
        q_blk = q[:, :, a:b].reshape(B, Hkv, G * (b - a), hd)  # heads of a kv group adjacent
        scores = q_blk @ k[:, :, :keys].transpose(-1, -2)  # (B, Hkv, G * (b - a), keys)
        if mask is not None:
            blk_mask = mask[:, :, a:b, :keys]  # (B|1, 1, b - a, keys)
            scores.view(B, Hkv, G, b - a, keys).masked_fill_(~blk_mask[:, :, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(q.dtype)
        if dropout:
            probs = F.dropout(probs, dropout)
        blocks.append(ProbBlock(a, b, keys, probs))
    return blocks


def probs_times_values(blocks: list[ProbBlock], v: torch.Tensor) -> torch.Tensor:
    """P @ V for blocked probabilities: v (B, Hkv, S, hd) -> (B, H, T, hd)."""
    B, Hkv, _, hd = v.shape
    outs = []
    for blk in blocks:
        out = blk.probs.to(v.dtype) @ v[:, :, : blk.keys]  # (B, Hkv, G * (end - start), hd)
        outs.append(out.view(B, Hkv, -1, blk.end - blk.start, hd))  # (B, Hkv, G, t, hd)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=3)
    return out.flatten(1, 2)  # (B, H, T, hd)


def dense_probs(blocks: list[ProbBlock], num_heads: int) -> torch.Tensor:
    """The blocks as one (B, H, T, S) tensor (zeros where a block saw no key): for inspection."""
    B, Hkv = blocks[0].probs.shape[:2]
    T, S = blocks[-1].end, blocks[-1].keys
    G = num_heads // Hkv
    full = blocks[0].probs.new_zeros(B, Hkv, G, T, S)
    for blk in blocks:
        t = blk.end - blk.start
        full[:, :, :, blk.start : blk.end, : blk.keys] = blk.probs.view(B, Hkv, G, t, blk.keys)
    return full.flatten(1, 2)


class Compensation(nn.Module):
    """``u @ weight.T`` with ``weight`` (out = D, in = D), the nn.Linear layout (official
    ``v2_proj``). A raw parameter (not nn.Linear) so that it starts at zero, not random, when
    a base checkpoint is loaded: a zero compensation leaves unification alone unchanged."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = None  # no bias, as the official v2_proj of LLaMA

    def init_parameters(self, std: float) -> None:
        from transformers import initialization as init

        init.zeros_(self.weight)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return F.linear(u, self.weight)


class UniAttnAttention(Attention):
    """Attention of one layer: a normal layer, a root that publishes P (or K/V), or a reusing
    layer. Called as ``attn(u, (cos, sin), mask, cache, state) -> (B, T, D)``."""

    def __init__(self, config: UniAttnConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.sharing = config.uniattn_sharing
        self.root = config.root_of(layer_idx)
        self.publishes = layer_idx in set(config.reusing_layers().values())
        self.block_size = config.uniattn_block_size
        self.compensation = None
        if self.root is not None:
            d = config.hidden_size
            if self.sharing == "softmax":
                if config.uniattn_drop_unused_qk:
                    del self.q_proj, self.k_proj  # never used: P comes from the root
                if config.uniattn_compensation:
                    self.compensation = Compensation(d, d)
            else:  # CLA: own queries, the root's keys and values
                del self.k_proj, self.v_proj

    @property
    def role(self) -> str:
        if self.root is not None:
            return "reusing"
        return "root" if self.publishes else "plain"

    def forward(self, x, position_embeddings, attention_mask, past_key_values=None, state=None):
        if self.root is not None:
            if self.sharing == "softmax":
                return self.forward_reusing_softmax(x, attention_mask, past_key_values, state)
            return self.forward_reusing_kv(x, position_embeddings, attention_mask, state)
        if not self.publishes:
            return super().forward(x, position_embeddings, attention_mask, past_key_values, state)
        B, T, _ = x.shape
        q, k, v = self.project_qkv(x, position_embeddings)  # (B,H,T,hd), (B,Hkv,T,hd) x 2
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)  # (B, Hkv, S, hd)
        if self.sharing == "kv":
            state.shared[f"uniattn_kv_{self.layer_idx}"] = (k, v)
            out = sdpa(q, k, v, attention_mask, self.dropout if self.training else 0.0)
        else:
            # Eq. 1, written out because SDPA does not return P; shared (not detached, so the
            # root's W_q/W_k learn from every layer of the superblock) as post-dropout blocks.
            dropout = self.dropout if self.training else 0.0
            blocks = causal_probs(q, k, attention_mask, self.block_size, dropout)
            state.shared[f"uniattn_probs_{self.layer_idx}"] = blocks
            out = probs_times_values(blocks, v)  # (B, H, T, hd)
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)
        return self.o_proj(out)

    def forward_reusing_softmax(self, x, attention_mask, past_key_values, state):
        """Eq. 2: o_proj(P_root @ V_l) + W_c u_l; no Q, no K, no softmax; V-only cache."""
        B, T, _ = x.shape
        blocks = state.shared[f"uniattn_probs_{self.root}"]  # P_root, see causal_probs
        kv_size = self.num_kv_heads * self.head_dim
        comp = None
        if self.compensation is not None and self.v_proj.bias is None:
            # V_l and W_c u_l read the same u_l: one GEMM (B, T, Hkv*hd + D)
            v, comp = fused_linear(x, (self.v_proj, self.compensation)).split(
                (kv_size, x.shape[-1]), dim=-1
            )
        else:
            v = self.v_proj(x)
            if self.compensation is not None:
                comp = self.compensation(x)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        if past_key_values is not None:
            # zero-width keys: the cache layer holds V only (no K bytes)
            _, v = past_key_values.update(v[..., :0], v, self.layer_idx)  # v (B, Hkv, S, hd)
        out = probs_times_values(blocks, v)  # (B, H, T, hd)
        out = self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))
        if comp is not None:
            out = out + comp  # Eq. 2: W_c u_l after o_proj, before the residual add
        return out

    def forward_reusing_kv(self, x, position_embeddings, attention_mask, state):
        """CLA baseline: own queries, the root's (cached) post-RoPE keys and values (no W_c:
        a compensation exists only with ``sharing="softmax"``)."""
        B, T, _ = x.shape
        k, v = state.shared[f"uniattn_kv_{self.root}"]
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        q = apply_rotary(q, cos, sin)
        out = sdpa(q, k, v, attention_mask, self.dropout if self.training else 0.0)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))

    def attention_flops_per_token(self, seq_len: int) -> float:
        """QK^T + PV, or PV only for a layer that reuses P."""
        full = attention_flops_per_token(self.num_heads, self.head_dim, seq_len)
        return full / 2 if (self.root is not None and self.sharing == "softmax") else full


class UniAttnForCausalLM(DecoderLM):
    """The core decoder with :class:`UniAttnAttention` in every layer."""

    config_class = UniAttnConfig
    attention_class = UniAttnAttention

    def softmax_layers(self) -> list[int]:
        """Layers that compute a softmax per forward."""
        c = self.config
        reusing = c.reusing_layers() if c.uniattn_sharing == "softmax" else {}
        return [i for i in range(c.num_hidden_layers) if i not in reusing]


AutoConfig.register(UniAttnConfig.model_type, UniAttnConfig, exist_ok=True)
AutoModelForCausalLM.register(UniAttnConfig, UniAttnForCausalLM, exist_ok=True)


def kv_cache_bytes(cache) -> int:
    """Bytes held by every tensor of a ``DynamicCache`` (keys + values of all layers)."""
    total = 0
    for layer in cache.layers:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    return total


__all__ = [
    "SHARING_MODES",
    "Compensation",
    "ProbBlock",
    "causal_probs",
    "dense_probs",
    "probs_times_values",
    "UniAttnAttention",
    "UniAttnConfig",
    "UniAttnForCausalLM",
    "kv_cache_bytes",
]
