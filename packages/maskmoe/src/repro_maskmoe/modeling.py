"""MaskMoE decoder (Su et al., arXiv 2407.09816) and its baselines, SMoE top-1 and Hash Layer.

The model is the core LLaMA-style :class:`~repro_core.modeling.DecoderLM` whose MLP is a routed
MoE of N SwiGLU experts on every ``moe_layer_interval``-th layer (a dense SwiGLU elsewhere).
``routing`` picks how a token's router is constrained (spec §2.3):

* ``maskmoe``: before training, each vocabulary id t gets a fixed random set C_t of visible
  experts, |C_t| = 1 if t is infrequent in the training split and ``frequent_experts`` (V_freq)
  if it is frequent (:mod:`repro_maskmoe.frequency`). The mask row M[t] is 0 on C_t and a large
  negative number elsewhere, and is added to the router logits of every position whose *input*
  id is t::

      (1) m_s = M[x_s]                                  # one gather by the input id at s
      (2) p_s = softmax(W_r u_s + m_s)                  # fp32; hidden experts get p = 0 exactly
      (3) S_s = TopK(p_s, k_eff),  k_eff = min(k, |C_{x_s}|)
      (4) y_s = Σ_{i∈S_s} g_i · FFN_i(u_s),  g = p (k = 1) or p renormalised over S_s (k > 1)

  so an infrequent id always uses its one expert with gate 1.0 (like a hash layer) and a
  frequent id is routed dynamically among its V_freq experts.
* ``smoe``: the same layer without a mask (dynamic top-k routing, Switch-style with k = 1).
* ``hash``: every id infrequent (one fixed random expert per id, gate 1.0): the Hash Layer of
  Roller et al. (2021) = MaskMoE with no frequent token.

All three have the same parameters (the mask is a non-trainable buffer) and, with top-1, the
same activated parameters. Each router's Switch load-balancing loss ``E · Σ_e f_e · P_e`` over
the masked probabilities (and optionally the z-loss) is added to the LM loss.
"""

from __future__ import annotations

import numpy as np
import torch
from repro_core.layers import ForwardState, SwiGLUMLP
from repro_core.modeling import DecoderConfig, DecoderLM
from repro_core.moe import MoEFeedForward, random_token_expert_mask, report_aux
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from repro_maskmoe.config import ROUTINGS, MaskMoEModelConfig
from repro_maskmoe.frequency import FREQUENCY_RULES, frequent_tokens


