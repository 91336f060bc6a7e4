"""Building blocks of the LLaMA-style decoder: RMSNorm, RoPE, attention, SwiGLU MLP.

Every block is weight-compatible with Hugging Face Llama (same parameter names and shapes), so a
Llama checkpoint loads into :class:`repro_core.modeling.DecoderLM` unchanged.

Shapes use B = batch, T = query length, S = key length (cache + new), D = hidden size,
H = query heads, Hkv = key/value heads, hd = head dim.

Extension points used by paper packages (see ``modeling.DecoderLM``):

* ``mlp_class(config, layer_idx)`` returns a module called as ``mlp(x, state)``;
* ``attention_class(config, layer_idx)`` returns a module called as
  ``attn(x, position_embeddings, attention_mask, past_key_values, state)``;
* ``rotary_class(config)`` returns a module called as ``rotary(x, position_ids)`` that gives
  ``(cos, sin)`` of shape (B, H or 1, T, hd): one RoPE base per head is supported;
* :class:`ForwardState` is created once per forward and handed to every block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ForwardState:
    """Per-forward scratch space shared by all layers of one model call.

    Attributes:
        input_ids: (B, T) token ids of this call, or None when called with ``inputs_embeds``.
        attention_mask: (B, S) 1 for real tokens, 0 for padding, or None.
        shared: cross-layer tensors (e.g. an attention map computed by one layer and reused by
            the next ones). Keys are chosen by the package that writes them.
        aux_losses: named auxiliary losses, already weighted. They are added to the language
            modelling loss and reported separately in the output.
    """

    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)

    def add_loss(self, name: str, value: torch.Tensor) -> None:
        """Accumulate ``value`` (a scalar tensor) under ``name``; summed over layers."""
        if name in self.aux_losses:
            self.aux_losses[name] = self.aux_losses[name] + value
        else:
            self.aux_losses[name] = value


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in at least fp32 (as HF Llama)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # at least fp32 (fp64 stays fp64, so equations can be checked in fp64)
        xf = x.to(torch.promote_types(dtype, torch.float32))
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * xf.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.variance_epsilon}"


class SwiGLUMLP(nn.Module):
    """down(silu(gate(x)) * up(x)); (B, T, D) -> (B, T, D)."""

    def __init__(self, config, layer_idx: int = 0):
        super().__init__()
        d, f = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, f, bias=config.mlp_bias)
        self.up_proj = nn.Linear(d, f, bias=config.mlp_bias)
        self.down_proj = nn.Linear(f, d, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor, state: ForwardState | None = None) -> torch.Tensor:
        # One matmul for gate and up (weights concatenated on the fly, names stay HF's): a
        # single (D -> 2F) GEMM is faster than two (D -> F) ones on CPU.
        gate, up = fused_linear(x, (self.gate_proj, self.up_proj)).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


def fused_linear(x: torch.Tensor, layers: tuple[nn.Linear, ...]) -> torch.Tensor:
    """``cat([l(x) for l in layers], -1)`` computed as one GEMM."""
    weight = torch.cat([layer.weight for layer in layers], dim=0)
    bias = None
    if layers[0].bias is not None:
        bias = torch.cat([layer.bias for layer in layers], dim=0)
    return F.linear(x, weight, bias)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, heads, T, hd) by ``cos``/``sin`` (B, heads or 1, T, hd)."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """RoPE with one base for all heads or one base per query head.

    ``config.rope_theta`` is the common base; ``config.rope_theta_per_head`` (list of H floats)
    overrides it per head. With grouped-query attention the heads sharing a key/value head must
    share a base (keys are rotated once per kv head); this is checked in the config.

    Returns ``(cos, sin)`` of shape (B, 1, T, hd) for one base, (B, H, T, hd) per head.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.register_buffer("inv_freq", self.compute_inv_freq(), persistent=False)

    def compute_inv_freq(self) -> torch.Tensor:
        """(H or 1, hd/2) inverse frequencies base^(-2i/hd), computed in fp64."""
        head_dim = self.config.head_dim
        per_head = getattr(self.config, "rope_theta_per_head", None)
        bases = torch.tensor(
            per_head if per_head else [self.config.rope_theta], dtype=torch.float64
        )
        exponent = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
        return (1.0 / (bases[:, None] ** exponent[None, :])).float()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute the table (it is not saved; ``from_pretrained`` creates it empty)."""
        self.inv_freq.copy_(self.compute_inv_freq().to(self.inv_freq.device))

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, 1, T, 1) * (1, H|1, 1, hd/2) -> (B, H|1, T, hd/2)
        pos = position_ids[:, None, :, None].float()
        freqs = pos * self.inv_freq[None, :, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, H|1, T, hd)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def kv_rotary(cos: torch.Tensor, num_kv_heads: int) -> torch.Tensor:
    """Select the per-kv-head rotary table from a per-query-head one (B, H, T, hd)."""
    if cos.shape[1] == 1:
        return cos
    group = cos.shape[1] // num_kv_heads
    return cos[:, ::group]


class Attention(nn.Module):
    """Multi-head attention with grouped-query K/V, RoPE and an optional KV cache.

    Projections have HF Llama names (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``).
    Attention itself goes through ``F.scaled_dot_product_attention``.
    """

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        d, bias = config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=bias)
        self.dropout = config.attention_dropout

    def project_qkv(self, x, position_embeddings):
        """(B, T, D) -> q (B, H, T, hd), k, v (B, Hkv, T, hd), RoPE applied to q and k."""
        B, T, _ = x.shape
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        qkv = fused_linear(x, (self.q_proj, self.k_proj, self.v_proj))  # (B, T, q + 2 kv)
        q, k, v = qkv.split((q_size, kv_size, kv_size), dim=-1)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, kv_rotary(cos, self.num_kv_heads), kv_rotary(sin, self.num_kv_heads))
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        past_key_values=None,
        state: ForwardState | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.project_qkv(x, position_embeddings)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        out = sdpa(q, k, v, attention_mask, self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)
        return self.o_proj(out)


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention; q (B, H, T, hd), k/v (B, Hkv, S, hd) -> (B, H, T, hd).

    ``attention_mask`` is None for plain causal attention over T == S, else a boolean
    (B, 1, T, S) mask where True means "may attend" (see :func:`build_attention_mask`).
    """
    gqa = q.shape[1] != k.shape[1]
    if attention_mask is None:
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=q.shape[2] > 1, enable_gqa=gqa
        )
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attention_mask, dropout_p=dropout_p, enable_gqa=gqa
    )


