"""Scaffold-BPE as a `transformers` tokenizer (for the data pipeline, `generate()` and lm-eval).

Ids are the compact model ids 0..N-1 over the normal tokens V; scaffold tokens never appear. A token
string is the GPT-2 `bytes_to_unicode` spelling of the token's bytes (special tokens: their text).
`encode` / `__call__` take a fast path through our cached encoder; tokens added later with
`add_tokens` fall back to the generic `transformers` path.

    tok = ScaffoldBpeTokenizer.from_pretrained("out/tokenizer")
    ids = tok("Hello world")["input_ids"];  tok.decode(ids) == "Hello world"

Importing this module registers the class with `AutoTokenizer`, so `AutoTokenizer.from_pretrained(dir)`
(e.g. `repro_core.data.get_tokenizer(dir)`) loads a saved Scaffold-BPE tokenizer without remote code.
"""

from __future__ import annotations

import os
from typing import Any

from repro_core.bpe import bytes_to_unicode
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizer

from repro_scaffold_bpe.scaffold import ScaffoldBpe

MODEL_FILE = "scaffold_bpe.json"


class ScaffoldBpeTokenizer(PreTrainedTokenizer):
    """HF tokenizer over a `ScaffoldBpe` model (a plain BPE is a ScaffoldBpe with no scaffold tokens).

    Args:
        model_file: path of a `scaffold_bpe.json` written by `ScaffoldBpe.save` / `save_pretrained`.
        model: an in-memory `ScaffoldBpe` instead of `model_file`.
        semantics: BPE semantics of the encoder, "merges" (HF) or "token_rank" (tiktoken).
        eos_token: defaults to `<|endoftext|>` when the model has it. No BOS/EOS is added by `encode`.
    """

    vocab_files_names = {"model_file": MODEL_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        model_file: str | None = None,
        model: ScaffoldBpe | None = None,
        semantics: str = "merges",
        eos_token: str | None = "<|endoftext|>",
        clean_up_tokenization_spaces: bool = False,
        **kwargs: Any,
    ) -> None:
        if model is None:
            if model_file is None:
                raise ValueError(
                    "pass model_file=<path to scaffold_bpe.json> or model=ScaffoldBpe(...)"
                )
            model = ScaffoldBpe.load(model_file)
        self.model = model
        self.semantics = semantics
        self._encoder = model.encoder(semantics)
        to_char = bytes_to_unicode()
        self._byte_of_char = {c: b for b, c in to_char.items()}
        specials = {model.model_id_of[i]: s for s, i in model.special_tokens.items()}
        self._id_to_token = [
            specials.get(m, "".join(to_char[x] for x in tb))
            for m, tb in enumerate(model.model_token_bytes)
        ]
        self._token_to_id = {t: m for m, t in enumerate(self._id_to_token)}
        if eos_token is not None and str(eos_token) not in model.special_tokens:
            eos_token = None
        super().__init__(
            eos_token=eos_token,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            semantics=semantics,
            **kwargs,
        )

    # -- vocabulary ------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """N, the number of normal tokens (= the embedding size a model needs)."""
        return self.model.vocab_size

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._token_to_id)
        vocab.update(getattr(self, "_added_tokens_encoder", {}))
        return vocab

    def _convert_token_to_id(self, token: str) -> int:
        return self._token_to_id[token]

    def _convert_id_to_token(self, index: int) -> str:
        return self._id_to_token[index]

    def _has_foreign_added_tokens(self) -> bool:
        return any(t not in self.model.special_tokens for t in self._added_tokens_encoder)

    # -- encoding --------------------------------------------------------------------------------

    def encode_ids(self, text: str, allow_special: bool = True) -> list[int]:
        """Model ids of `text` (fast path; special-token strings map to their ids unless disallowed)."""
        return self._encoder.encode(text, allowed_special=allow_special)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [self._id_to_token[i] for i in self._encoder.encode_ordinary(text)]

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        if self._has_foreign_added_tokens():
            return super().tokenize(text, **kwargs)
        split_special = kwargs.pop("split_special_tokens", self.split_special_tokens)
        return [
            self._id_to_token[i] for i in self.encode_ids(text, allow_special=not split_special)
        ]

    def _encode_plus(self, text, text_pair=None, **kwargs: Any):
        # Fast path: hand transformers ready-made ids for plain strings (it accepts lists of ints).
        simple = not kwargs.get("is_split_into_words") and not kwargs.get("sanitize_control_tokens")
        if simple and not self._has_foreign_added_tokens():
            allow = not kwargs.get("split_special_tokens", self.split_special_tokens)
            if isinstance(text, str) and (text_pair is None or isinstance(text_pair, str)):
                ids = self.encode_ids(text, allow)
                pair_ids = self.encode_ids(text_pair, allow) if text_pair is not None else None
                if ids and (pair_ids is None or pair_ids):  # empty lists would read as a batch
                    kwargs.pop("split_special_tokens", None)
                    return super()._encode_plus(ids, pair_ids, **kwargs)
        return super()._encode_plus(text, text_pair, **kwargs)

    # -- decoding --------------------------------------------------------------------------------

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        out = bytearray()
        specials = self.model.special_tokens
        for t in tokens:
            if t in specials or t in self._added_tokens_encoder:
                out += t.encode("utf-8")
            else:
                out += bytes(self._byte_of_char[c] for c in t)
        return out.decode("utf-8", errors="replace")

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        n = self.model.vocab_size
        token_bytes = self._encoder.output_token_bytes
        added = self._added_tokens_decoder
        out = bytearray()
        for i in map(int, token_ids):
            if i in skip:
                continue
            if i < n:
                out += token_bytes[i]
            elif i in added:
                out += added[i].content.encode("utf-8")
            else:
                raise IndexError(f"token id {i} is outside the vocabulary of size {len(self)}")
        text = out.decode("utf-8", errors="replace")
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return self.clean_up_tokenization(text) if clean else text

    # -- saving ----------------------------------------------------------------------------------

    def save_vocabulary(
        self, save_directory: str, filename_prefix: str | None = None
    ) -> tuple[str, ...]:
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(
                f"save_vocabulary needs an existing directory, got {save_directory}"
            )
        path = os.path.join(
            save_directory, (f"{filename_prefix}-" if filename_prefix else "") + MODEL_FILE
        )
        self.model.save(path)
        return (path,)


class ScaffoldBpeTokenizerConfig(PretrainedConfig):
    """Marker config: `AutoTokenizer.register` needs one to find `ScaffoldBpeTokenizer` by name."""

    model_type = "scaffold_bpe_tokenizer"


AutoTokenizer.register(
    ScaffoldBpeTokenizerConfig, slow_tokenizer_class=ScaffoldBpeTokenizer, exist_ok=True
)
