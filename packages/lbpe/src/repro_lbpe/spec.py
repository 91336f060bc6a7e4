"""The ``lbpe:...`` spec of ``data.tokenizer``, parsed and checked without transformers or torch
(the command lines check it before importing the heavy stack; ``repro_lbpe.tokenizer`` builds
the tokenizer from it)."""

from __future__ import annotations

import os
from pathlib import Path

from repro_core.bpe import GPT2_PATTERN, GPT2_SPLIT_DIGITS_PATTERN
from repro_core.config import ConfigError, MissingInputError

from repro_lbpe.lbpe import READINGS, TIES
from repro_lbpe.vocab import SCAFFOLD_ORDERS

VOCAB_FILE = "lbpe_vocab.json"
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt2-split-digits": GPT2_SPLIT_DIGITS_PATTERN}
OPTIONS = {"reading": READINGS, "tie": TIES, "order": SCAFFOLD_ORDERS, "pattern": tuple(PATTERNS)}


def parse_spec(rest: str) -> tuple[str, dict[str, str]]:
    """`"scaffold:4096:tie=rank"` -> ("scaffold:4096", {"tie": "rank"}); raises a one-line
    :class:`ConfigError` (a ValueError) naming the bad part and the allowed values."""
    parts = os.path.expandvars(rest).split(":")
    options = {}
    source_parts = []
    for p in parts:
        if "=" in p:
            key, _, value = p.partition("=")
            if key not in OPTIONS or value not in OPTIONS[key]:
                allowed = ", ".join(f"{k}={'|'.join(v)}" for k, v in OPTIONS.items())
                raise ConfigError(
                    f"data.tokenizer=lbpe:{rest}: bad option {p!r}; allowed: {allowed}"
                )
            options[key] = value
        else:
            source_parts.append(p)
    source = ":".join(source_parts)
    if not source:
        raise ConfigError(
            f"data.tokenizer=lbpe:{rest}: no vocabulary source; use lbpe:N, lbpe:bpe:N, "
            "lbpe:scaffold:N or lbpe:<HF tokenizer directory>"
        )
    return source, options


def _trained_size(source: str) -> tuple[str, int] | None:
    method, _, size = source.rpartition(":")
    method = method or "bpe"
    if size.isdigit() and method in ("bpe", "scaffold"):
        if int(size) < 257:
            raise ConfigError(f"lbpe:{source}: N must be >= 257 (256 bytes + <|endoftext|>)")
        return method, int(size)
    return None


def check_spec(rest: str) -> None:
    """Raise a one-line :class:`ConfigError` / :class:`MissingInputError` when ``lbpe:REST``
    cannot name a vocabulary: bad options, N < 257, or a source directory that is not there."""
    source, _ = parse_spec(rest)
    if _trained_size(source) is None and not Path(source).expanduser().exists():
        raise MissingInputError(
            f"data.tokenizer=lbpe:{rest}: {source!r} is not N, bpe:N, scaffold:N or an existing "
            f"directory (with {VOCAB_FILE} or a HF tokenizer)"
        )


__all__ = ["OPTIONS", "PATTERNS", "VOCAB_FILE", "check_spec", "parse_spec"]
