"""repro-core: the shared decoder, data pipeline, trainer and evaluation of the repro workspace."""

from .layers import ForwardState
from .modeling import (
    DecoderConfig,
    DecoderLM,
    count_parameters,
    flops_per_token,
    load_llama_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "DecoderConfig",
    "DecoderLM",
    "ForwardState",
    "count_parameters",
    "flops_per_token",
    "load_llama_checkpoint",
]
