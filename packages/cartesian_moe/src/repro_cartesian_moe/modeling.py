"""CartesianMoE decoder (Su et al., NAACL 2025, arXiv 2410.16077) and its Table 1 baselines.

The model is the core LLaMA-style :class:`~repro_core.modeling.DecoderLM` whose MLP is a MoE
block on every ``moe_layer_interval``-th layer (layers 0, 2, 4, ... by default: the placement
that reproduces the paper's parameter counts, spec §1.4) and a dense SwiGLU of width W elsewhere.
``moe_variant`` chooses the block (equal total and activated parameters, spec §1.4):

* ``cartesian``: two routed MoE sub-layers in sequence (:class:`~repro_cartesian_moe.layers.
  CartesianMoEFFN`); with ``u = RMSNorm_post(h)`` from the decoder layer (spec §1.3)::

      (1) p_A = softmax(W_A u),  S_A = TopK(p_A, 2),  w_A = p_A[S_A] / Σ p_A[S_A]
      (2) a   = c_A0 · Σ_{i∈S_A} w_A,i FFN^A_i(u) + c_A1 · FFN^A_shared(u),  c_A = softmax(C_A u + b)
      (3) y   = h + a                                # residual around sub-layer A
      (4) v   = RMSNorm_mid(y)                       # router B sees A's output: (i, j) ∈ S_A × S_B
      (5) b   = c_B0 · Σ_{j∈S_B} w_B,j FFN^B_j(v) + c_B1 · FFN^B_shared(v)
      (6) out = y + b                                # residual around sub-layer B

* ``hash_share``: the Hash Layer baseline of the official code (spec §1.7), SMoE-Share whose
  router logits are a row of a (vocab, N) per-token-id score table instead of ``W_router u``::

      (7) p = softmax(T_hash[x_t]),  S = TopK(p, 2),  w = p[S] / Σ p[S]   # x_t: input id

  so a token's two experts and their weights depend on its id only (fixed or trained table).
* ``smoe_share`` (top-2 of N x W + shared W), ``smoe_top3`` (top-3 of N x W(N+1)/N),
  ``fine_grained`` (top-4 of 2N x W/2 + shared 2 x W/2 averaged), ``cartesian_no_shared``
  (Table 3 ablation, fewer parameters) and ``dense`` (every layer a width-W SwiGLU: the paper's
  dense Base row, equal attention and width, fewer parameters).

Each router's Switch load-balancing loss ``E · Σ_e f_e · P_e`` (and optionally the router
z-loss) is added to the LM loss through :func:`repro_core.moe.report_aux`: two per Cartesian layer.
"""

from __future__ import annotations

import torch
from repro_core.config import SHARED_MIXES
from repro_core.layers import ForwardState, SwiGLUMLP
from repro_core.modeling import DecoderConfig, DecoderLM, load_llama_checkpoint
from repro_core.moe import TopKRouter, report_aux
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from repro_cartesian_moe.config import HASH_TABLES, MODEL_VARIANTS, CartesianMoEModelConfig
from repro_cartesian_moe.layers import CartesianMoEFFN, build_ffn, run_ffn


class CartesianMoEConfig(DecoderConfig):
    """:class:`DecoderConfig` plus the MoE fields (saved in ``config.json``).

    Args:
        moe_variant: one of :data:`MODEL_VARIANTS` (default "cartesian").
        num_experts: N, routed experts per MoE layer (per sub-layer for Cartesian).
        moe_dense_hidden_size: W, width of one full expert "unit"; None = ``intermediate_size``
            (the width of the dense layers), as in the paper.
        moe_layer_interval: MoE on layers with ``layer_idx % interval == 0`` (2 = every other
            layer, the paper's placement; 1 = every layer).
        shared_mix: "coef" (learned two-way softmax mix of routed and shared output, the
            official code) or "add" (plain sum, the paper prose).
        load_balancing_coef: weight of each router's Switch load-balancing loss (0.01).
        z_loss_coef: weight of each router's z-loss (0 = off).
        hash_table: ``hash_share`` only: its per-token-id score table is "fixed" (a buffer) or
            "trained" (a parameter); unverified, spec §1.7.
        hash_table_seed: seed of that table's draw (the same table in every MoE layer).
    """

    model_type = "repro_cartesian_moe"

    def __init__(
        self,
        moe_variant: str = "cartesian",
        num_experts: int = 8,
        moe_dense_hidden_size: int | None = None,
        moe_layer_interval: int = 2,
        shared_mix: str = "coef",
        load_balancing_coef: float = 0.01,
        z_loss_coef: float = 0.0,
        hash_table: str = "fixed",
        hash_table_seed: int = 0,
        **kwargs,
    ):
        if moe_variant not in MODEL_VARIANTS:
            raise ValueError(f"moe_variant={moe_variant!r}; allowed: {MODEL_VARIANTS}")
        if shared_mix not in SHARED_MIXES:
            raise ValueError(f"shared_mix={shared_mix!r}; allowed: {SHARED_MIXES}")
        if hash_table not in HASH_TABLES:
            raise ValueError(f"hash_table={hash_table!r}; allowed: {HASH_TABLES}")
        if num_experts < 1 or moe_layer_interval < 1:
            raise ValueError(
                f"num_experts={num_experts} and moe_layer_interval={moe_layer_interval} "
                "must be >= 1"
            )
        self.moe_variant = moe_variant
        self.num_experts = num_experts
        self.moe_dense_hidden_size = moe_dense_hidden_size
        self.moe_layer_interval = moe_layer_interval
        self.shared_mix = shared_mix
        self.load_balancing_coef = load_balancing_coef
        self.z_loss_coef = z_loss_coef
        self.hash_table = hash_table
        self.hash_table_seed = hash_table_seed
        super().__init__(**kwargs)

    def is_moe_layer(self, layer_idx: int) -> bool:
        return self.moe_variant != "dense" and layer_idx % self.moe_layer_interval == 0


