"""DSMoE (Lv et al., 2025, arXiv 2502.12455): a trained dense FFN cut into sigmoid-gated experts.

The SwiGLU FFN of each layer, ``h = (silu(x W_gate) ⊙ x U_up) V_down`` (Eq. 5), is split along
its intermediate dimension D into n contiguous blocks of D/n units (Eq. 6): expert i owns rows
``[i D/n, (i+1) D/n)`` of ``gate_proj``/``up_proj`` and the same columns of ``down_proj``. The
experts are therefore the dense weights themselves (same tensors, same names); the only new
parameter is a bias-free router Y (n x d) per layer. Per token x (the FFN input, B T d):

    (7)   q_i = σ(x Y_i),   G(q) = q if q > τ else 0,   h = Σ_i o_i · G(q_i),
          o_i = (silu(x W_i) ⊙ x U_i) V_i
    (8)   h ← n · h / Σ_i 1[q_i > τ]                  (count clamped to >= 1, constant in backward)
    (10)  S(q) = sg(G(q)) + q - sg(q)                 (straight-through: forward G, backward 1)
    (11)  h = Σ_i o_i · S(q_i)                        (training)
    (19)  L = L_LM + λ · (1 / (L n)) Σ_l Σ_i G(q_i^l)  (mean over tokens as well)
    (20)  h = Σ_i o_i · q_i                           (ablation "without G": soft gates in training)

Because ``down_proj`` is linear, Σ_i g_i (z_i V_i) = (concat_i g_i z_i) V, so the dense-masked
path scales the intermediate activation z (B, T, n, D/n) by the gates and runs the dense GEMMs.
Training needs o_i of inactive experts for the router gradient (Eq. 16), so training is dense;
only inference can skip experts (:meth:`DSMoEMLP.sparse_experts`, tested equal to the masked path).

Baselines over the same partitions live in :mod:`repro_dsmoe.baselines` (softmax top-k MoE,
static neuron prune); :func:`build_mlp` picks the block from ``config.routing``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from repro_core.layers import ForwardState, SwiGLUMLP, fused_linear
from repro_core.modeling import DecoderConfig, DecoderLM
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from .config import GATE_MODES, ROUTER_INITS, SPARSITY_TARGETS

ROUTINGS = ("dsmoe", "topk", "prune")
INFERENCE_PATHS = ("masked", "sparse")


class DSMoEConfig(DecoderConfig):
    """:class:`~repro_core.modeling.DecoderConfig` plus the DSMoE switches.

    Args:
        num_experts: n, equal contiguous blocks of the intermediate dim (``intermediate_size``
            must be a multiple of n).
        routing: ``"dsmoe"`` (sigmoid + threshold, the paper), ``"topk"`` (LLaMA-MoE-style
            softmax top-k over the same blocks, baseline) or ``"prune"`` (a fixed neuron mask,
            static structured prune baseline).
        tau: threshold τ of G in training (paper 0.5).
        eval_tau: τ used when the model is in eval mode; None = ``tau`` (spec 1.10-7: the paper
            does not say whether its τ sweep changed τ at training time).
        gate_mode: training gate: ``"ste"`` S(q) (Eqs. 10-11, the paper), ``"hard"`` G(q) (the
            ablation "w/o S(x)"), ``"soft"`` q (Eq. 20, threshold only at evaluation).
            Evaluation always uses the hard G.
        renormalize: Eq. 8 rescale by n / #active (on by default).
        sparsity_coef: λ of the sparsity loss (paper: none written, i.e. 1).
        sparsity_on: ``"G"`` (Eq. 19 literally: the thresholded gate, gradient only to active
            gates; default) or ``"S"`` (the training gate, S or q: gradient to every gate).
        router_init: ``"random"`` (normal, std ``initializer_range``; the paper) or ``"zeros"``
            (q = 0.5 for every expert; use τ slightly below 0.5, e.g. 0.49).
        inference_path: ``"masked"`` (dense GEMMs, gates as a mask) or ``"sparse"`` (gather the
            tokens of each active expert, compute only those) in eval mode.
        top_k_experts / balance_coef / topk_scale: ``routing="topk"``: experts per token, Switch
            load-balancing loss coefficient (mean over layers), and output scale ``"n"``
            (n · Σ_topk w_i o_i with renormalised w, the Eq. 8 analogue that restores the dense
            magnitude) or ``"none"``.
        prune_fraction: ``routing="prune"``: fraction of intermediate units kept per layer
            (the mask itself is the ``neuron_mask`` buffer, set by calibration).
    """

    model_type = "dsmoe"

    def __init__(
        self,
        num_experts: int = 8,
        routing: str = "dsmoe",
        tau: float = 0.5,
        eval_tau: float | None = None,
        gate_mode: str = "ste",
        renormalize: bool = True,
        sparsity_coef: float = 1.0,
        sparsity_on: str = "G",
        router_init: str = "random",
        inference_path: str = "masked",
        top_k_experts: int = 3,
        balance_coef: float = 0.01,
        topk_scale: str = "n",
        prune_fraction: float = 0.375,
        **kwargs,
    ):
        self.num_experts = num_experts
        self.routing = routing
        self.tau = float(tau)
        self.eval_tau = None if eval_tau is None else float(eval_tau)
        self.gate_mode = gate_mode
        self.renormalize = renormalize
        self.sparsity_coef = float(sparsity_coef)
        self.sparsity_on = sparsity_on
        self.router_init = router_init
        self.inference_path = inference_path
        self.top_k_experts = top_k_experts
        self.balance_coef = float(balance_coef)
        self.topk_scale = topk_scale
        self.prune_fraction = float(prune_fraction)
        super().__init__(**kwargs)

    @property
    def expert_size(self) -> int:
        return self.intermediate_size // self.num_experts

    def validate_shapes(self) -> None:
        super().validate_shapes()
        n, f = self.num_experts, self.intermediate_size
        if n < 1 or f % n:
            raise ValueError(f"intermediate_size={f} must be a multiple of num_experts={n}")
        for name, allowed in (
            ("routing", ROUTINGS),
            ("gate_mode", GATE_MODES),
            ("sparsity_on", SPARSITY_TARGETS),
            ("router_init", ROUTER_INITS),
            ("inference_path", INFERENCE_PATHS),
            ("topk_scale", ("n", "none")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: allowed {allowed}")
        for name in ("tau", "eval_tau"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value} is invalid: allowed 0 <= tau < 1")
        if not 1 <= self.top_k_experts <= n:
            raise ValueError(
                f"top_k_experts={self.top_k_experts} is invalid: allowed 1..num_experts={n}"
            )
        if not 0.0 < self.prune_fraction <= 1.0:
            raise ValueError(f"prune_fraction={self.prune_fraction} is invalid: allowed (0, 1]")


class RoutingStats:
    """Running count of active experts per token of one layer (evaluation only, no gradient)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.tokens = 0
        self.active = 0.0  # sum over tokens of the number of active experts
        self.per_expert: torch.Tensor | None = None  # (n,) tokens that used expert i

    @torch.no_grad()
    def add(self, active: torch.Tensor) -> None:
        """active: (..., n) bool."""
        flat = active.reshape(-1, active.shape[-1])
        self.tokens += flat.shape[0]
        counts = flat.sum(0).double().cpu()
        self.active += float(counts.sum())
        self.per_expert = counts if self.per_expert is None else self.per_expert + counts

    @property
    def mean_active(self) -> float:
        return self.active / max(self.tokens, 1)


