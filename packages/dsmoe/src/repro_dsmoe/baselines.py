"""The paper's baselines over the same FFN partitions, as blocks of :class:`DSMoEForCausalLM`.

* :class:`TopKPartitionMLP` (``routing="topk"``): LLaMA-MoE-style MoE made from the same n
  contiguous blocks: softmax router (the core's :class:`~repro_core.moe.TopKRouter`, fp32),
  top-k, renormalised weights, Switch load-balancing loss (the core's
  :func:`~repro_core.moe.load_balancing_loss`, coefficient ``balance_coef``, mean over layers).
  No noisy gating (DSMoE does not specify LLaMA-MoE's objectives, spec 1.10-10).
* :class:`PrunedMLP` (``routing="prune"``): the dense FFN with a fixed 0/1 mask on its
  intermediate units (an LLM-Pruner-block analogue), set once by :func:`calibrate_neuron_mask`
  from importance mean|silu(x W_g) ⊙ x W_u| · ||V_down column|| on calibration tokens and kept
  for continued training (masked units get no gradient and no output).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from repro_core.layers import ForwardState, SwiGLUMLP, fused_linear
from repro_core.moe import TopKRouter, load_balancing_loss

from .modeling import DSMoEConfig, DSMoEMLP


class TopKPartitionMLP(DSMoEMLP):
    """Softmax top-k routing over the DSMoE partitions: (B, T, d) -> (B, T, d).

    ``h = s · Σ_{i ∈ topk} w_i o_i`` with ``w`` the renormalised softmax probabilities of the k
    chosen experts and ``s = n`` (``topk_scale="n"``: the Eq. 8 analogue n/k · Σ (k w_i) o_i,
    which restores the dense output magnitude) or 1. Training computes every expert with weight
    0 for unchosen ones (same value and gradients as a dispatch; compute is not the point here).
    """

    def __init__(self, config: DSMoEConfig, layer_idx: int = 0):
        super().__init__(config, layer_idx)  # its sigmoid router is replaced below
        self.top_k = config.top_k_experts
        self.balance_coef = config.balance_coef
        self.output_scale = float(config.num_experts) if config.topk_scale == "n" else 1.0
        self.router = TopKRouter(
            config.hidden_size,
            config.num_experts,
            config.top_k_experts,
            "softmax",
            renormalize=True,
        )

    def forward(self, x: torch.Tensor, state: ForwardState | None = None) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])  # (N, d)
        route = self.router(tokens)  # indices/weights (N, k), -1 = unused slot
        used = route.indices >= 0
        weights = torch.zeros(
            tokens.shape[0], self.num_experts, dtype=route.weights.dtype, device=x.device
        ).scatter_add(1, route.indices.clamp(min=0), route.weights * used)  # (N, n)
        if state is not None and self.balance_coef:
            balance = load_balancing_loss(route.scores, route.indices, self.num_experts)
            state.add_loss("moe_load_balancing", self.balance_coef * balance / self.num_layers)
        if self.record_stats:
            self.stats.add(weights > 0)
        gate = (weights * self.output_scale).view(*x.shape[:-1], self.num_experts)  # (B, T, n)
        if not self.training and self.inference_path == "sparse":
            return self.sparse_experts(x, gate)
        return self.masked_experts(x, gate)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}x{self.expert_size}, top_k={self.top_k}"


class PrunedMLP(SwiGLUMLP):
    """The dense SwiGLU FFN with intermediate units switched off by ``neuron_mask`` (D,)."""

    def __init__(self, config: DSMoEConfig, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        self.num_experts = config.num_experts
        self.register_buffer("neuron_mask", torch.ones(config.intermediate_size))
        self.record_stats = False

    def forward(self, x: torch.Tensor, state: ForwardState | None = None) -> torch.Tensor:
        gate, up = fused_linear(x, (self.gate_proj, self.up_proj)).chunk(2, dim=-1)
        z = F.silu(gate) * up * self.neuron_mask.to(gate.dtype)  # (B, T, D), pruned units = 0
        return self.down_proj(z)

    def kept_fraction(self) -> float:
        return float(self.neuron_mask.mean())

    def num_activated_parameters(self) -> int:
        d, f = self.gate_proj.weight.shape[1], self.gate_proj.weight.shape[0]
        return round(3 * d * f * self.kept_fraction())


@torch.no_grad()
def calibrate_neuron_mask(
    model, calibration_ids: torch.Tensor, fraction: float, batch_size: int = 8
) -> list[float]:
    """Set the mask of every :class:`PrunedMLP` of ``model`` to its top ``fraction`` units.

    Importance of unit j of a layer: mean over calibration tokens of
    |silu(x W_gate,j) · x U_up,j| times the norm of column j of ``down_proj``; the top
    ``round(fraction * D)`` units per layer are kept. Returns the kept fraction per layer.
    """
    blocks = [m for m in model.modules() if isinstance(m, PrunedMLP)]
    if not blocks:
        raise ValueError("calibrate_neuron_mask: the model has no PrunedMLP (routing='prune')")
    sums = [torch.zeros(b.neuron_mask.numel(), dtype=torch.float64) for b in blocks]
    counts = [0] * len(blocks)

    def hook(i):
        def record(module, args, output):
            x = args[0]
            gate, up = fused_linear(x, (module.gate_proj, module.up_proj)).chunk(2, dim=-1)
            z = (F.silu(gate) * up).abs().reshape(-1, gate.shape[-1])  # (N, D)
            sums[i] += z.double().sum(0).cpu()
            counts[i] += z.shape[0]

        return record

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    for b in blocks:
        b.neuron_mask.fill_(1.0)
    was_training = model.training
    model.eval()
    try:
        ids = torch.as_tensor(np.asarray(calibration_ids), dtype=torch.long)
        device = next(model.parameters()).device
        for batch in ids.split(batch_size):
            model(input_ids=batch.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    kept = []
    for b, s, c in zip(blocks, sums, counts):
        importance = (s / max(c, 1)) * b.down_proj.weight.double().norm(dim=0).cpu()  # (D,)
        keep = max(1, round(fraction * importance.numel()))
        mask = torch.zeros_like(b.neuron_mask)
        mask[importance.topk(keep).indices.to(mask.device)] = 1.0
        b.neuron_mask.copy_(mask)
        kept.append(b.kept_fraction())
    return kept


__all__ = ["PrunedMLP", "TopKPartitionMLP", "calibrate_neuron_mask"]
