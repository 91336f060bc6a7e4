"""Next-token prediction towards multimodal intelligence (survey, arXiv 2412.18619) as an
executable taxonomy: image tokenizers, one decoder over text and image tokens, attention masks,
objectives, task templates, constrained decoding and the survey's metrics at toy scale.

``import repro_mmntp.modeling`` (or using a model class below) registers ``MMNTPConfig`` /
``MMNTPForCausalLM`` with ``AutoConfig`` / ``AutoModelForCausalLM``; ``import repro_mmntp`` alone
stays cheap (no torch), so that the command lines check their arguments first.
"""

from repro_core import lazy_exports

_EXPORTS = {
    "MMNTPConfig": ".modeling",
    "MMNTPForCausalLM": ".modeling",
    "MMNTPRunConfig": ".config",
    "Vocabulary": ".vocab",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
