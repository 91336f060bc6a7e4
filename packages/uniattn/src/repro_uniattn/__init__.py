"""UniAttn (arXiv 2502.00439): softmax unification for post-training LLMs.

``import repro_uniattn.modeling`` (or using any model class below) registers ``UniAttnConfig`` /
``UniAttnForCausalLM`` with ``AutoConfig`` / ``AutoModelForCausalLM``; ``import repro_uniattn``
alone stays cheap (no torch), so that the command lines check their arguments first.
"""

from repro_core import lazy_exports

_EXPORTS = {
    "Compensation": ".modeling",
    "UniAttnAttention": ".modeling",
    "UniAttnConfig": ".modeling",
    "UniAttnForCausalLM": ".modeling",
    "UniAttnModelConfig": ".config",
    "kv_cache_bytes": ".modeling",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
