"""The tokenizer study of `reproduce.py` (deterministic, no model): statistics of every encoder at
several vocabulary sizes on held-out text, and the markdown sections built from them.

Encoders (all over vocabularies trained on the corpus's train split by the same trainer,
pre-tokeniser and tie-breaks): BPE; LBPE-B with leftmost and rank ties; reading A; Scaffold-BPE
(BPE over E, then demolition); LBPE over Scaffold-BPE (LBPE-B over E, then demolition).
"""

from __future__ import annotations

import time

from repro_lbpe.stats import BUCKETS, bucket_name, encoding_stats, long_share

# name -> (vocabulary method, spec options)
ENCODERS = {
    "bpe": ("bpe", {"reading": "bpe"}),
    "lbpe": ("bpe", {"reading": "b", "tie": "leftmost"}),
    "lbpe_rank": ("bpe", {"reading": "b", "tie": "rank"}),
    "lbpe_a": ("bpe", {"reading": "a"}),
    "scaffold": ("scaffold", {"reading": "bpe"}),
    "scaffold_lbpe": ("scaffold", {"reading": "b", "tie": "leftmost"}),
}


def heldout_lines(corpus) -> tuple[list[str], str]:
    from repro_core.data import corpus_splits, load_split_texts

    splits = corpus_splits(corpus)
    if "validation" in splits:
        return load_split_texts(corpus, "validation"), "validation"
    train = load_split_texts(corpus, "train")  # no held-out split: the last 10% of the lines
    return train[int(0.9 * len(train)) :], "last 10% of train"


def tokenizer_study(corpus_name: str, sizes: tuple[int, ...], log=print) -> dict:
    """{"corpus", "heldout_split", "sizes": {N: {encoder: stats}}}; vocabularies are cached."""
    from repro_core.data import resolve_corpus

    from repro_lbpe.lbpe import LbpeEncoder
    from repro_lbpe.tokenizer import build_vocabulary

    corpus = resolve_corpus(corpus_name)
    lines, split = heldout_lines(corpus)
    n_bytes = sum(len(t.encode("utf-8")) for t in lines)
    out = {"corpus": corpus_name, "heldout_split": split, "heldout_bytes": n_bytes, "sizes": {}}
    for n in sizes:
        row = {}
        for name, (method, options) in ENCODERS.items():
            start = time.perf_counter()
            vocab = build_vocabulary(f"{method}:{n}", options, corpus)
            enc = LbpeEncoder(vocab, options["reading"], options.get("tie", "leftmost"))
            ids = enc.encode_batch(lines)
            stats = encoding_stats(
                ids, n_bytes, vocab.output_token_bytes, list(vocab.output_special_tokens.values())
            )
            stats["seconds"] = time.perf_counter() - start
            row[name] = stats
        for name, stats in row.items():
            base = row["scaffold"] if name == "scaffold_lbpe" else row["bpe"]
            stats["long_count_change"] = _count_change(stats, base)
        out["sizes"][str(n)] = row
        log(
            f"[tokenizers] N={n}: bytes/token "
            + ", ".join(f"{k} {v['bytes_per_token']:.4f}" for k, v in row.items())
        )
    return out


def heldout_shard_stats(tok, corpus, seed: int) -> dict:
    """Length shares of an `LbpeTokenizer`'s encoding of one third of the held-out lines
    (validation + test, line i in shard i % 3; seed k measures shard k % 3)."""
    from repro_core.data import corpus_splits, load_split_texts

    splits = [s for s in ("validation", "test") if s in corpus_splits(corpus)]
    lines = [t for s in splits for t in load_split_texts(corpus, s)]
    if not splits:  # a corpus without held-out splits: its last 10% of lines
        train = load_split_texts(corpus, "train")
        lines = train[int(0.9 * len(train)) :]
    shard = [t for i, t in enumerate(lines) if i % 3 == seed % 3]
    vocab = tok.lbpe_vocab
    stats = encoding_stats(
        tok.encoder.encode_batch(shard), sum(len(t.encode("utf-8")) for t in shard),
        vocab.output_token_bytes, list(vocab.output_special_tokens.values()),
    )  # fmt: skip
    return {
        "long_share_chars": long_share(stats),
        "long_share_bytes": long_share(stats, "bytes"),
        "short_share_chars": stats["share_chars"]["1-3"],
        "shard_bytes_per_token": stats["bytes_per_token"],
    }


def _count_change(stats: dict, base: dict) -> dict[str, float]:
    """Relative change of the number of occurrences per char bucket against `base`."""
    return {
        k: stats["count_chars"][k] / base["count_chars"][k] - 1
        if base["count_chars"][k]
        else float("nan")
        for k in stats["count_chars"]
    }


def sections(results: dict) -> list[str]:
    """Markdown of the tokenizer study (results["extra"]["tokenizers"])."""
    study = results.get("extra", {}).get("tokenizers")
    if not study:
        return []
    names = list(ENCODERS)
    keys = [bucket_name(lo, hi) for lo, hi in BUCKETS]
    lines = [
        "## Tokenizer statistics (deterministic)",
        "",
        f"Held-out text: {study['corpus']} {study['heldout_split']} split ({study['heldout_bytes']:,} "
        "bytes). Vocabularies trained on the train split (repro_core.bpe / repro_scaffold_bpe, "
        "GPT-2 regex). Length shares count token occurrences (special tokens excluded); "
        "characters = UTF-8 lead bytes, leading space included. Paper (LBPE vs BPE, 32K-128K on the "
        "Pile, from a third-party digest): 7-9 chars +2.37%, 10-12 +2.24%, 13-15 +2.28%, 1-3 -0.97%.",
        "",
        "| N | encoder | bytes/token | entropy (bits) | redundancy | "
        + " | ".join(f"share {k} ch" for k in keys)
        + " | 7-15 ch share | count change 7-9 / 10-12 / 13-15 / 1-3 ch |",
        "|" + " --- |" * (7 + len(keys)),
    ]
    for n, row in study["sizes"].items():
        for name in names:
            s = row[name]
            ch = s["long_count_change"]
            change = " / ".join(
                f"{ch[k]:+.2%}" if ch[k] == ch[k] else "n/a"
                for k in ("7-9", "10-12", "13-15", "1-3")
            )  # n/a: BPE has no token of that length
            lines.append(
                f"| {n} | {name} | {s['bytes_per_token']:.4f} | {s['entropy_bits']:.4f} | "
                f"{s['redundancy']:.4f} | "
                + " | ".join(f"{s['share_chars'][k]:.4f}" for k in keys)
                + f" | {long_share(s):.4f} | {change if name != 'bpe' else '-'} |"
            )
    lines += [
        "",
        "Count changes are against BPE (against Scaffold-BPE for `scaffold_lbpe`). Shares by "
        "length in bytes are in results.json (`extra.tokenizers`).",
    ]
    return ["\n".join(lines)]
