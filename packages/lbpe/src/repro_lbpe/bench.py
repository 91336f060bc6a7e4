"""Encoding speed of LBPE against HF `tokenizers` BPE and our own BPE encoder, same vocabulary,
same text, single-threaded, in one process.

    repro-perf --only lbpe                # the workspace suite (benchmarks/results/perf.md)
    python -m repro_lbpe.bench            # the same cases, printed

Text: the first 2 MB of wikitext-2 train (200 KB with `quick`), encoded one line per call. The
vocabulary: plain BPE, N=8000 (1024 with `quick`), trained by repro_core.bpe on that text; HF
encodes it through `repro_core.bpe.to_hf_tokenizer` (same ids), with TOKENIZERS_PARALLELISM=false.
Our encoders start every call with an empty piece cache (cold), HF keeps its own word cache, so
the ratios are conservative for us. Numba kernels are compiled before timing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from repro_core.bpe import PreTokenizer, count_pieces, to_hf_tokenizer, train_bpe

from repro_lbpe.lbpe import LbpeEncoder
from repro_lbpe.vocab import TokenVocabulary


def perf_text(quick: bool) -> str:
    """wikitext-2 train (first 2 MB; 200 KB when quick)."""
    limit = 200_000 if quick else 2_000_000
    data_dir = os.environ.get("REPRO_DATA_DIR")
    path = Path(data_dir) / "wikitext-2" / "train.txt" if data_dir else None
    if path is None or not path.is_file():
        raise FileNotFoundError("the LBPE perf case reads $REPRO_DATA_DIR/wikitext-2/train.txt")
    with open(path, encoding="utf-8") as f:
        text = f.read(limit)
    return text[: text.rfind("\n") + 1] or text


def _cold(encoder: LbpeEncoder, lines: list[str]):
    def run():
        encoder.clear_cache()
        return [encoder.encode(line) for line in lines]

    return run


def perf_cases(quick: bool = False) -> list[dict]:
    """LBPE-B (leftmost and rank ties) vs HF BPE and vs our BPE; unit: bytes of text per second."""
    text = perf_text(quick)
    lines = text.splitlines(keepends=True)
    n_bytes = len(text.encode("utf-8"))
    vocab_size = 1024 if quick else 8000
    pretok = PreTokenizer()
    bpe_vocab = train_bpe(count_pieces(lines, pretok), vocab_size, pretok)
    vocab = TokenVocabulary.from_bpe_vocab(bpe_vocab)
    lbpe, lbpe_rank = LbpeEncoder(vocab, "b", "leftmost"), LbpeEncoder(vocab, "b", "rank")
    ours_bpe = LbpeEncoder(vocab, "bpe")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    hf = to_hf_tokenizer(bpe_vocab)
    for enc in (lbpe, lbpe_rank, ours_bpe):  # compile the kernels before timing
        enc.encode(lines[0] + " warm up")

    def hf_encode():
        return hf.encode_batch(lines, add_special_tokens=False)

    mb = f"{n_bytes / 1e6:.1f} MB wikitext-2, N={vocab_size}"
    hf_label = "HF tokenizers BPE (encode_batch, 1 thread)"
    return [
        {
            "name": f"LBPE encoding vs HF BPE, {mb}",
            "unit": "bytes",
            "work": n_bytes,
            "candidate": ("repro LBPE-B leftmost (cold cache)", _cold(lbpe, lines)),
            "baseline": (hf_label, hf_encode),
        },
        {
            "name": f"LBPE encoding (rank ties) vs HF BPE, {mb}",
            "unit": "bytes",
            "work": n_bytes,
            "candidate": ("repro LBPE-B rank (cold cache)", _cold(lbpe_rank, lines)),
            "baseline": (hf_label, hf_encode),
        },
        {
            "name": f"LBPE encoding vs our BPE encoder, {mb}",
            "unit": "bytes",
            "work": n_bytes,
            "candidate": ("repro LBPE-B leftmost (cold cache)", _cold(lbpe, lines)),
            "baseline": ("repro_core BPE encoder (cold cache)", _cold(ours_bpe, lines)),
        },
    ]


def main(argv: list[str] | None = None) -> int:
    import statistics
    import time

    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    for case in perf_cases(quick):
        (cl, cand), (bl, base) = case["candidate"], case["baseline"]
        ratios, rates = [], []
        for _ in range(3 if quick else 5):
            t0 = time.perf_counter()
            cand()
            t1 = time.perf_counter()
            base()
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
            rates.append((case["work"] / (t1 - t0), case["work"] / (t2 - t1)))
        c, b = (statistics.median(x) for x in zip(*rates))
        print(
            f"{case['name']}: {cl} {c / 1e6:.2f} MB/s vs {bl} {b / 1e6:.2f} MB/s, "
            f"ratio {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
