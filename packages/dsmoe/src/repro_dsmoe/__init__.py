"""DSMoE (arXiv 2502.12455): matrix-partitioned experts with dynamic routing, from a dense LLM.

Importing the package registers ``DSMoEConfig`` / ``DSMoEForCausalLM`` with ``AutoConfig`` /
``AutoModelForCausalLM``.
"""

from .accounting import dense_parameter_counts, dsmoe_parameter_counts
from .modeling import (
    DSMoEConfig,
    DSMoEForCausalLM,
    DSMoEMLP,
    set_inference_path,
    set_tau,
)

__all__ = [
    "DSMoEConfig",
    "DSMoEForCausalLM",
    "DSMoEMLP",
    "dense_parameter_counts",
    "dsmoe_parameter_counts",
    "set_inference_path",
    "set_tau",
]