def build_attention_mask(
    padding_mask: torch.Tensor | None, query_len: int, key_len: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean (B, 1, T, S) mask: causal (queries are the last T of S keys) and padding.

    Returns None when plain ``is_causal`` attention is exact (no padding, no cache), so SDPA
    can take its fastest kernel. A 4-D ``padding_mask`` is a custom (B or 1, 1, T, S) mask (True
    = may attend: prefix-LM, block-causal, ...) and is returned as a bool tensor unchanged.
    """
    if padding_mask is not None and padding_mask.dim() == 4:
        if tuple(padding_mask.shape[-2:]) != (query_len, key_len):
            raise ValueError(
                f"custom 4-D attention mask has shape {tuple(padding_mask.shape)}; it must be "
                f"(B, 1, {query_len}, {key_len}) = (batch, 1, queries, keys incl. the cache)"
            )
        return padding_mask.bool()
    if padding_mask is None or bool(padding_mask.all()):
        if query_len == key_len:
            return None
        if query_len == 1:
            return None  # one new token attends to every cached key
    q_pos = torch.arange(key_len - query_len, key_len, device=device)
    k_pos = torch.arange(key_len, device=device)
    mask = (k_pos[None, :] <= q_pos[:, None])[None, None]  # (1, 1, T, S)
    if padding_mask is not None:
        mask = mask & padding_mask[:, None, None, :key_len].bool()
        # A fully masked row (a left-padding query) would give NaN; let it see itself.
        empty = ~mask.any(-1, keepdim=True)
        mask = mask | (empty & (k_pos[None, None, None, :] == q_pos[None, None, :, None]))
    return mask


def init_weights(module: nn.Module, std: float) -> None:
    """Normal(0, std) for linear and embedding weights, zeros for biases, ones for norms.

    Uses ``transformers.initialization``, whose functions skip tensors already loaded from a
    checkpoint, so ``from_pretrained`` only initialises what the checkpoint lacks. Modules with
    non-persistent buffers (RoPE tables) recompute them through ``reset_buffers()``; modules
    holding raw ``nn.Parameter`` tensors initialise them in ``init_parameters(std)``.
    """
    from transformers import initialization as init

    if isinstance(module, nn.Linear):
        init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, RMSNorm):
        init.ones_(module.weight)
    if hasattr(module, "reset_buffers"):
        module.reset_buffers()
    if hasattr(module, "init_parameters"):  # modules with raw nn.Parameters (stacked experts)
        module.init_parameters(std)


def attention_flops_per_token(num_heads: int, head_dim: int, context_len: int) -> float:
    """Forward FLOPs of QK^T and AV for one token attending to ``context_len`` keys."""
    return 2.0 * 2.0 * num_heads * head_dim * context_len


__all__ = [
    "ForwardState",
    "RMSNorm",
    "SwiGLUMLP",
    "fused_linear",
    "RotaryEmbedding",
    "Attention",
    "apply_rotary",
    "rotate_half",
    "kv_rotary",
    "sdpa",
    "build_attention_mask",
    "init_weights",
    "attention_flops_per_token",
]
