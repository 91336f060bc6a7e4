"""A `transformers` tokenizer over a compiled byte-level encoder (the tokenizer papers' base class).

The workspace's tokenizers (Scaffold-BPE, LBPE) encode with their own numba kernels; what makes
them usable by the core trainer, `generate()` and lm-eval is the same thin HF layer in each case.
`ByteLevelTokenizer` is that layer: a package subclass builds its encoder and calls
:meth:`ByteLevelTokenizer._set_encoder` before ``super().__init__``, and implements
``save_vocabulary``. Everything else (vocabulary maps, fast `encode`/`__call__` paths, decoding,
special tokens) lives here.

Token strings are the GPT-2 `bytes_to_unicode` spelling of the token's bytes (special tokens: their
text), so `convert_ids_to_tokens` reads like GPT-2's. Tokens added later with `add_tokens` fall back
to the generic `transformers` path.

The encoder contract: ``encode(text, allowed_special: bool) -> list[int]`` (special-token strings
become their ids when allowed) and ``encode_ordinary(text) -> list[int]`` (never).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from transformers import PreTrainedTokenizer

from .bpe import bytes_to_unicode


class ByteEncoder(Protocol):
    def encode(self, text: str, allowed_special: bool = ...) -> list[int]: ...

    def encode_ordinary(self, text: str) -> list[int]: ...


_UNSUPPORTED_BY_THE_BATCH_PATH = (
    "is_split_into_words",
    "sanitize_control_tokens",
    "return_overflowing_tokens",
    "return_special_tokens_mask",
    "return_length",
    "return_token_type_ids",
)


class ByteLevelTokenizer(PreTrainedTokenizer):
    """HF slow tokenizer whose ids 0..len(token_bytes)-1 are the encoder's output ids."""

    model_input_names = ["input_ids", "attention_mask"]

    def _set_encoder(
        self,
        encoder: ByteEncoder,
        token_bytes: Sequence[bytes],
        special_tokens: Mapping[str, int],
    ) -> None:
        """Install the encoder, the bytes of every output id and the special tokens' output ids.

        Call before ``PreTrainedTokenizer.__init__`` (which reads the vocabulary)."""
        self._byte_encoder = encoder
        self._token_bytes = token_bytes
        self._special_token_ids = dict(special_tokens)
        to_char = bytes_to_unicode()
        self._byte_of_char = {c: b for b, c in to_char.items()}
        special_of_id = {i: s for s, i in special_tokens.items()}
        self._id_to_token = [
            special_of_id.get(i, "".join(to_char[x] for x in tb))
            for i, tb in enumerate(token_bytes)
        ]
        self._token_to_id: dict[str, int] = {}
        for i, t in enumerate(self._id_to_token):  # a duplicated spelling keeps its first id
            self._token_to_id.setdefault(t, i)

    def _eos_if_known(self, eos_token: str | None) -> str | None:
        """`eos_token` when the vocabulary has it as a special token, else None."""
        return (
            eos_token
            if eos_token is not None and str(eos_token) in self._special_token_ids
            else None
        )

    # -- vocabulary ------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """The number of output ids (= the embedding size a model needs)."""
        return len(self._token_bytes)

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._token_to_id)
        vocab.update(getattr(self, "_added_tokens_encoder", {}))
        return vocab

    def _convert_token_to_id(self, token: str) -> int:
        return self._token_to_id[token]

    def _convert_id_to_token(self, index: int) -> str:
        return self._id_to_token[index]

    def _has_foreign_added_tokens(self) -> bool:
        return any(t not in self._special_token_ids for t in self._added_tokens_encoder)

    # -- encoding --------------------------------------------------------------------------------

    def encode_ids(self, text: str, allow_special: bool = True) -> list[int]:
        """Output ids of `text` (fast path; special-token strings map to their ids if allowed)."""
        return self._byte_encoder.encode(text, allowed_special=allow_special)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [self._id_to_token[i] for i in self._byte_encoder.encode_ordinary(text)]

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        if self._has_foreign_added_tokens():
            return super().tokenize(text, **kwargs)
        split_special = kwargs.pop("split_special_tokens", self.split_special_tokens)
        return [self._id_to_token[i] for i in self.encode_ids(text, not split_special)]

    def _plain_batch(self, text, text_pair, kwargs: dict) -> bool:
        """A batch of strings with nothing for transformers to add, pad, truncate or convert."""
        from transformers.tokenization_utils_base import TruncationStrategy
        from transformers.utils import PaddingStrategy

        return (
            isinstance(text, list | tuple)
            and bool(text)
            and all(isinstance(t, str) for t in text)
            and text_pair is None
            and kwargs.get("padding_strategy", PaddingStrategy.DO_NOT_PAD)
            == PaddingStrategy.DO_NOT_PAD
            and kwargs.get("truncation_strategy", TruncationStrategy.DO_NOT_TRUNCATE)
            == TruncationStrategy.DO_NOT_TRUNCATE
            and kwargs.get("return_tensors") is None
            and not any(kwargs.get(k) for k in _UNSUPPORTED_BY_THE_BATCH_PATH)
            and self.build_inputs_with_special_tokens([0]) == [0]  # adds no BOS/EOS
            and not self._has_foreign_added_tokens()
        )

    def _encode_plus(self, text, text_pair=None, **kwargs: Any):
        allow = not kwargs.get("split_special_tokens", self.split_special_tokens)
        # Batches (the data pipeline): one encoder call per text, no per-item transformers
        # bookkeeping. Same ids as the per-item path (tested).
        if self._plain_batch(text, text_pair, kwargs):
            from transformers import BatchEncoding

            ids = [self.encode_ids(t, allow) for t in text]
            out = {"input_ids": ids}
            if kwargs.get("return_attention_mask") is not False:
                out["attention_mask"] = [[1] * len(x) for x in ids]
            return BatchEncoding(out)
        # Plain strings: hand transformers ready-made ids (it accepts lists of ints).
        simple = not kwargs.get("is_split_into_words") and not kwargs.get("sanitize_control_tokens")
        if simple and not self._has_foreign_added_tokens():
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
        for t in tokens:
            if t in self._special_token_ids or t in self._added_tokens_encoder:
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
        n = len(self._token_bytes)
        token_bytes = self._token_bytes
        added = self._added_tokens_decoder
        out = bytearray()
        for i in map(int, token_ids):
            if i in skip:
                continue
            if 0 <= i < n:
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

    def _save_path(self, save_directory: str, filename_prefix: str | None, name: str) -> str:
        """Where `save_vocabulary` writes `name` (the directory must exist, as in transformers)."""
        import os

        if not os.path.isdir(save_directory):
            raise NotADirectoryError(
                f"save_vocabulary needs an existing directory: {save_directory}"
            )
        return os.path.join(
            save_directory, (f"{filename_prefix}-" if filename_prefix else "") + name
        )
