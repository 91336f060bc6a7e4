"""The core's HF byte-level tokenizer layer, on a toy byte encoder whose ids are known by hand."""

from __future__ import annotations

import pytest
from repro_core.bpe import bytes_to_unicode
from repro_core.byte_tokenizer import ByteLevelTokenizer

EOT = "<|endoftext|>"


class ToyBytes:
    """Id b for byte b; id 256 for EOT where allowed (a reference the tests can spell out)."""

    def encode_ordinary(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode(self, text: str, allowed_special: bool = True) -> list[int]:
        if not allowed_special:
            return self.encode_ordinary(text)
        parts = text.split(EOT)
        out = self.encode_ordinary(parts[0])
        for p in parts[1:]:
            out += [256, *self.encode_ordinary(p)]
        return out


class ToyTokenizer(ByteLevelTokenizer):
    def __init__(self, eos_token: str | None = EOT, **kwargs):
        self._set_encoder(ToyBytes(), [bytes([b]) for b in range(256)] + [EOT.encode()], {EOT: 256})
        super().__init__(eos_token=self._eos_if_known(eos_token), **kwargs)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        return ()


@pytest.fixture(scope="module")
def tok():
    return ToyTokenizer()


def test_ids_are_the_encoders_and_tokens_are_gpt2_spellings(tok):
    text = "héllo wörld"
    ids = list(text.encode("utf-8"))
    assert tok(text)["input_ids"] == ids
    assert tok.encode(text) == ids
    to_char = bytes_to_unicode()
    assert tok.convert_ids_to_tokens(ids) == [to_char[b] for b in ids]
    assert tok.decode(ids) == text
    assert tok.convert_tokens_to_string(tok.tokenize(text)) == text
    assert tok.vocab_size == len(tok) == 257


def test_special_token_is_one_id_unless_split(tok):
    assert tok.eos_token == EOT and tok.eos_token_id == 256
    assert tok.encode(f"a{EOT}b") == [97, 256, 98]
    assert tok.encode(f"a{EOT}b", split_special_tokens=True) == list(f"a{EOT}b".encode())
    assert tok.decode([97, 256, 98], skip_special_tokens=True) == "ab"
    assert ToyTokenizer(eos_token="<none>").eos_token is None  # not in the vocabulary: no EOS


def test_batch_fast_path_equals_per_item_calls(tok):
    texts = ["one", "", f"two{EOT}", "drei ünd vier"]
    batch = tok(texts)
    assert batch["input_ids"] == [tok(t)["input_ids"] for t in texts]
    assert batch["input_ids"][2] == [*b"two", 256]
    assert batch["attention_mask"] == [[1] * len(ids) for ids in batch["input_ids"]]
    padded = ToyTokenizer(pad_token=EOT)(texts, padding=True)  # the generic transformers path
    longest = len("drei ünd vier".encode())
    assert [len(x) for x in padded["input_ids"]] == [longest] * 4
    assert padded["input_ids"][0] == [*b"one"] + [256] * (longest - 3)


def test_out_of_range_id_names_the_vocabulary_size(tok):
    with pytest.raises(IndexError, match="outside the vocabulary of size 257"):
        tok.decode([300])
