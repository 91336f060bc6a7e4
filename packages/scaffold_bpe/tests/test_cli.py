"""The tokenizer command line: HF conventions equal tokenizers' BpeTrainer on a real file, the
tokenizer directory it writes without transformers equals save_pretrained's, and it imports
neither torch nor transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from repro_core.bpe import ENDOFTEXT, bytes_to_unicode
from repro_core.data import data_dir
from repro_scaffold_bpe.cli import main, save_tokenizer_dir, split_lines

WIKITEXT = (data_dir() / "wikitext-2" / "train.txt") if data_dir() else None
needs_wikitext = pytest.mark.skipif(
    WIKITEXT is None or not WIKITEXT.is_file(), reason="needs wikitext-2 under the data folder"
)


@pytest.fixture(scope="module")
def wikitext_slice(tmp_path_factory) -> Path:
    """The first 1,500 lines of wikitext-2 train: headings, paragraphs and blank ' \\n' lines."""
    lines = WIKITEXT.read_text(encoding="utf-8").split("\n")[:1500]
    path = tmp_path_factory.mktemp("wiki") / "slice.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert sum(line.strip() == "" for line in lines) > 100
    return path


def hf_merges(path: Path, vocab_size: int) -> list[tuple[str, str]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[ENDOFTEXT],
    )
    tok.train([str(path)], trainer)
    return [tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]]


def cli_merges(out: Path) -> list[tuple[str, str]]:
    """Our merges as HF byte-level strings (tokens from scaffold_bpe.json)."""
    model = json.loads((out / "scaffold_bpe.json").read_text())
    to_char = bytes_to_unicode()
    tokens = ["".join(to_char[b] for b in t.encode("latin-1")) for t in model["tokens_latin1"]]
    return [(tokens[a], tokens[b]) for a, b, _ in model["merges"]]


@needs_wikitext
def test_hf_conventions_give_bpetrainer_merges_on_a_file_with_blank_lines(wikitext_slice, tmp_path):
    vocab = 420
    args = ["--input", str(wikitext_slice), "--vocab-size", str(vocab), "--method", "bpe"]
    assert main([*args, "--conventions", "hf", "--out", str(tmp_path / "hf")]) == 0
    ours, theirs = cli_merges(tmp_path / "hf"), hf_merges(wikitext_slice, vocab)
    assert len(ours) == len(theirs) > 100
    assert ours == theirs


def test_split_lines_splits_on_newline_only_and_keeps_it():
    assert split_lines("a\n \n\nb\rc\x0cd") == ["a\n", " \n", "\n", "b\rc\x0cd"]
    assert split_lines("x\n") == ["x\n"]


def test_tokenizer_dir_without_transformers_equals_save_pretrained(tmp_path):
    from repro_core.bpe import PreTokenizer, count_pieces
    from repro_scaffold_bpe.hf_tokenizer import ScaffoldBpeTokenizer
    from repro_scaffold_bpe.scaffold import train_scaffold_bpe

    pretok = PreTokenizer(special_tokens=[ENDOFTEXT])
    text = "the cat sat on the mat; the cats sat.<|endoftext|>aaaa abab abab\n" * 20
    model = train_scaffold_bpe(count_pieces(text, pretok), 300, pretok)
    save_tokenizer_dir(model, tmp_path / "ours")
    ScaffoldBpeTokenizer(model=model).save_pretrained(str(tmp_path / "hf"))
    ours = {p.name: p.read_bytes() for p in (tmp_path / "ours").iterdir()}
    theirs = {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()}
    assert ours == theirs
    loaded = ScaffoldBpeTokenizer.from_pretrained(str(tmp_path / "ours"))
    assert loaded.encode("the cats sat") == ScaffoldBpeTokenizer(model=model).encode("the cats sat")


def test_tokenizer_cli_imports_neither_torch_nor_transformers_and_errors_in_one_line(tmp_path):
    (tmp_path / "in.txt").write_text("hello world, hello tokens\n" * 30)
    code = (
        "import sys\n"
        "from repro_scaffold_bpe.cli import main\n"
        f"assert main(['--input', {str(tmp_path / 'in.txt')!r}, '--vocab-size', '262', "
        f"'--out', {str(tmp_path / 'out')!r}]) == 0\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        f"sys.exit(main(['--input', {str(tmp_path / 'missing')!r}, '--vocab-size', '300', "
        "'--out', 'x']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: --input {tmp_path / 'missing'} does not exist (give a text file or a directory "
        "of text files)"
    ]
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
