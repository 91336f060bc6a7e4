"""repro-core: the shared decoder, data pipeline, trainer and evaluation of the repro workspace.

Importing ``repro_core`` is cheap; the model classes (and torch/transformers) load on first use of
an attribute below, or with ``import repro_core.modeling`` (which also registers ``DecoderLM``
with ``AutoModelForCausalLM``). Tokenizer code (``repro_core.bpe``) never needs torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "DecoderConfig": "modeling",
    "DecoderLM": "modeling",
    "count_parameters": "modeling",
    "flops_per_token": "modeling",
    "load_llama_checkpoint": "modeling",
    "ForwardState": "layers",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'repro_core' has no attribute {name!r}")
