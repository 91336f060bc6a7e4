"""One vocabulary over text words, image codes and the survey's special tokens (spec B.5).

Layout of the ids (Chameleon/Emu3 style: the image codes are ordinary ids of the one vocabulary)::

    0 .. S-1            specials  <pad> <bos> <eos> <boi> <eoi> <cap> <gen>
    S .. S+W-1          text words (a closed word vocabulary)
    S+W .. S+W+K-1      image codes 0..K-1 of the image tokenizer
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPECIALS = ("<pad>", "<bos>", "<eos>", "<boi>", "<eoi>", "<cap>", "<gen>")
CLASS_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTE_WORDS = {
    "thickness": ("thin", "thick"),
    "slant": ("left", "right"),
    "size": ("small", "large"),
}
TEMPLATE_WORDS = ("a", "digit", "the", "number", "written", "and", "slanted", ",", "is", "then")
# Made-up label words for the in-context probe: training episodes draw from the first list, the
# probe only from the second, so a correct answer must be read from the context.
NOVEL_TRAIN_WORDS = ("dax", "wug", "blick", "fep", "toma", "zup", "kiki", "lorp")
NOVEL_TEST_WORDS = ("bouba", "mib", "tufa", "gazzer", "slom", "quib")


class Vocabulary:
    """Closed word vocabulary + ``num_codes`` image codes + specials.

    Args:
        num_codes: image codes K of the image tokenizer (all levels of a residual quantizer).
    """

    def __init__(self, num_codes: int):
        if num_codes <= 0:
            raise ValueError(f"num_codes={num_codes} must be positive")
        words = (
            list(TEMPLATE_WORDS)
            + list(CLASS_WORDS)
            + [w for pair in ATTRIBUTE_WORDS.values() for w in pair]
            + list(NOVEL_TRAIN_WORDS)
            + list(NOVEL_TEST_WORDS)
        )
        self.tokens: list[str] = list(SPECIALS) + words
        self.word_start = len(SPECIALS)
        self.code_start = len(self.tokens)
        self.num_codes = num_codes
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return self.code_start + self.num_codes

    def __getattr__(self, name: str) -> int:
        # vocab.boi, vocab.eos, ... for the specials
        token = f"<{name}>"
        if name.startswith("_") or token not in SPECIALS:
            raise AttributeError(name)
        return self.index[token]

    @property
    def code_range(self) -> tuple[int, int]:
        """[start, stop) of the image-code ids."""
        return self.code_start, self.code_start + self.num_codes

    def is_code(self, ids: np.ndarray) -> np.ndarray:
        lo, hi = self.code_range
        return (ids >= lo) & (ids < hi)

    def word_ids(self, words: Sequence[str]) -> list[int]:
        """Ids of space-separated words; an unknown word raises naming it."""
        out = []
        for w in words:
            if w not in self.index:
                raise KeyError(f"word {w!r} is not in the vocabulary; known: {self.tokens}")
            out.append(self.index[w])
        return out

    def encode_text(self, text: str) -> list[int]:
        return self.word_ids(text.split())

    def codes_to_ids(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.int64) + self.code_start

    def decode(self, ids: Sequence[int]) -> str:
        """Readable string; image codes print as ``v<code>``."""
        out = []
        for i in ids:
            i = int(i)
            out.append(self.tokens[i] if i < self.code_start else f"v{i - self.code_start}")
        return " ".join(out)