class MoELayer(nn.Module):
    """The MLP of a MoE decoder layer: ``mlp(u, state) -> delta`` with ``h + delta`` the block
    output; hands every router's aux losses to ``state`` and can tally expert load.

    Submodule ``ffn``: the :func:`~repro_cartesian_moe.layers.build_ffn` block of the variant.
    """

    def __init__(self, config: CartesianMoEConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.load_balancing_coef = config.load_balancing_coef
        self.z_loss_coef = config.z_loss_coef
        self.ffn = build_ffn(
            config.moe_variant,
            config.hidden_size,
            config.moe_dense_hidden_size or config.intermediate_size,
            config.num_experts,
            shared_mix=config.shared_mix,
            rms_norm_eps=config.rms_norm_eps,
            init_std=config.initializer_range,
            vocab_size=config.vocab_size,
            hash_table=config.hash_table,
            hash_table_seed=config.hash_table_seed,
        )
        # (routers, E) assignment counts while expert-load recording is on (see record_expert_load)
        self.load_counts: list[torch.Tensor] | None = None
        self.load_tokens = 0  # tokens routed while recording

    def forward(self, hidden_states: torch.Tensor, state: ForwardState) -> torch.Tensor:
        """hidden_states: (B, T, D) ``u = RMSNorm_post(h)``; ``state.shared["residual"]`` = h."""
        residual = state.shared["residual"]  # (B, T, D), set by the decoder layer
        token_mask = None
        if state.attention_mask is not None and not bool(state.attention_mask.all()):
            token_mask = state.attention_mask[:, -hidden_states.shape[1] :].bool()  # (B, T)
        # Cartesian: eqs. (1)-(6) in CartesianMoEFFN.forward; baselines: one MoE layer.
        # hash_share routes by the input ids (B, T): logits = T_hash[x_t], eq. (7).
        delta, auxes = run_ffn(self.ffn, hidden_states, residual, token_mask, state.input_ids)
        for aux in auxes:  # one per router: 2 for Cartesian, 1 otherwise
            report_aux(state, aux, self.load_balancing_coef, self.z_loss_coef)
        if self.load_counts is not None:
            counts = torch.stack([aux.load.tokens_per_expert.cpu() for aux in auxes])
            self.load_counts.append(counts)
            n = hidden_states.shape[:-1].numel() if token_mask is None else token_mask.sum()
            self.load_tokens += int(n)
        return delta


def cartesian_moe_mlp(config: CartesianMoEConfig, layer_idx: int) -> nn.Module:
    """``mlp_class`` of the model: a MoE block on MoE layers, the dense SwiGLU elsewhere."""
    if config.is_moe_layer(layer_idx):
        return MoELayer(config, layer_idx)
    return SwiGLUMLP(config, layer_idx)


class CartesianMoEForCausalLM(DecoderLM):
    """Causal LM with CartesianMoE (or a baseline) MLPs; everything else is the core decoder."""

    config_class = CartesianMoEConfig
    mlp_class = staticmethod(cartesian_moe_mlp)

    def moe_layers(self) -> list[MoELayer]:
        return [m for m in self.modules() if isinstance(m, MoELayer)]

    def set_disable_top1(self, enabled: bool, sublayers: tuple[str, ...] = ("a", "b")) -> int:
        """See :func:`set_disable_top1`."""
        return set_disable_top1(self, enabled, sublayers)


def set_disable_top1(
    model: nn.Module, enabled: bool, sublayers: tuple[str, ...] = ("a", "b")
) -> int:
    """Routing-robustness evaluation (paper Table 4): zero each token's top-1 router probability
    before the top-k, in every router; for Cartesian blocks only in the ``sublayers`` chosen
    ("a", "b" or both, the default: the paper does not say, spec §1.10).

    Returns the number of routers switched (0 for a dense model).
    """
    cartesian = [m for m in model.modules() if isinstance(m, CartesianMoEFFN)]
    inside = {id(r) for block in cartesian for r in block.modules() if isinstance(r, TopKRouter)}
    for block in cartesian:
        block.set_disable_top1(False)
        block.set_disable_top1(enabled, sublayers)
    others = [m for m in model.modules() if isinstance(m, TopKRouter) and id(m) not in inside]
    for router in others:
        router.disable_top1 = enabled
    return len(others) + len(cartesian) * (len(sublayers) if enabled else 2)


def record_expert_load(model: nn.Module, enabled: bool) -> None:
    """Start (and reset) or stop tallying expert assignments in every :class:`MoELayer`."""
    for layer in model.modules():
        if isinstance(layer, MoELayer):
            layer.load_counts = [] if enabled else None
            layer.load_tokens = 0


def expert_load_summary(model: nn.Module) -> dict:
    """Balance of the assignments tallied since :func:`record_expert_load`.

    Returns ``{"routers": [{"layer", "router", "tokens_per_expert", "cv", "max_over_mean",
    "experts_per_token"}], "mean_cv", "mean_max_over_mean", "mean_experts_per_token"}``: cv =
    std/mean of tokens per expert (0 = balanced), max_over_mean = load of the busiest expert /
    mean load (1 = balanced), experts_per_token = routed assignments / tokens (k, or the mean k
    of top-p routing). Empty for dense.
    """
    routers = []
    for layer in model.modules():
        if not isinstance(layer, MoELayer) or not layer.load_counts:
            continue
        counts = torch.stack(layer.load_counts).sum(0)  # (routers, E)
        for r, row in enumerate(counts):
            mean = row.mean().clamp_min(1e-12)
            routers.append(
                {
                    "layer": layer.layer_idx,
                    "router": "ab"[r] if isinstance(layer.ffn, CartesianMoEFFN) else "moe",
                    "tokens_per_expert": [int(v) for v in row.tolist()],
                    "cv": float(row.std(unbiased=False) / mean),
                    "max_over_mean": float(row.max() / mean),
                    "experts_per_token": float(row.sum()) / max(layer.load_tokens, 1),
                }
            )
    if not routers:
        return {
            "routers": [],
            "mean_cv": None,
            "mean_max_over_mean": None,
            "mean_experts_per_token": None,
        }
    return {
        "routers": routers,
        "mean_cv": sum(r["cv"] for r in routers) / len(routers),
        "mean_max_over_mean": sum(r["max_over_mean"] for r in routers) / len(routers),
        "mean_experts_per_token": sum(r["experts_per_token"] for r in routers) / len(routers),
    }


def is_cartesian_moe_checkpoint(path) -> bool:
    """Whether ``path/config.json`` is a :class:`CartesianMoEConfig` (else: a dense model)."""
    import json
    from pathlib import Path

    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    return json.loads(config.read_text()).get("model_type") == CartesianMoEConfig.model_type


def load_dense_checkpoint(path, **moe_kwargs) -> CartesianMoEForCausalLM:
    """A :class:`CartesianMoEForCausalLM` initialised from a dense HF Llama / DecoderLM
    checkpoint directory (``moe_kwargs``: the :class:`CartesianMoEConfig` MoE fields).

    Embeddings, attention, norms, the output head and the MLPs of the dense layers (those with
    ``layer_idx % moe_layer_interval != 0``) are copied. On MoE layers the dense MLP weights are
    **dropped** and the routers, experts, shared experts and mixing gates keep their fresh
    initialisation: their shapes differ from the dense MLP's (experts of width W/2, W(N+1)/N,
    ...), and the paper trains every model from scratch. The returned model lists the keys in
    ``dropped_keys`` (dense weights not used) and ``missing_keys`` (parameters left at init).
    """
    dense = load_llama_checkpoint(path)  # the core's Llama / DecoderLM loader (config translated)
    fields = dense.config.to_dict()
    for key in ("model_type", "transformers_version", "architectures"):
        fields.pop(key, None)
    config = CartesianMoEConfig(**(fields | moe_kwargs))
    model = CartesianMoEForCausalLM(config)
    state = dense.state_dict()
    dropped = sorted(
        key
        for key in state
        if key.startswith("model.layers.")
        and ".mlp." in key
        and config.is_moe_layer(int(key.split(".")[2]))
    )
    for key in dropped:
        state.pop(key)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"checkpoint {path} has weights this model does not know: {result.unexpected_keys[:8]}"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    model.dropped_keys = dropped
    model.missing_keys = sorted(result.missing_keys)
    return model


AutoConfig.register(CartesianMoEConfig.model_type, CartesianMoEConfig, exist_ok=True)
AutoModelForCausalLM.register(CartesianMoEConfig, CartesianMoEForCausalLM, exist_ok=True)


__all__ = [
    "MODEL_VARIANTS",
    "CartesianMoEConfig",
    "CartesianMoEForCausalLM",
    "CartesianMoEModelConfig",
    "MoELayer",
    "cartesian_moe_mlp",
    "expert_load_summary",
    "is_cartesian_moe_checkpoint",
    "load_dense_checkpoint",
    "record_expert_load",
    "set_disable_top1",
]
