"""HARPE: one RoPE base per attention head (Lian et al., arXiv 2412.07171, COLING 2025).

The whole change is the rotary table. Standard RoPE (paper Eqs. 1-5) rotates dimension pair i of
every head by m * theta_i with theta_i = b^(-2(i-1)/d). HARPE (Eqs. 6-8) gives head h its own
base b_h:

    theta_{h,i} = b_h^(-2(i-1)/d),   R_{Theta_h, m} = diag(R(m theta_{h,1}), ..., R(m theta_{h,d/2}))

and trains directly at the target length in one stage (no interpolation, no attention scaling).
The same head -> base map is used in every layer (the paper lists one base per head index).

The map lives in the config (``rope_theta_per_head``, the core's rotary extension point), so
``save_pretrained`` / ``from_pretrained`` keep it. The same rotary class also carries the
long-context baselines of the paper through ``transformers``' own RoPE initialisers
(``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS``): position interpolation (``linear``)
and YaRN (``yarn``), applied to every head's base.

Grouped-query attention: keys are rotated once per key/value head, so the query heads of one
KV group must share a base; the core config raises otherwise (use MHA, or per-group bases:
``repro_harpe.config`` option ``rope_base_grouping=per_kv_group``).
"""

from __future__ import annotations

import torch
from repro_core.layers import RotaryEmbedding
from repro_core.modeling import DecoderConfig, DecoderLM
from transformers import AutoConfig, AutoModelForCausalLM

SCALING_TYPES = ("default", "linear", "yarn")


class HarpeConfig(DecoderConfig):
    """:class:`~repro_core.modeling.DecoderConfig` plus the long-context RoPE settings.

    Args:
        rope_theta_per_head: H bases b_h (HARPE); None = ``rope_theta`` for every head (ABF).
        rope_scaling_params: None, or ``{"rope_type": "linear" | "yarn", "factor": s,
            "original_max_position_embeddings": L0, ...}`` in the format of ``transformers``'
            RoPE parameters (PI and YaRN baselines); applied to every head's base.
        harpe_scheme: how the bases were chosen (``single``, ``uniform-ascending``,
            ``uniform-descending``, ``peak-valley``); a record, not used by the forward.
    """

    model_type = "repro_harpe"

    def __init__(
        self,
        rope_scaling_params: dict | None = None,
        harpe_scheme: str = "single",
        **kwargs,
    ):
        self.rope_scaling_params = dict(rope_scaling_params) if rope_scaling_params else None
        self.harpe_scheme = harpe_scheme
        super().__init__(**kwargs)
        if self.rope_scaling_params is not None:
            kind = self.rope_scaling_params.get("rope_type", "default")
            if kind not in SCALING_TYPES:
                raise ValueError(
                    f"rope_scaling_params rope_type={kind!r} is not supported; allowed {SCALING_TYPES}"
                )
            if kind != "default" and "factor" not in self.rope_scaling_params:
                raise ValueError(f"rope_scaling_params {self.rope_scaling_params} needs a 'factor'")

    def head_bases(self) -> list[float]:
        """b_h for h = 0..H-1 (the common base repeated when there is no per-head map)."""
        if self.rope_theta_per_head:
            return [float(b) for b in self.rope_theta_per_head]
        return [float(self.rope_theta)] * self.num_attention_heads


def _hf_inv_freq(config: HarpeConfig, base: float, device=None) -> tuple[torch.Tensor, float]:
    """(hd/2,) inverse frequencies and the cos/sin scale of one base under ``rope_scaling_params``,
    computed by ``transformers``' own initialiser for that RoPE type (PI, YaRN)."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = dict(config.rope_scaling_params) | {"rope_theta": float(base)}
    hf = LlamaConfig(
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters=params,
    )
    inv_freq, scale = ROPE_INIT_FUNCTIONS[params["rope_type"]](hf, device)
    return inv_freq.float(), float(scale)


class HarpeRotaryEmbedding(RotaryEmbedding):
    """Per-head RoPE tables: ``(cos, sin)`` of shape (B, H, T, hd) (or (B, 1, T, hd) when every
    head has the same base), optionally under PI / YaRN scaling."""

    def compute_inv_freq(self) -> torch.Tensor:
        c = self.config
        scaling = getattr(c, "rope_scaling_params", None)
        kind = (scaling or {}).get("rope_type", "default")
        self.attention_scaling = 1.0
        if kind == "default":
            # Eq. 6: theta_{h,i} = b_h^(-2(i-1)/d), (H or 1, hd/2), in fp64 as the core does,
            # so all bases equal reproduces the single-base table bit for bit.
            return super().compute_inv_freq()
        bases = c.rope_theta_per_head or [c.rope_theta]
        rows, scales = [], set()
        for base in bases:  # PI / YaRN of each head's base, by transformers' initialiser
            inv_freq, scale = _hf_inv_freq(c, base)
            rows.append(inv_freq)
            scales.add(scale)
        if len(scales) != 1:  # YaRN's scale depends on the factor only, never on the base
            raise ValueError(f"per-head attention scales differ: {sorted(scales)}")
        self.attention_scaling = scales.pop()
        return torch.stack(rows)  # (H or 1, hd/2)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor):
        # (B, H|1, T, hd): the rotation angles m * theta_{h,i} of Eq. 7 for every head at once,
        # computed once per forward and shared by all layers (same map in every layer).
        cos, sin = super().forward(x, position_ids)
        if self.attention_scaling != 1.0:  # YaRN's sqrt(1/t) temperature on q.k (via cos/sin)
            cos, sin = cos * self.attention_scaling, sin * self.attention_scaling
        return cos, sin


class HarpeForCausalLM(DecoderLM):
    """The core decoder with per-head (and optionally PI / YaRN scaled) RoPE.

    Everything but the rotary table is the core's ``DecoderLM``: attention rotates q and k with
    the (B, H, T, hd) table (``repro_core.layers.apply_rotary``), so head h sees
    R_{Theta_h, m} q and R_{Theta_h, n} k, and q.k depends on m - n only (Eq. 8).
    """

    config_class = HarpeConfig
    rotary_class = HarpeRotaryEmbedding


AutoConfig.register(HarpeConfig.model_type, HarpeConfig, exist_ok=True)
AutoModelForCausalLM.register(HarpeConfig, HarpeForCausalLM, exist_ok=True)


def set_rope(model: HarpeForCausalLM, **changes) -> HarpeForCausalLM:
    """Change the RoPE settings of a model in place (``rope_theta``, ``rope_theta_per_head``,
    ``rope_scaling_params``, ``max_position_embeddings``, ``harpe_scheme``) and rebuild its table;
    the weights are untouched (continued training from a base checkpoint)."""
    allowed = {
        "rope_theta",
        "rope_theta_per_head",
        "rope_scaling_params",
        "max_position_embeddings",
        "harpe_scheme",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"set_rope: unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
    config = model.config
    for key, value in changes.items():
        setattr(config, key, value)
    config.validate_shapes()
    rotary = model.model.rotary_emb
    rotary.inv_freq = rotary.compute_inv_freq().to(rotary.inv_freq.device)
    return model


__all__ = [
    "SCALING_TYPES",
    "HarpeConfig",
    "HarpeForCausalLM",
    "HarpeRotaryEmbedding",
    "set_rope",
]
