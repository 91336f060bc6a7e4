"""Small configs and a gate-forcing helper shared by the DSMoE tests."""

import torch
from repro_dsmoe.modeling import DSMoEConfig


def small_config(**overrides) -> DSMoEConfig:
    fields = dict(
        vocab_size=48,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        num_experts=8,
    )
    fields.update(overrides)
    return DSMoEConfig(**fields)


def force_gates(mlp, values: torch.Tensor | None = None) -> None:
    """Make ``mlp``'s router return fixed gate values (all ones by default) for every token."""

    def fixed(x):
        n = mlp.num_experts
        v = torch.ones(n, dtype=torch.float64) if values is None else values
        dtype = torch.promote_types(x.dtype, torch.float32)
        return v.to(dtype).expand(*x.shape[:-1], n)

    mlp.router.forward = fixed