class MaskMoEConfig(DecoderConfig):
    """:class:`DecoderConfig` plus the MoE and mask fields (saved in ``config.json``).

    Every default below is a reproduction choice, not a paper value (the paper body could not
    be read, spec §2.4): see the package README.

    Args:
        routing: one of :data:`ROUTINGS`.
        num_experts: N routed experts per MoE layer.
        moe_top_k: k experts per token (1, the authors' code trace).
        expert_hidden_size: width of each expert; None = ``intermediate_size``.
        moe_layer_interval: MoE on layers with ``layer_idx % interval == 0``.
        frequent_experts: V_freq, visible experts of a frequent id (1 <= V_freq <= N).
        frequency_rule / frequency_threshold: which ids are frequent
            (:func:`repro_maskmoe.frequency.frequent_tokens`).
        special_tokens_frequent: let special tokens be frequent (default: always infrequent).
        per_layer_mask: draw an independent mask per MoE layer (default: one mask shared by all
            MoE layers, as in the authors' code trace).
        mask_seed: seed of the mask draw.
        shared_expert_hidden_size: width of an always-on shared expert (0 = none).
        shared_mix: "add" or "coef" (see ``repro_core.moe.MoEFeedForward``).
        load_balancing_coef / z_loss_coef: weights of each router's aux losses.
        num_frequent_tokens: set when the mask is built from training counts
            (:meth:`MaskMoEForCausalLM.set_token_counts`); None = not built yet.
    """

    model_type = "repro_maskmoe"

    def __init__(
        self,
        routing: str = "maskmoe",
        num_experts: int = 8,
        moe_top_k: int = 1,
        expert_hidden_size: int | None = None,
        moe_layer_interval: int = 2,
        frequent_experts: int = 4,
        frequency_rule: str = "top_fraction",
        frequency_threshold: float = 0.2,
        special_tokens_frequent: bool = False,
        per_layer_mask: bool = False,
        mask_seed: int = 0,
        shared_expert_hidden_size: int = 0,
        shared_mix: str = "add",
        load_balancing_coef: float = 0.01,
        z_loss_coef: float = 0.0,
        num_frequent_tokens: int | None = None,
        **kwargs,
    ):
        if routing not in ROUTINGS:
            raise ValueError(f"routing={routing!r}; allowed: {ROUTINGS}")
        if frequency_rule not in FREQUENCY_RULES:
            raise ValueError(f"frequency_rule={frequency_rule!r}; allowed: {FREQUENCY_RULES}")
        if not 1 <= moe_top_k <= num_experts or not 1 <= frequent_experts <= num_experts:
            raise ValueError(
                f"moe_top_k={moe_top_k} and frequent_experts={frequent_experts} must be in "
                f"[1, num_experts={num_experts}]"
            )
        self.routing = routing
        self.num_experts = num_experts
        self.moe_top_k = moe_top_k
        self.expert_hidden_size = expert_hidden_size
        self.moe_layer_interval = moe_layer_interval
        self.frequent_experts = frequent_experts
        self.frequency_rule = frequency_rule
        self.frequency_threshold = frequency_threshold
        self.special_tokens_frequent = special_tokens_frequent
        self.per_layer_mask = per_layer_mask
        self.mask_seed = mask_seed
        self.shared_expert_hidden_size = shared_expert_hidden_size
        self.shared_mix = shared_mix
        self.load_balancing_coef = load_balancing_coef
        self.z_loss_coef = z_loss_coef
        self.num_frequent_tokens = num_frequent_tokens
        super().__init__(**kwargs)

    def is_moe_layer(self, layer_idx: int) -> bool:
        return layer_idx % self.moe_layer_interval == 0

    def layer_mask_seed(self, layer_idx: int) -> int:
        return self.mask_seed + (1000003 * layer_idx if self.per_layer_mask else 0)