class SigmoidRouter(nn.Module):
    """The router Y of one layer: q = σ(x Y^T), bias-free, computed in fp32 at least.

    ``weight`` (n, d) is a raw parameter so that the core's weight init reaches
    :meth:`init_parameters` (normal(0, std): the paper's "random initialization"; or zeros:
    q = 0.5 for every expert, to be used with τ slightly below 0.5).
    """

    def __init__(self, hidden_size: int, num_experts: int, init: str = "random", std=0.02):
        super().__init__()
        self.init = init
        self.weight = nn.Parameter(torch.empty(num_experts, hidden_size))
        self.init_parameters(std)

    def init_parameters(self, std: float) -> None:
        from transformers import initialization as init  # skips checkpoint-loaded tensors

        if self.init == "zeros":
            init.zeros_(self.weight)
        else:
            init.normal_(self.weight, mean=0.0, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d) -> q (..., n) in promote_types(x.dtype, fp32), outside autocast."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.sigmoid(F.linear(x.to(dtype), self.weight.to(dtype)))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, init={self.init}"


class DSMoEMLP(SwiGLUMLP):
    """The dense SwiGLU FFN (same ``gate_proj``/``up_proj``/``down_proj``) as n gated experts.

    Called ``mlp(x, state)`` with x (B, T, d) = ``post_attention_layernorm`` output; the
    sparsity loss goes to ``state.add_loss("dsmoe_sparsity", ...)``.
    """

    def __init__(self, config: DSMoEConfig, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        self.num_experts = config.num_experts
        self.expert_size = config.expert_size
        self.num_layers = config.num_hidden_layers
        self.tau = config.tau
        self.eval_tau = config.eval_tau
        self.gate_mode = config.gate_mode
        self.renormalize = config.renormalize
        self.sparsity_coef = config.sparsity_coef
        self.sparsity_on = config.sparsity_on
        self.inference_path = config.inference_path
        self.router = SigmoidRouter(
            config.hidden_size, config.num_experts, config.router_init, config.initializer_range
        )
        self.stats = RoutingStats()
        self.record_stats = False

    def gate_scores(self, x: torch.Tensor) -> torch.Tensor:
        """q = σ(x Y): (B, T, d) -> (B, T, n), fp32 at least."""
        return self.router(x)

    def threshold(self) -> float:
        return self.tau if self.training or self.eval_tau is None else self.eval_tau

    def forward(self, x: torch.Tensor, state: ForwardState | None = None) -> torch.Tensor:
        q = self.gate_scores(x)  # (B, T, n) sigmoid gate values, Eq. 7
        active = q > self.threshold()  # (B, T, n) bool: 1[q_i > τ]
        hard = q * active  # G(q), Eq. 7 (forward value in every mode at evaluation)
        if self.training and self.gate_mode == "ste":
            gate = hard.detach() + q - q.detach()  # S(q) = sg(G(q)) + q - sg(q), Eqs. 10-11
        elif self.training and self.gate_mode == "soft":
            gate = q  # Eq. 20: no threshold in training
        else:
            gate = hard  # evaluation, or the ablation "w/o S(x)" (G in training)
        if state is not None and self.sparsity_coef:
            # Eq. 19 on G (default: gradient only to active gates) or on the training gate
            # (S or q: every gate is pushed down); mean over tokens and experts here, / L makes
            # it the mean over layers once state.add_loss has summed the layers
            target = hard if self.sparsity_on == "G" else gate
            state.add_loss("dsmoe_sparsity", self.sparsity_coef * target.mean() / self.num_layers)
        if self.renormalize:
            # Eq. 8: n / #active, the count clamped to >= 1 (a token with no active expert gets
            # h = 0, not NaN) and detached (a constant in backward, spec 1.10-5)
            count = active.sum(-1, keepdim=True).clamp(min=1).to(q.dtype)  # (B, T, 1)
            gate = gate * (self.num_experts / count)
        if self.record_stats:
            self.stats.add(active)
        if not self.training and self.inference_path == "sparse":
            return self.sparse_experts(x, gate)
        return self.masked_experts(x, gate)

    def masked_experts(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Σ_i g_i o_i with every expert computed: x (B, T, d), gate (B, T, n) -> (B, T, d)."""
        gate_pre, up = fused_linear(x, (self.gate_proj, self.up_proj)).chunk(2, dim=-1)
        z = F.silu(gate_pre) * up  # (B, T, D) hidden units of all n experts (Eq. 5)
        z = z.unflatten(-1, (self.num_experts, self.expert_size))  # (B, T, n, D/n), Eq. 6
        z = z * gate.to(z.dtype).unsqueeze(-1)  # fold g_i into expert i's units
        return self.down_proj(z.flatten(-2))  # (B, T, D) @ V: Σ_i (g_i z_i) V_i

    @torch.no_grad()
    def sparse_experts(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Inference: compute expert i only on the tokens whose gate i is non-zero.

        One gather, three GEMMs and one scatter-add per expert (a loop over the n experts, never
        over tokens). Equals :meth:`masked_experts` up to float summation order.
        """
        tokens = x.reshape(-1, x.shape[-1])  # (N, d)
        weights = gate.reshape(-1, self.num_experts)  # (N, n)
        out = torch.zeros_like(tokens)
        f = self.expert_size
        for i in range(self.num_experts):
            rows = weights[:, i].nonzero().squeeze(-1)  # (n_i,) tokens routed to expert i
            if rows.numel() == 0:
                continue
            xi = tokens.index_select(0, rows)  # (n_i, d)
            units = slice(i * f, (i + 1) * f)
            zi = F.silu(F.linear(xi, self.gate_proj.weight[units])) * F.linear(
                xi, self.up_proj.weight[units]
            )  # (n_i, D/n)
            zi = zi * weights.index_select(0, rows)[:, i : i + 1].to(zi.dtype)
            out.index_add_(0, rows, F.linear(zi, self.down_proj.weight[:, units]))
        if self.down_proj.bias is not None:
            out = out + self.down_proj.bias
        return out.view_as(x)

    def num_activated_parameters(self) -> int:
        """Parameters one token uses in training: every expert is computed (STE, Eq. 16).

        Inference uses fewer; see :func:`repro_dsmoe.accounting.activated_parameters`.
        """
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (
            f"experts={self.num_experts}x{self.expert_size}, tau={self.tau}, "
            f"eval_tau={self.eval_tau}, gate_mode={self.gate_mode}, "
            f"renormalize={self.renormalize}, sparsity_on={self.sparsity_on}"
        )


def build_mlp(config: DSMoEConfig, layer_idx: int = 0) -> nn.Module:
    """The FFN block of ``config.routing``: DSMoE, or a baseline over the same partitions."""
    if config.routing == "dsmoe":
        return DSMoEMLP(config, layer_idx)
    from .baselines import PrunedMLP, TopKPartitionMLP

    cls = TopKPartitionMLP if config.routing == "topk" else PrunedMLP
    return cls(config, layer_idx)


class DSMoEForCausalLM(DecoderLM):
    """The core decoder with every FFN replaced by :func:`build_mlp` (a DSMoE block)."""

    config_class = DSMoEConfig
    mlp_class = build_mlp

    def moe_blocks(self) -> list[nn.Module]:
        return [layer.mlp for layer in self.model.layers]


AutoConfig.register(DSMoEConfig.model_type, DSMoEConfig, exist_ok=True)
AutoModelForCausalLM.register(DSMoEConfig, DSMoEForCausalLM, exist_ok=True)


def set_tau(model: nn.Module, eval_tau: float | None = None, tau: float | None = None) -> None:
    """Override the evaluation threshold (and optionally the training one) of every block."""
    for module in model.modules():
        if isinstance(module, DSMoEMLP):
            module.eval_tau = eval_tau
            if tau is not None:
                module.tau = tau


def set_inference_path(model: nn.Module, path: str) -> None:
    """``"masked"`` or ``"sparse"`` for every DSMoE block (eval mode only)."""
    if path not in INFERENCE_PATHS:
        raise ValueError(f"inference path {path!r} is invalid: allowed {INFERENCE_PATHS}")
    for module in model.modules():
        if isinstance(module, DSMoEMLP):
            module.inference_path = path


__all__ = [
    "DSMoEConfig",
    "DSMoEForCausalLM",
    "DSMoEMLP",
    "RoutingStats",
    "SigmoidRouter",
    "build_mlp",
    "set_inference_path",
    "set_tau",
]
