"""Finedeep (Pan et al., 2025, arXiv 2502.12928): the dense FFN cut into M x K small experts.

The FFN of every decoder layer becomes M sequential sub-layers; each sub-layer holds K small
SwiGLU experts of intermediate size F_e = F / (M K) that are all active, and a router sets how
much each expert contributes. Expert weights equal the dense FFN's in number (3 D F per layer),
so parameters and FLOPs match the dense model up to the router and the extra sub-layer norms.

The paper body could not be read (spec ``shared/papers/finedeep_and_dsmoe.md`` §2, F.*, S2.*),
so the paper's own equation numbers are unknown. The equations below are the spec's reading
(§2.3), numbered (F1)-(F6) here; every unknown is a switch of :class:`FinedeepConfig`.

Per token, with h_0 the residual stream after attention and x̂ = post_attention_layernorm(h_0):

    (F1) u_m     = RMSNorm_m(h_{m-1})  (pre-norm; u_1 = x̂, i.e. RMSNorm_1 IS post_attention_layernorm)
    (F2) z_mk    = silu(u_m W^gate_mk) ⊙ (u_m W^up_mk)                      (F_e,)  expert hidden
    (F3) e_mk    = z_mk W^down_mk                                           (D,)    expert output
    (F4) s_mk    = sigmoid(r_mk · e_mk)        router_input="expert_output" ("output-guided")
             or  sigmoid(r_mk · u_m)          router_input="sublayer_input"
    (F5) g_mk    = s_mk | s_mk / Σ_k' s_mk' | K s_mk / Σ_k' s_mk'            router_norm
    (F6) h_m     = h_{m-1} + Σ_k g_mk e_mk                                  residual per sub-layer

The block returns the delta h_M - h_0 = Σ_m Σ_k g_mk e_mk, so the decoder's ``x + mlp(...)`` is
h_M. ``residual_per_sublayer=False`` drops the h_{m-1} term of (F6): the next sub-layer sees
RMSNorm of the previous sub-layer's output and the block returns the last output y_M (layer
output h_0 + y_M).

``norm_placement="post"`` (Post-LN: normalise after each residual add instead of before each
sub-layer; the residual stream itself is normalised, as in the original Transformer):

    (F1') u_1 = x̂,  u_m = h_{m-1} (m >= 2)
    (F6') h_m = RMSNorm_m(h_{m-1} + Σ_k g_mk e_mk(u_m))           layer output h_M

and without ``residual_per_sublayer`` the only residual add is the decoder's, around the block:
y_1 = SL_1(x̂), y_m = SL_m(RMSNorm_{m-1}(y_{m-1})), layer output RMSNorm_M(h_0 + y_M). The
block returns h_M - h_0 so that the decoder's ``h_0 + mlp(...)`` is h_M. M norms either way.

Routers run in at least fp32 (outside autocast), as the core MoE router: under bf16 autocast the
gate logits and sigmoid/softmax are fp32; the gates are cast to the hidden units' dtype only
where they scale them.

Computation: per sub-layer one GEMM for the K experts' gate+up projections (they share the
input u_m, so (K, 2F_e, D) stacked weights are one (D -> 2 K F_e) matmul) and one GEMM for the
K down projections after the gates are folded into the hidden units:
Σ_k g_k (z_k W^down_k) = concat_k(g_k z_k) · stack_k(W^down_k). Routing on the expert output
uses r_k · (z_k W^down_k) = z_k · (W^down_k r_k), so the K outputs e_mk (K, N, D) are never
materialised; the tests check both identities against the equations written out in fp64.

Shapes: B batch, T tokens, D hidden, M sub-layers, K experts per sub-layer, F_e expert width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from repro_core.layers import ForwardState, RMSNorm
from repro_core.modeling import DecoderConfig, DecoderLM
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

ROUTER_INPUTS = ("expert_output", "sublayer_input")
ROUTER_ACTS = ("sigmoid", "softmax", "none")
ROUTER_NORMS = ("none", "sum_to_one", "sum_to_k")
NORM_PLACEMENTS = ("pre", "post")


class FinedeepConfig(DecoderConfig):
    """:class:`~repro_core.modeling.DecoderConfig` plus the Finedeep FFN layout and switches.

    Args:
        num_sublayers: M, expert sub-layers per FFN (depth).
        experts_per_sublayer: K, experts per sub-layer (width). ``intermediate_size`` must be a
            multiple of M * K; each expert has intermediate size ``intermediate_size // (M*K)``.
        router_input: what the gate of expert k looks at: ``"expert_output"`` (default,
            "output-guided", s = sigmoid(r_k · e_k)) or ``"sublayer_input"`` (s = sigmoid(r_k · u)).
        router_act: ``"sigmoid"`` (default), ``"softmax"`` over the K experts, or ``"none"``
            (g = 1, no router parameters: the ablation without routing).
        router_norm: ``"none"`` (default, raw sigmoid weights), ``"sum_to_one"`` (g / Σ g) or
            ``"sum_to_k"`` (K g / Σ g).
        norm_placement: ``"pre"`` (default; RMSNorm before each sub-layer, the first one is the
            decoder's post_attention_layernorm) or ``"post"`` (RMSNorm after each residual add,
            so the layer output is normalised: (F1'), (F6') in the module docstring).
        residual_per_sublayer: residual connection around each sub-layer (default True).
    """

    model_type = "finedeep"

    def __init__(
        self,
        num_sublayers: int = 2,
        experts_per_sublayer: int = 4,
        router_input: str = "expert_output",
        router_act: str = "sigmoid",
        router_norm: str = "none",
        norm_placement: str = "pre",
        residual_per_sublayer: bool = True,
        **kwargs,
    ):
        self.num_sublayers = num_sublayers
        self.experts_per_sublayer = experts_per_sublayer
        self.router_input = router_input
        self.router_act = router_act
        self.router_norm = router_norm
        self.norm_placement = norm_placement
        self.residual_per_sublayer = residual_per_sublayer
        super().__init__(**kwargs)

    @property
    def expert_hidden_size(self) -> int:
        return self.intermediate_size // (self.num_sublayers * self.experts_per_sublayer)

    def validate_shapes(self) -> None:
        super().validate_shapes()
        m, k, f = self.num_sublayers, self.experts_per_sublayer, self.intermediate_size
        if m < 1 or k < 1 or f % (m * k):
            raise ValueError(
                f"intermediate_size={f} must be a positive multiple of num_sublayers * "
                f"experts_per_sublayer = {m} * {k}"
            )
        for name, allowed in (
            ("router_input", ROUTER_INPUTS),
            ("router_act", ROUTER_ACTS),
            ("router_norm", ROUTER_NORMS),
            ("norm_placement", NORM_PLACEMENTS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is invalid: allowed {list(allowed)}"
                )


class FinedeepSubLayer(nn.Module):
    """K SwiGLU experts of width F_e on one shared input, combined by the router (F2)-(F5).

    Parameters (stacked over experts, each row a hidden unit of expert k):

    * ``gate_up_proj`` (K, 2 F_e, D): rows [0, F_e) are W^gate_k, rows [F_e, 2 F_e) are W^up_k;
    * ``down_proj`` (K, F_e, D): W^down_k (hidden unit f of expert k writes row f);
    * ``router`` (K, D): r_k, or None with ``router_act="none"``.
    """

    def __init__(self, config: FinedeepConfig):
        super().__init__()
        d, k, f = config.hidden_size, config.experts_per_sublayer, config.expert_hidden_size
        self.hidden_size, self.num_experts, self.expert_hidden_size = d, k, f
        self.router_input = config.router_input
        self.router_act = config.router_act
        self.router_norm = config.router_norm
        self.gate_up_proj = nn.Parameter(torch.empty(k, 2 * f, d))
        self.down_proj = nn.Parameter(torch.empty(k, f, d))
        self.router = None if config.router_act == "none" else nn.Parameter(torch.empty(k, d))
        self.init_parameters(config.initializer_range)

    def init_parameters(self, std: float) -> None:
        """Normal(0, std) for experts and router (called by the core's ``_init_weights``)."""
        from transformers import initialization as init  # skips tensors loaded from a checkpoint

        for p in (self.gate_up_proj, self.down_proj, self.router):
            if p is not None:
                init.normal_(p, mean=0.0, std=std)

    def hidden_activations(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F2) for all K experts in one GEMM: u (..., D) -> (silu(gate), z), each (..., K, F_e)."""
        k, f, d = self.num_experts, self.expert_hidden_size, self.hidden_size
        gate_up = F.linear(u, self.gate_up_proj.view(k * 2 * f, d))  # (..., K * 2F_e)
        gate, up = gate_up.unflatten(-1, (k, 2 * f)).chunk(2, dim=-1)  # (..., K, F_e) each
        act = F.silu(gate)
        return act, act * up

    def gates(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(F4)-(F5): u (..., D), z (..., K, F_e) -> g (..., K) in at least fp32.

        Computed outside autocast in ``promote_types(dtype, float32)``: bf16 models route in
        fp32, fp64 tests in fp64.
        """
        wide = torch.promote_types(z.dtype, torch.float32)
        with torch.autocast(device_type=z.device.type, enabled=False):
            router = self.router.to(wide)
            if self.router_input == "expert_output":
                # r_k · e_k = r_k · (z_k W^down_k) = z_k · (W^down_k r_k): one (F_e,) vector per
                # expert instead of the K outputs (..., K, D).
                probe = torch.einsum("kfd,kd->kf", self.down_proj.to(wide), router)  # (K, F_e)
                logits = (z.to(wide) * probe).sum(-1)  # (..., K)
            else:
                logits = F.linear(u.to(wide), router)  # (..., K)
            if self.router_act == "sigmoid":
                scores = torch.sigmoid(logits)  # (F4)
            else:
                scores = torch.softmax(logits, dim=-1)
            if self.router_norm == "sum_to_one":  # (F5)
                scores = scores / scores.sum(-1, keepdim=True)
            elif self.router_norm == "sum_to_k":
                scores = self.num_experts * scores / scores.sum(-1, keepdim=True)
        return scores

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Σ_k g_k E_k(u): (B, T, D) -> (B, T, D)."""
        _, z = self.hidden_activations(u)  # (B, T, K, F_e)
        if self.router is not None:
            g = self.gates(u, z).to(z.dtype)  # (B, T, K), computed in >= fp32
            z = z * g.unsqueeze(-1)  # fold g_k into expert k's hidden units
        k, f, d = self.num_experts, self.expert_hidden_size, self.hidden_size
        # (B, T, K F_e) @ (K F_e, D): the K down projections and the sum over k in one GEMM (F3)
        return z.flatten(-2) @ self.down_proj.view(k * f, d)

    def extra_repr(self) -> str:
        return (
            f"experts={self.num_experts}, {self.hidden_size} -> {self.expert_hidden_size}, "
            f"router_input={self.router_input}, router_act={self.router_act}, "
            f"router_norm={self.router_norm}"
        )


class FinedeepMLP(nn.Module):
    """The FFN of one decoder layer: M sub-layers of K experts, called ``mlp(x̂, state)``.

    ``x̂`` (B, T, D) is ``post_attention_layernorm(h_0)``; ``state.shared["residual"]`` is h_0
    (needed for pre-norm with M > 1). Returns the delta that the decoder adds to h_0.
    """

    def __init__(self, config: FinedeepConfig, layer_idx: int = 0):
        super().__init__()
        self.num_sublayers = config.num_sublayers
        self.norm_placement = config.norm_placement
        self.residual_per_sublayer = config.residual_per_sublayer
        self.sublayers = nn.ModuleList(
            FinedeepSubLayer(config) for _ in range(config.num_sublayers)
        )
        # pre: RMSNorm_1 is the decoder's post_attention_layernorm, so sub-layers 2..M add one
        # norm each; post: one norm after each of the M sub-layers.
        num_norms = (
            config.num_sublayers - 1 if config.norm_placement == "pre" else config.num_sublayers
        )
        self.norms = nn.ModuleList(
            RMSNorm(config.hidden_size, config.rms_norm_eps) for _ in range(num_norms)
        )

    def residual_stream(self, state: ForwardState | None) -> torch.Tensor:
        """h_0, the residual stream before the FFN, from ``state.shared["residual"]``."""
        if state is None or "residual" not in state.shared:
            raise ValueError(
                "FinedeepMLP with post-norm, or pre-norm with num_sublayers > 1, needs the "
                "residual stream h_0 in state.shared['residual'] (the core DecoderLayer sets it)"
            )
        return state.shared["residual"]

    def forward(self, x: torch.Tensor, state: ForwardState | None = None) -> torch.Tensor:
        """x̂ (B, T, D) -> the delta (B, T, D) that the decoder adds to h_0."""
        if self.norm_placement == "post":
            h0 = self.residual_stream(state)  # (B, T, D)
            if self.residual_per_sublayer:
                h, u = h0, x  # (F1') u_1 = x̂
                for sublayer, norm in zip(self.sublayers, self.norms):
                    h = norm(h + sublayer(u))  # (F6') h_m = RMSNorm_m(h_{m-1} + Σ_k g e)
                    u = h  # (F1') u_{m+1} = h_m
            else:
                y = self.sublayers[0](x)
                for sublayer, norm in zip(self.sublayers[1:], self.norms[:-1]):
                    y = sublayer(norm(y))
                h = self.norms[-1](h0 + y)  # the block's one residual add, then its norm
            return h - h0  # the decoder adds h_0 back: layer output h_M
        if not self.residual_per_sublayer:
            y = self.sublayers[0](x)  # u_1 = x̂ (F1)
            for sublayer, norm in zip(self.sublayers[1:], self.norms):
                y = sublayer(norm(y))
            return y
        delta = self.sublayers[0](x)  # (F1)-(F6) for m = 1, u_1 = x̂
        if self.num_sublayers > 1:
            h0 = self.residual_stream(state)
            for sublayer, norm in zip(self.sublayers[1:], self.norms):
                # h_{m-1} = h_0 + Σ_{j<m} y_j; u_m = RMSNorm_m(h_{m-1}) (F1); delta += y_m (F6)
                delta = delta + sublayer(norm(h0 + delta))
        return delta


class FinedeepForCausalLM(DecoderLM):
    """The core decoder with every FFN replaced by :class:`FinedeepMLP`."""

    config_class = FinedeepConfig
    mlp_class = FinedeepMLP


AutoConfig.register(FinedeepConfig.model_type, FinedeepConfig, exist_ok=True)
AutoModelForCausalLM.register(FinedeepConfig, FinedeepForCausalLM, exist_ok=True)


def router_parameter_count(config: FinedeepConfig) -> int:
    """Parameters Finedeep adds to the dense model with the same shape: routers + sub-layer norms.

    Per layer: M K D router weights (none with ``router_act="none"``) and (M - 1) D (pre) or
    M D (post) RMSNorm gains.
    """
    m, k, d = config.num_sublayers, config.experts_per_sublayer, config.hidden_size
    router = 0 if config.router_act == "none" else m * k * d
    norms = (m - 1 if config.norm_placement == "pre" else m) * d
    return config.num_hidden_layers * (router + norms)


__all__ = [
    "FinedeepConfig",
    "FinedeepForCausalLM",
    "FinedeepMLP",
    "FinedeepSubLayer",
    "router_parameter_count",
]
