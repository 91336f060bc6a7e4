"""Finedeep (arXiv 2502.12928): multi-layer fine-grained experts in a dense LLM.

Importing the package registers ``FinedeepConfig`` / ``FinedeepForCausalLM`` with
``AutoConfig`` / ``AutoModelForCausalLM``.
"""

from .config import FinedeepModelConfig
from .modeling import (
    FinedeepConfig,
    FinedeepForCausalLM,
    FinedeepMLP,
    FinedeepSubLayer,
    router_parameter_count,
)
from .nsar import NSARCollector, measure_nsar, nsar

__all__ = [
    "FinedeepConfig",
    "FinedeepForCausalLM",
    "FinedeepMLP",
    "FinedeepModelConfig",
    "FinedeepSubLayer",
    "NSARCollector",
    "measure_nsar",
    "nsar",
    "router_parameter_count",
]
