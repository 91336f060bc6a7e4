"""Smoke test of the speed benchmark on a tiny corpus (the real run is `python -m repro_scaffold_bpe.bench`)."""

from __future__ import annotations

import importlib.util

from repro_scaffold_bpe.bench import format_report, markdown_table, run_benchmark

TEXT = (
    "The Arizona database connects international reporting, 1999 and 2024.\n" * 40
    + "zona Arizonan\n" * 9
)


def test_benchmark_runs_and_tokenizers_agree(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    with_tiktoken = importlib.util.find_spec("tiktoken") is not None
    result = run_benchmark(corpus, vocab_sizes=(280,), with_tiktoken=with_tiktoken)
    size = result["sizes"]["280"]
    assert all(size["identical_ids"].values())
    assert size["tokens"]["ours_bpe"] == size["tokens"]["hf"]
    assert set(size["train_seconds"]) >= {
        "ours_bpe",
        "ours_scaffold",
        "hf_default_threads",
        "hf_serial",
    }
    assert "[280]" in format_report(result) and "| 280 |" in markdown_table(result)
