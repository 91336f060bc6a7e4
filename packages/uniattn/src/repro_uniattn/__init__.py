"""UniAttn (arXiv 2502.00439): softmax unification for post-training LLMs.

Importing the package registers ``UniAttnConfig`` / ``UniAttnForCausalLM`` with
``AutoConfig`` / ``AutoModelForCausalLM``.
"""

from .modeling import (
    Compensation,
    UniAttnAttention,
    UniAttnConfig,
    UniAttnForCausalLM,
    kv_cache_bytes,
)

__all__ = [
    "Compensation",
    "UniAttnAttention",
    "UniAttnConfig",
    "UniAttnForCausalLM",
    "kv_cache_bytes",
]
