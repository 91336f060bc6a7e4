"""The HF tokenizer wrapper and the training CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from repro_core.bpe import count_pieces
from repro_scaffold_bpe.cli import main as cli_main
from repro_scaffold_bpe.hf_tokenizer import ScaffoldBpeTokenizer
from repro_scaffold_bpe.scaffold import train_scaffold_bpe
from transformers import PreTrainedTokenizer

TEXT = (
    "The Arizona database connects international reporting! zona Arizonan Californians "
    "uncovered reinterpretations 1999, 2024 and 65536; Café 東京 🙂\n\n<|endoftext|>"
) * 6


@pytest.fixture(scope="module")
def tokenizer():
    model = train_scaffold_bpe(count_pieces(TEXT), 270)
    assert model.scaffold_ids
    return ScaffoldBpeTokenizer(model=model)


def test_is_a_pretrained_tokenizer_with_compact_vocab(tokenizer):
    assert isinstance(tokenizer, PreTrainedTokenizer)
    assert len(tokenizer) == tokenizer.vocab_size == 270
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 256
    assert sorted(tokenizer.get_vocab().values()) == list(range(270))


def test_call_encode_decode_agree_with_the_model(tokenizer):
    text = "zona Arizona<|endoftext|>Arizonan 2024"
    ids = tokenizer.model.encoder().encode(text)
    assert tokenizer(text)["input_ids"] == ids
    assert tokenizer.encode(text) == ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids, skip_special_tokens=True) == "zona ArizonaArizonan 2024"
    assert tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(ids)) == text


def test_fast_path_equals_generic_transformers_path(tokenizer):
    text = "Arizonan reporting <|endoftext|> 東京🙂  x"
    generic = PreTrainedTokenizer.tokenize(tokenizer, text)  # trie split + our _tokenize
    assert tokenizer.convert_tokens_to_ids(generic) == tokenizer.encode(text)
    assert tokenizer.tokenize(text) == generic


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=50))
def test_roundtrip_through_hf_api(tokenizer, text):
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_batch_padding_and_tensors(tokenizer):
    tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(["zona", "Arizona database", ""], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == 3
    assert batch["attention_mask"].sum(dim=1).tolist() == [
        len(tokenizer.encode(t)) for t in ["zona", "Arizona database", ""]
    ]


def test_save_and_load_pretrained(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    loaded = ScaffoldBpeTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == len(tokenizer) and loaded.eos_token_id == tokenizer.eos_token_id
    assert loaded.model.scaffold_ids == tokenizer.model.scaffold_ids
    assert loaded.encode(TEXT[:300]) == tokenizer.encode(TEXT[:300])


def test_auto_tokenizer_loads_a_saved_tokenizer(tmp_path, tokenizer):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, ScaffoldBpeTokenizer)
    assert loaded.encode(TEXT[:200]) == tokenizer.encode(TEXT[:200])


def test_cli_writes_tokenizer_and_summary(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(TEXT[:600], encoding="utf-8")
    (corpus / "b.txt").write_text(TEXT[600:], encoding="utf-8")
    out = tmp_path / "out"
    assert cli_main(["--input", str(corpus), "--vocab-size", "275", "--out", str(out)]) == 0
    summary = json.loads((out / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["vocab_size"] == 275 and len(summary["input_files"]) == 2
    assert summary["expanded_vocab_size"] == 275 + len(summary["scaffold_tokens"])
    assert len(summary["merges"]) == summary["expanded_vocab_size"] - 257
    assert set(summary["demolish"]) == {str(s) for s, _ in summary["scaffold_tokens"]}
    tok = ScaffoldBpeTokenizer.from_pretrained(out)
    assert tok.decode(tok.encode("Arizona zona")) == "Arizona zona"

    assert (
        cli_main(
            [
                "--input",
                str(corpus),
                "--vocab-size",
                "270",
                "--method",
                "bpe",
                "--out",
                str(out / "bpe"),
            ]
        )
        == 0
    )
    bpe = json.loads((out / "bpe" / "training_summary.json").read_text(encoding="utf-8"))
    assert bpe["scaffold_tokens"] == [] and bpe["vocab_size"] == 270


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "/no/such/file.txt", "--vocab-size", "300"], "does not exist"),
        (["--vocab-size", "256"], "must be at least 257"),
        (["--vocab-size", "300", "--regex", "(unclosed"], "invalid pre-tokenisation regex"),
        (["--vocab-size", "300", "--method", "wordpiece"], "invalid choice"),
    ],
)
def test_cli_errors_are_clear(tmp_path, capsys, args, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text("some text", encoding="utf-8")
    argv = (
        (["--input", str(corpus)] if "--input" not in args else [])
        + args
        + ["--out", str(tmp_path / "o")]
    )
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_cli_empty_input_is_an_error(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    argv = ["--input", str(tmp_path / "empty.txt"), "--vocab-size", "300"]
    assert cli_main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "holds no text" in capsys.readouterr().err
