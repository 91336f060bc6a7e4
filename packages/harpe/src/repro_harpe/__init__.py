"""HARPE (arXiv 2412.07171): head-adaptive RoPE bases for single-stage long-context extension.

Importing the package registers ``HarpeConfig`` / ``HarpeForCausalLM`` with ``AutoConfig`` /
``AutoModelForCausalLM``.
"""

from .bases import PeakValleySettings, attention_waveform, peak_valley_bases, uniform_bases
from .modeling import HarpeConfig, HarpeForCausalLM, HarpeRotaryEmbedding, set_rope

__all__ = [
    "HarpeConfig",
    "HarpeForCausalLM",
    "HarpeRotaryEmbedding",
    "PeakValleySettings",
    "attention_waveform",
    "peak_valley_bases",
    "set_rope",
    "uniform_bases",
]
