"""HARPE (arXiv 2412.07171): head-adaptive RoPE bases for single-stage long-context extension.

``import repro_harpe.modeling`` (or using any model class below) registers ``HarpeConfig`` /
``HarpeForCausalLM`` with ``AutoConfig`` / ``AutoModelForCausalLM``; ``import repro_harpe`` alone
stays cheap (no torch), so that the command lines check their arguments first.
"""

from repro_core import lazy_exports

_EXPORTS = {
    "HarpeConfig": ".modeling",
    "HarpeForCausalLM": ".modeling",
    "HarpeModelConfig": ".config",
    "HarpeRotaryEmbedding": ".modeling",
    "PeakValleySettings": ".bases",
    "attention_waveform": ".bases",
    "peak_valley_bases": ".bases",
    "set_rope": ".modeling",
    "uniform_bases": ".bases",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
