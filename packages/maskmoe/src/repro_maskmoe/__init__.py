"""MaskMoE (arXiv 2407.09816): a fixed per-token-id routing mask between hash and learned routing.

``import repro_maskmoe.modeling`` (or using a model class below) registers ``MaskMoEConfig`` /
``MaskMoEForCausalLM`` with ``AutoConfig`` / ``AutoModelForCausalLM``; ``import repro_maskmoe``
alone stays cheap (no torch), so that the command lines check their arguments first.
"""

from repro_core import lazy_exports

_EXPORTS = {
    "MaskMoEConfig": ".modeling",
    "MaskMoEForCausalLM": ".modeling",
    "MaskMoEModelConfig": ".config",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
