"""Parameter accounting of a DSMoE model from its config alone (no weights), spec 1.6.

The paper's "activated parameters" include embeddings and attention (spec 1.10-9): a token uses
every non-FFN parameter, the router, and ``a_l / n`` of layer l's FFN, where ``a_l`` is the mean
number of active experts per token in layer l. Llama-3.2-1B with 3.02 of 8 experts active gives
about 735M (Table 1).
"""

from __future__ import annotations

from collections.abc import Sequence


def _get(config, key, default=None):
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def dense_parameter_counts(config) -> dict[str, int]:
    """Parameter counts of a dense Llama / DecoderLM config (a config object or its dict).

    Returns ``total`` (tied embeddings once), ``embedding`` (input table + untied head),
    ``attention``, ``ffn``, ``norms`` and ``ffn_per_layer``.
    """
    d = _get(config, "hidden_size")
    f = _get(config, "intermediate_size")
    layers = _get(config, "num_hidden_layers")
    heads = _get(config, "num_attention_heads")
    kv_heads = _get(config, "num_key_value_heads") or heads
    head_dim = _get(config, "head_dim") or d // heads
    vocab = _get(config, "vocab_size")
    tied = bool(_get(config, "tie_word_embeddings", False))
    attn_bias = bool(_get(config, "attention_bias", False))
    mlp_bias = bool(_get(config, "mlp_bias", False))
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = d * q + 2 * d * kv + q * d + (attn_bias * (q + 2 * kv + d))
    ffn = 3 * d * f + mlp_bias * (2 * f + d)
    embedding = vocab * d * (1 if tied else 2)
    norms = layers * 2 * d + d
    total = embedding + layers * (attention + ffn) + norms
    return {
        "total": total,
        "embedding": embedding,
        "attention": layers * attention,
        "ffn": layers * ffn,
        "norms": norms,
        "ffn_per_layer": ffn,
    }


def dsmoe_parameter_counts(
    config, num_experts: int, mean_active_experts: float | Sequence[float]
) -> dict[str, float]:
    """Total and activated parameters of the DSMoE conversion of a dense ``config``.

    Args:
        config: the dense (or DSMoE) config.
        num_experts: n.
        mean_active_experts: the mean number of active experts per token, one number for every
            layer or one per layer.

    Returns ``total`` (dense + routers, L d n), ``router``, ``activated`` (non-FFN + routers +
    the active share of each FFN) and ``activated_ffn_fraction``.
    """
    dense = dense_parameter_counts(config)
    layers = _get(config, "num_hidden_layers")
    d = _get(config, "hidden_size")
    if isinstance(mean_active_experts, (int, float)):
        per_layer = [float(mean_active_experts)] * layers
    else:
        per_layer = [float(a) for a in mean_active_experts]
        if len(per_layer) != layers:
            raise ValueError(f"got {len(per_layer)} per-layer counts for {layers} layers")
    if any(not 0 <= a <= num_experts for a in per_layer):
        raise ValueError(f"mean active experts {per_layer} must lie in [0, {num_experts}]")
    router = layers * d * num_experts
    active_ffn = sum(dense["ffn_per_layer"] * a / num_experts for a in per_layer)
    return {
        "total": dense["total"] + router,
        "router": router,
        "activated": dense["total"] - dense["ffn"] + router + active_ffn,
        "activated_ffn_fraction": active_ffn / dense["ffn"],
    }


__all__ = ["dense_parameter_counts", "dsmoe_parameter_counts"]