class MaskMoELayer(nn.Module):
    """The MLP of a MoE decoder layer: ``mlp(u, state) -> y`` (B, T, D).

    Submodule ``moe``: a core :class:`~repro_core.moe.MoEFeedForward` whose router holds the
    (vocab, N) mask table as buffer ``moe.router.token_expert_mask`` (absent for ``smoe``).
    """

    def __init__(self, config: MaskMoEConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        table = None
        if config.routing != "smoe":  # until set_token_counts: every id infrequent (hash)
            ones = torch.ones(config.vocab_size, dtype=torch.long, device="cpu")
            table = random_token_expert_mask(
                ones, config.num_experts, config.layer_mask_seed(layer_idx)
            )
        self.moe = MoEFeedForward(
            config.hidden_size,
            config.num_experts,
            config.expert_hidden_size or config.intermediate_size,
            config.moe_top_k,
            shared_expert_hidden_size=config.shared_expert_hidden_size,
            shared_mix=config.shared_mix,
            init_std=config.initializer_range,
            token_expert_mask=table,
        )
        self.recorded_top1: list[torch.Tensor] | None = None  # see record_routes()

    def forward(self, hidden_states: torch.Tensor, state: ForwardState) -> torch.Tensor:
        """hidden_states: (B, T, D) = RMSNorm_post(h); routes by ``state.input_ids`` (B, T)."""
        config = self.config
        if config.routing == "maskmoe" and config.num_frequent_tokens is None:
            raise RuntimeError(
                "the MaskMoE routing mask is not built: call model.set_token_counts(counts) with "
                "the training split's token counts (repro-maskmoe-train does this)"
            )
        token_mask = None
        if state.attention_mask is not None and not bool(state.attention_mask.all()):
            token_mask = state.attention_mask[:, -hidden_states.shape[1] :].bool()  # (B, T)
        ids = state.input_ids if config.routing != "smoe" else None  # (B, T) input ids
        # eqs. (1)-(4): the router adds M[x_s] to its fp32 logits before softmax and top-k
        y, aux = self.moe(hidden_states, token_mask=token_mask, token_ids=ids)  # (B, T, D)
        report_aux(state, aux, config.load_balancing_coef, config.z_loss_coef)
        if self.recorded_top1 is not None:
            self.recorded_top1.append(aux.router.indices[:, 0].detach().cpu())  # (B*T,)
        return y

    def set_frequent(self, frequent: torch.Tensor) -> None:
        """Rebuild this layer's mask: 1 visible expert per id, V_freq where ``frequent``."""
        if self.config.routing == "smoe":
            return
        visible = torch.ones(len(frequent), dtype=torch.long, device="cpu")
        if self.config.routing == "maskmoe":
            visible[frequent.cpu()] = self.config.frequent_experts
        table = random_token_expert_mask(
            visible, self.config.num_experts, self.config.layer_mask_seed(self.layer_idx)
        )
        self.moe.router.set_token_expert_mask(table)


def maskmoe_mlp(config: MaskMoEConfig, layer_idx: int) -> nn.Module:
    """``mlp_class`` of the model: a MoE layer on MoE layers, the dense SwiGLU elsewhere."""
    if config.is_moe_layer(layer_idx):
        return MaskMoELayer(config, layer_idx)
    return SwiGLUMLP(config, layer_idx)


class MaskMoEForCausalLM(DecoderLM):
    """Causal LM with MaskMoE (or SMoE / Hash) MLPs; everything else is the core decoder.

    Buffers (saved with the model): ``token_counts`` (vocab,) int64, the training-split count
    of each id (the frequency table; zeros until :meth:`set_token_counts`), and
    ``frequent_tokens`` (vocab,) bool.
    """

    config_class = MaskMoEConfig
    mlp_class = staticmethod(maskmoe_mlp)

    def __init__(self, config: MaskMoEConfig):
        super().__init__(config)
        self.register_buffer("token_counts", torch.zeros(config.vocab_size, dtype=torch.long))
        self.register_buffer("frequent_tokens", torch.zeros(config.vocab_size, dtype=torch.bool))

    def moe_layers(self) -> list[MaskMoELayer]:
        return [m for m in self.modules() if isinstance(m, MaskMoELayer)]

    def set_token_counts(self, counts, special_ids=()) -> int:
        """Store the frequency table, mark frequent ids by the config's rule and rebuild every
        layer's mask; returns the number of frequent ids (also ``config.num_frequent_tokens``)."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (self.config.vocab_size,):
            raise ValueError(
                f"token counts have shape {counts.shape}; the model's vocabulary has "
                f"{self.config.vocab_size} ids"
            )
        c = self.config
        frequent = frequent_tokens(
            counts, c.frequency_rule, c.frequency_threshold, special_ids, c.special_tokens_frequent
        )
        if c.routing == "hash":
            frequent[:] = False
        frequent_t = torch.from_numpy(frequent)
        self.token_counts.copy_(torch.from_numpy(counts))
        self.frequent_tokens.copy_(frequent_t)
        for layer in self.moe_layers():
            layer.set_frequent(frequent_t)
        c.num_frequent_tokens = int(frequent.sum())
        return c.num_frequent_tokens


def record_routes(model: nn.Module, enabled: bool) -> None:
    """Start (and reset) or stop keeping each MoE layer's top-1 expert per routed token."""
    for layer in model.modules():
        if isinstance(layer, MaskMoELayer):
            layer.recorded_top1 = [] if enabled else None


def recorded_routes(model: nn.Module) -> torch.Tensor:
    """(MoE layers, tokens) top-1 expert ids recorded since :func:`record_routes` (-1: none)."""
    layers = [m for m in model.modules() if isinstance(m, MaskMoELayer)]
    return torch.stack([torch.cat(layer.recorded_top1) for layer in layers])


AutoConfig.register(MaskMoEConfig.model_type, MaskMoEConfig, exist_ok=True)
AutoModelForCausalLM.register(MaskMoEConfig, MaskMoEForCausalLM, exist_ok=True)


__all__ = [
    "ROUTINGS",
    "MaskMoEConfig",
    "MaskMoEForCausalLM",
    "MaskMoELayer",
    "MaskMoEModelConfig",
    "maskmoe_mlp",
    "record_routes",
    "recorded_routes",
]
