"""CartesianMoE (Su et al., NAACL 2025, arXiv 2410.16077) on the repro core.

Importing this package registers ``CartesianMoEConfig`` / ``CartesianMoEForCausalLM`` with
``AutoConfig`` / ``AutoModelForCausalLM`` (model_type ``repro_cartesian_moe``).
"""

from repro_cartesian_moe.layers import VARIANTS, CartesianMoEFFN, build_ffn, run_ffn
from repro_cartesian_moe.modeling import (
    MODEL_VARIANTS,
    CartesianMoEConfig,
    CartesianMoEForCausalLM,
    CartesianMoEModelConfig,
    MoELayer,
    expert_load_summary,
    record_expert_load,
    set_disable_top1,
)

__version__ = "0.1.0"

__all__ = [
    "MODEL_VARIANTS",
    "VARIANTS",
    "CartesianMoEConfig",
    "CartesianMoEFFN",
    "CartesianMoEForCausalLM",
    "CartesianMoEModelConfig",
    "MoELayer",
    "build_ffn",
    "expert_load_summary",
    "record_expert_load",
    "run_ffn",
    "set_disable_top1",
]
