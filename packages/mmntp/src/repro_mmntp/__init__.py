"""Next-token prediction towards multimodal intelligence (survey, arXiv 2412.18619) as an
executable taxonomy: image tokenizers, one decoder over text and image tokens, attention masks,
objectives, task templates, constrained decoding and the survey's metrics at toy scale."""

from .modeling import MMNTPConfig, MMNTPForCausalLM
from .vocab import Vocabulary

__all__ = ["MMNTPConfig", "MMNTPForCausalLM", "Vocabulary"]
