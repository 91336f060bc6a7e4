"""Finedeep (arXiv 2502.12928): multi-layer fine-grained experts in a dense LLM.

``import repro_finedeep.modeling`` (or using any model class below) registers ``FinedeepConfig`` /
``FinedeepForCausalLM`` with ``AutoConfig`` / ``AutoModelForCausalLM``; ``import repro_finedeep``
alone stays cheap (no torch), so that the command lines check their arguments first.
"""

from repro_core import lazy_exports

_EXPORTS = {
    "FinedeepConfig": ".modeling",
    "FinedeepForCausalLM": ".modeling",
    "FinedeepMLP": ".modeling",
    "FinedeepModelConfig": ".config",
    "FinedeepSubLayer": ".modeling",
    "NSARCollector": ".nsar",
    "measure_nsar": ".nsar",
    "nsar": ".nsar",
    "router_parameter_count": ".modeling",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
