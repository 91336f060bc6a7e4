"""repro-core: the shared decoder, data pipeline, trainer and evaluation of the repro workspace.

Importing ``repro_core`` is cheap; the model classes (and torch/transformers) load on first use of
an attribute below, or with ``import repro_core.modeling`` (which also registers ``DecoderLM``
with ``AutoModelForCausalLM``). Tokenizer code (``repro_core.bpe``) never needs torch.
"""

import functools
import sys
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


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` for a package ``__init__`` that stays cheap to import (no torch), so that
    its command lines can check their arguments first: ``exports`` maps an attribute to the
    submodule defining it (``{"MyForCausalLM": ".modeling"}``), imported on first use.
    Importing that submodule (e.g. ``import repro_<slug>.modeling``) registers a package's
    model classes with ``AutoModelForCausalLM``."""

    def __getattr__(name: str):
        if name in exports:
            value = getattr(import_module(exports[name], package), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def no_grad(fn):
    """``torch.no_grad()`` as a decorator that imports torch when ``fn`` is called, not when it is
    defined: for functions of a module that its command line imports before checking its
    arguments (``@torch.no_grad()`` at module level would import torch there)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper
