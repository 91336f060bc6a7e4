"""Speed of our BPE / Scaffold-BPE against HF `tokenizers` and tiktoken, in one process.

    python -m repro_scaffold_bpe.bench                       # wikitext-2 train, vocab 8000 and 32000
    python -m repro_scaffold_bpe.bench --vocab-sizes 8000 --out results/bench/wikitext2.json

Training: wall time from the raw lines to a vocabulary. Ours = `count_pieces` + `train_bpe` or
`train_scaffold_bpe` (single-threaded); HF = `BpeTrainer` (ByteLevel, same lines, same specials),
once with its default thread pool and once serial (TOKENIZERS_PARALLELISM=false).
Encoding: MB/s over all lines, one line per call, single-threaded for everyone
(TOKENIZERS_PARALLELISM=false for HF). Ours is measured with a cold piece cache (fresh encoder) and
warm (second pass); HF and tiktoken use the vocabulary of our plain BPE, so the ids must agree.
Numba kernels are loaded (or compiled) once before timing; that cost is reported separately.

`perf_cases(quick)` gives the same comparisons as cases of the workspace performance suite
(`repro-perf --only scaffold_bpe`, registered under the `repro.perf` entry point), in bytes/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from functools import partial
from importlib import metadata
from pathlib import Path

from repro_core.bpe import (
    ENDOFTEXT,
    BpeVocab,
    PreTokenizer,
    count_pieces,
    to_hf_tokenizer,
    train_bpe,
)
from repro_core.results import write_json_atomic, write_text_atomic

from repro_scaffold_bpe.scaffold import train_scaffold_bpe


def _seconds(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def _best_of(repeats: int, setup, run):
    """Fastest of `repeats` timed `run(setup())` (setup untimed, e.g. a fresh cold encoder)."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        state = setup()
        seconds, result = _seconds(run, state)
        best = min(best, seconds)
    return best, result


def _same(obj):
    return obj


def _train(train_fn, counts, vocab_size, pretok, _state=None):
    return train_fn(counts, vocab_size, pretok)


def _encode_with(lines: list[str], encoder) -> list[list[int]]:
    return [encoder.encode(line) for line in lines]


def _hf_fit(lines: list[str], tok_and_trainer) -> None:
    tok, trainer = tok_and_trainer
    tok.train_from_iterator(lines, trainer)


def _hf_encode(lines: list[str], tok) -> list:
    return tok.encode_batch(lines, add_special_tokens=False)


def _tiktoken_encode(lines: list[str], encoding) -> list[list[int]]:
    return [encoding.encode(line, allowed_special="all") for line in lines]


def _hf_trainer(vocab_size: int, parallel: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[ENDOFTEXT],
    )
    return tok, trainer


def _tiktoken_encoding(vocab: BpeVocab):
    import tiktoken

    specials = set(vocab.special_tokens.values())
    ranks = {tb: i for i, tb in enumerate(vocab.token_bytes) if i not in specials}
    return tiktoken.Encoding(
        name="repro-bpe",
        pat_str=vocab.pattern,
        mergeable_ranks=ranks,
        special_tokens=vocab.special_tokens,
    )


def run_benchmark(
    corpus: str | os.PathLike | None = None,
    vocab_sizes: tuple[int, ...] = (8000, 32000),
    with_tiktoken: bool = True,
    repeats: int = 1,
) -> dict:
    """Measure training time and encoding throughput; returns a JSON-able dict (see module doc).

    Every timing is the fastest of `repeats` runs (the machine may be shared).
    """
    if corpus is None:
        data_dir = os.environ.get("REPRO_DATA_DIR")
        if not data_dir:
            raise FileNotFoundError(
                "set REPRO_DATA_DIR (the shared data folder) or pass corpus=PATH"
            )
        corpus = Path(data_dir) / "wikitext-2" / "train.txt"
    corpus = Path(corpus)
    if not corpus.is_file():
        raise FileNotFoundError(f"benchmark corpus {corpus} not found")
    text = corpus.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    n_bytes = len(text.encode("utf-8"))
    mb = n_bytes / 1e6
    pretok = PreTokenizer()

    warmup, _ = _seconds(
        lambda: (
            train_scaffold_bpe(count_pieces("warm up the kernels " * 3), 270).encoder().encode("x")
        )
    )
    count_s, counts = _best_of(repeats, lambda: None, lambda _: count_pieces(lines, pretok))
    result: dict = {
        "corpus": str(corpus),
        "corpus_bytes": n_bytes,
        "lines": len(lines),
        "distinct_pieces": len(counts),
        "numba_warmup_seconds": round(warmup, 3),
        "count_pieces_seconds": round(count_s, 3),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "versions": {p: _version(p) for p in ("tokenizers", "tiktoken", "numba", "numpy", "regex")},
        "date": time.strftime("%Y-%m-%d"),
        "repeats": repeats,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "sizes": {},
    }
    for vocab_size in vocab_sizes:
        bpe_s, vocab = _best_of(
            repeats, lambda: None, partial(_train, train_bpe, counts, vocab_size, pretok)
        )
        sbpe_s, model = _best_of(
            repeats, lambda: None, partial(_train, train_scaffold_bpe, counts, vocab_size, pretok)
        )
        hf_par, _ = _best_of(
            repeats, partial(_hf_trainer, vocab_size, True), partial(_hf_fit, lines)
        )
        hf_ser, _ = _best_of(
            repeats, partial(_hf_trainer, vocab_size, False), partial(_hf_fit, lines)
        )
        train = {
            "ours_bpe": count_s + bpe_s,
            "ours_bpe_merges_only": bpe_s,
            "ours_scaffold": count_s + sbpe_s,
            "ours_scaffold_merges_only": sbpe_s,
            "hf_default_threads": hf_par,
            "hf_serial": hf_ser,
        }

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        enc = vocab.encoder()  # filled once below, then timed with a warm cache
        cold_s, ours_ids = _best_of(repeats, vocab.encoder, partial(_encode_with, lines))
        _encode_with(lines, enc)
        warm_s, _ = _best_of(repeats, partial(_same, enc), partial(_encode_with, lines))
        scaffold_s, scaffold_ids = _best_of(repeats, model.encoder, partial(_encode_with, lines))
        hf_s, hf_out = _best_of(
            repeats, partial(to_hf_tokenizer, vocab), partial(_hf_encode, lines)
        )
        encode = {
            "ours_bpe_cold_cache": mb / cold_s,
            "ours_bpe_warm_cache": mb / warm_s,
            "ours_scaffold_cold_cache": mb / scaffold_s,
            "hf_serial": mb / hf_s,
        }
        tokens = {
            "ours_bpe": sum(map(len, ours_ids)),
            "ours_scaffold": sum(map(len, scaffold_ids)),
            "hf": sum(len(e.ids) for e in hf_out),
        }
        identical = {"ours_vs_hf": all(a == b.ids for a, b in zip(ours_ids, hf_out))}
        if with_tiktoken:
            tk = _tiktoken_encoding(vocab)
            tk_s, tk_ids = _best_of(repeats, partial(_same, tk), partial(_tiktoken_encode, lines))
            encode["tiktoken_serial"] = mb / tk_s
            tokens["tiktoken"] = sum(map(len, tk_ids))
            identical["ours_vs_tiktoken"] = tk_ids == ours_ids
        result["sizes"][str(vocab_size)] = {
            "train_seconds": {k: round(v, 3) for k, v in train.items()},
            "encode_mb_per_s": {k: round(v, 3) for k, v in encode.items()},
            "tokens": tokens,
            "identical_ids": identical,
            "scaffold": {
                "expanded_vocab_size": model.expanded_vocab_size,
                "num_scaffold_tokens": len(model.scaffold_ids),
                "num_reactivations": sum(e[0] == "reactivate" for e in model.events),
            },
            "ratios": {
                "train_ours_bpe_over_hf_default": round(train["ours_bpe"] / hf_par, 3),
                "train_ours_scaffold_over_hf_default": round(train["ours_scaffold"] / hf_par, 3),
                "encode_ours_cold_over_hf_serial": round(
                    encode["ours_bpe_cold_cache"] / encode["hf_serial"], 3
                ),
                **(
                    {
                        "encode_ours_cold_over_tiktoken": round(
                            encode["ours_bpe_cold_cache"] / encode["tiktoken_serial"], 3
                        )
                    }
                    if with_tiktoken
                    else {}
                ),
            },
        }
    return result


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def format_report(result: dict) -> str:
    lines = [
        f"corpus {result['corpus']} ({result['corpus_bytes'] / 1e6:.1f} MB, {result['lines']} lines); "
        f"count_pieces {result['count_pieces_seconds']:.2f}s; numba warm-up {result['numba_warmup_seconds']:.2f}s"
    ]
    for size, r in result["sizes"].items():
        t, e, ratio = r["train_seconds"], r["encode_mb_per_s"], r["ratios"]
        lines.append(
            f"[{size}] train s: ours BPE {t['ours_bpe']:.2f} | ours Scaffold {t['ours_scaffold']:.2f} | "
            f"HF {t['hf_default_threads']:.2f} (serial {t['hf_serial']:.2f})  -> ours/HF "
            f"{ratio['train_ours_bpe_over_hf_default']:.2f}x, scaffold/HF {ratio['train_ours_scaffold_over_hf_default']:.2f}x"
        )
        tk = f" | tiktoken {e['tiktoken_serial']:.2f}" if "tiktoken_serial" in e else ""
        lines.append(
            f"[{size}] encode MB/s: ours {e['ours_bpe_cold_cache']:.2f} cold / {e['ours_bpe_warm_cache']:.2f} warm | "
            f"ours Scaffold {e['ours_scaffold_cold_cache']:.2f} | HF serial {e['hf_serial']:.2f}{tk}  -> ours/HF "
            f"{ratio['encode_ours_cold_over_hf_serial']:.2f}x; ids identical {r['identical_ids']}"
        )
    return "\n".join(lines)


def markdown_table(result: dict) -> str:
    """The README table: seconds to train, MB/s to encode, one row per vocabulary size."""
    rows = [
        "| vocab | train s: ours BPE | ours Scaffold | HF BpeTrainer (default threads / serial) "
        "| encode MB/s: ours (cold / warm cache) | ours Scaffold | HF serial | tiktoken |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, r in result["sizes"].items():
        t, e = r["train_seconds"], r["encode_mb_per_s"]
        tk = f"{e['tiktoken_serial']:.1f}" if "tiktoken_serial" in e else "-"
        rows.append(
            f"| {size} | {t['ours_bpe']:.2f} | {t['ours_scaffold']:.2f} "
            f"| {t['hf_default_threads']:.2f} / {t['hf_serial']:.2f} "
            f"| {e['ours_bpe_cold_cache']:.1f} / {e['ours_bpe_warm_cache']:.1f} "
            f"| {e['ours_scaffold_cold_cache']:.1f} | {e['hf_serial']:.1f} | {tk} |"
        )
    return "\n".join(rows) + (
        f"\n\n{result['corpus_bytes'] / 1e6:.1f} MB, {result['lines']} lines, "
        f"{result['machine']['cpus']} CPUs, load average {result.get('load_average_1min', '?')} at the "
        f"start, best of {result.get('repeats', 1)}, {result['date']}; ours includes pre-tokenisation and "
        f"counting ({result['count_pieces_seconds']:.2f} s); numba warm-up "
        f"{result['numba_warmup_seconds']:.2f} s not included.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro_scaffold_bpe.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--corpus", default=None, help="text file (default $REPRO_DATA_DIR/wikitext-2/train.txt)"
    )
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[8000, 32000])
    parser.add_argument("--no-tiktoken", action="store_true", help="skip tiktoken (not installed)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="report the fastest of this many runs"
    )
    parser.add_argument(
        "--out", default=None, help="write the result JSON here (and a .md table beside it)"
    )
    args = parser.parse_args(argv)
    result = run_benchmark(
        args.corpus,
        tuple(args.vocab_sizes),
        with_tiktoken=not args.no_tiktoken,
        repeats=args.repeats,
    )
    print(format_report(result))
    if args.out:
        write_json_atomic(args.out, result, indent=2)
        write_text_atomic(Path(args.out).with_suffix(".md"), markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ----------------------------------------------------------------------------------------------
# Performance-suite cases (`repro-perf`, registered under the `repro.perf` entry point)


def _perf_text(quick: bool) -> str:
    """wikitext-2 train (first 2 MB; 200 KB when quick), or a synthetic text without the data."""
    limit = 200_000 if quick else 2_000_000
    data_dir = os.environ.get("REPRO_DATA_DIR")
    path = Path(data_dir) / "wikitext-2" / "train.txt" if data_dir else None
    if path is not None and path.is_file():
        with open(path, encoding="utf-8") as f:
            text = f.read(limit)
        return text[: text.rfind("\n") + 1] or text
    words = (
        "the Arizona database connects international reporting of 1999 and 2024 ; zona "
        "Arizonan Californians uncovered reinterpretations"
    ).split()
    rng = random.Random(0)
    lines, size = [], 0
    while size < limit:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)


def perf_cases(quick: bool = False) -> list[dict]:
    """Training time and encoding throughput of our Scaffold-BPE / BPE against HF `tokenizers`.

    "work" is the bytes of text per call (unit "bytes"). Training: raw lines -> vocabulary
    (ours: `count_pieces` + trainer, single-threaded; HF: `BpeTrainer` with its default threads).
    Encoding: one line per call, single-threaded everywhere (TOKENIZERS_PARALLELISM=false), our
    piece cache cleared before every call (cold); HF encodes with our plain-BPE vocabulary.
    """
    text = _perf_text(quick)
    lines = text.splitlines(keepends=True)
    n_bytes = len(text.encode("utf-8"))
    vocab_size = 1024 if quick else 8000
    pretok = PreTokenizer()

    def train_scaffold():
        return train_scaffold_bpe(count_pieces(lines, pretok), vocab_size, pretok)

    def train_ours_bpe():
        return train_bpe(count_pieces(lines, pretok), vocab_size, pretok)

    def train_hf():
        _hf_fit(lines, _hf_trainer(vocab_size, parallel=True))

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    model = train_scaffold()
    vocab = train_ours_bpe()
    scaffold_enc, bpe_enc = model.encoder(), vocab.encoder()
    hf = to_hf_tokenizer(vocab)

    def encode_scaffold():
        scaffold_enc.clear_cache()
        return _encode_with(lines, scaffold_enc)

    def encode_ours_bpe():
        bpe_enc.clear_cache()
        return _encode_with(lines, bpe_enc)

    def encode_hf():
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        return _hf_encode(lines, hf)

    mb = f"{n_bytes / 1e6:.1f} MB"
    return [
        {
            "name": f"Scaffold-BPE training, N={vocab_size}, {mb}",
            "unit": "bytes",
            "work": n_bytes,
            "candidate": ("repro Scaffold-BPE (count + train)", train_scaffold),
            "baseline": ("HF tokenizers BpeTrainer (plain BPE)", train_hf),
        },
        {
            "name": f"BPE training, N={vocab_size}, {mb}",
            "unit": "bytes",
            "work": n_bytes,
            "candidate": ("repro BPE (count + train)", train_ours_bpe),
            "baseline": ("HF tokenizers BpeTrainer", train_hf),
        },
        {
            "name": f"Scaffold-BPE encoding (cold cache), N={vocab_size}, {mb}",
            "unit": "bytes",
            "work": n_bytes,
            "candidate": ("repro Scaffold-BPE encoder", encode_scaffold),
            "baseline": ("HF tokenizers encode_batch (plain BPE, serial)", encode_hf),
        },
        {
            "name": f"BPE encoding (cold cache), N={vocab_size}, {mb}",
            "unit": "bytes",
            "work": n_bytes,
            "candidate": ("repro BPE encoder", encode_ours_bpe),
            "baseline": ("HF tokenizers encode_batch (serial)", encode_hf),
        },
    ]
