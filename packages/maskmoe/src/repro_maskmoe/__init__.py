"""MaskMoE (arXiv 2407.09816): a fixed per-token-id routing mask between hash and learned routing."""

from repro_maskmoe.modeling import MaskMoEConfig, MaskMoEForCausalLM, MaskMoEModelConfig

__all__ = ["MaskMoEConfig", "MaskMoEForCausalLM", "MaskMoEModelConfig"]
