"""CartesianMoE (Su et al., NAACL 2025, arXiv 2410.16077) on the repro core.

``import repro_cartesian_moe.modeling`` (or using any model class below) registers
``CartesianMoEConfig`` / ``CartesianMoEForCausalLM`` with ``AutoConfig`` /
``AutoModelForCausalLM`` (model_type ``repro_cartesian_moe``); ``import repro_cartesian_moe``
alone stays cheap (no torch), so that the command lines check their arguments first.
"""

from repro_core import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "HASH_TABLES": ".config",
    "MODEL_VARIANTS": ".config",
    "VARIANTS": ".config",
    "CartesianMoEConfig": ".modeling",
    "CartesianMoEFFN": ".layers",
    "CartesianMoEForCausalLM": ".modeling",
    "CartesianMoEModelConfig": ".config",
    "MoELayer": ".modeling",
    "build_ffn": ".layers",
    "expert_load_summary": ".modeling",
    "record_expert_load": ".modeling",
    "run_ffn": ".layers",
    "set_disable_top1": ".modeling",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
