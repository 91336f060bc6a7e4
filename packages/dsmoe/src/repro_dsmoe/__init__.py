"""DSMoE (arXiv 2502.12455): matrix-partitioned experts with dynamic routing, from a dense LLM.

``import repro_dsmoe.modeling`` (or using any model class below) registers ``DSMoEConfig`` /
``DSMoEForCausalLM`` with ``AutoConfig`` / ``AutoModelForCausalLM``; ``import repro_dsmoe`` alone
stays cheap (no torch), so that the command lines check their arguments first.
"""

from repro_core import lazy_exports

_EXPORTS = {
    "DSMoEConfig": ".modeling",
    "DSMoEForCausalLM": ".modeling",
    "DSMoEMLP": ".modeling",
    "DSMoEModelConfig": ".config",
    "dense_parameter_counts": ".accounting",
    "dsmoe_parameter_counts": ".accounting",
    "set_inference_path": ".modeling",
    "set_tau": ".modeling",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
