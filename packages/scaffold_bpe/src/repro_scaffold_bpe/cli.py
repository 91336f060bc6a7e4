"""`repro-scaffold-bpe-train`: train a Scaffold-BPE (or plain BPE) tokenizer on local text.

    repro-scaffold-bpe-train --input $REPRO_DATA_DIR/wikitext-2/train.txt --vocab-size 8192 --out out/sbpe-8k
    repro-scaffold-bpe-train --input my_corpus_dir/ --vocab-size 32000 --method bpe --out out/bpe-32k

Writes to --out: the HF tokenizer (`tokenizer_config.json` + `scaffold_bpe.json`, load it with
`ScaffoldBpeTokenizer.from_pretrained(out)`) and `training_summary.json` (merges in order with their
token strings, scaffold tokens, demolition table, mark / re-activate events, sizes and timings).
Every file under a directory is one document (read as UTF-8; invalid bytes are kept as bytes);
with `--conventions hf` every line is one document (its line break kept), as HF `BpeTrainer`
reads files, so that plain BPE then gives exactly BpeTrainer's merges. Only the tokenizer code is
imported (no torch, no transformers): the tokenizer directory is written directly, in the format
`ScaffoldBpeTokenizer.save_pretrained` writes.

Called the way every package's `repro-<slug>-train` is called (`--preset NAME`, no `--input`), it
hands over to the language-model trainer `repro-scaffold-bpe-lm-train` (`repro_scaffold_bpe.train`),
so `repro-scaffold-bpe-train --preset debug --run-dir runs/x` trains the debug LM like the other
packages' entry points do.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from repro_core.bpe import (
    BYTE_ORDERS,
    ENDOFTEXT,
    GPT2_PATTERN,
    GPT2_SPLIT_DIGITS_PATTERN,
    PreTokenizer,
    count_pieces,
    train_bpe,
)
from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import MissingInputError, UserError
from repro_core.results import write_text_atomic

PATTERNS = {"gpt2": GPT2_PATTERN, "gpt2-split-digits": GPT2_SPLIT_DIGITS_PATTERN}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="repro-scaffold-bpe-train",
        description="Train a byte-level Scaffold-BPE (arXiv 2404.17808) or plain BPE tokenizer. "
        "With --preset (and no --input) it trains a language model instead: see "
        "repro-scaffold-bpe-lm-train --help.",
    )
    p.add_argument("--input", required=True, help="a text file, or a directory of text files")
    p.add_argument(
        "--vocab-size", type=int, required=True,
        help="N = number of normal tokens, 256 bytes and the special tokens included",
    )  # fmt: skip
    p.add_argument("--method", choices=("scaffold", "bpe"), default="scaffold")
    p.add_argument(
        "--conventions", choices=BYTE_ORDERS, default="reference",
        help="pair tie-break order of the bytes: 'reference' = raw byte values (the golden data), "
        "'hf' = HF ByteLevel order and one document per line (plain BPE then equals tokenizers' "
        "BpeTrainer trained on the same files)",
    )  # fmt: skip
    p.add_argument(
        "--pattern", choices=sorted(PATTERNS), default="gpt2", help="pre-tokenisation regex"
    )
    p.add_argument(
        "--regex", default=None, help="a custom pre-tokenisation regex (overrides --pattern)"
    )
    p.add_argument(
        "--special-token", action="append", default=None,
        help=f"special token (repeatable); default {ENDOFTEXT}; pass '' for none",
    )  # fmt: skip
    p.add_argument("--min-pair-count", type=int, default=1, help="never merge rarer pairs")
    p.add_argument("--out", required=True, help="output directory (created)")
    return p


def split_lines(text: str) -> list[str]:
    """Lines of ``text``, each with its ``\\n`` (split on ``\\n`` only, as HF reads files)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def read_documents(path: Path) -> tuple[list[str], list[str]]:
    """(texts, file names): one text per file; a directory is walked recursively, hidden files skipped."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(
            f
            for f in path.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)
        )
    texts = [f.read_bytes().decode("utf-8", "surrogateescape") for f in files]
    return texts, [str(f) for f in files]


LM_TRAIN_FLAGS = ("--preset", "--print-config", "--resume", "--run-dir", "--set")


def wants_lm_training(argv: list[str]) -> bool:
    """True for an LM-trainer command line (`--preset ...`, no `--input`)."""
    flags = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    return "--input" not in flags and bool(flags & set(LM_TRAIN_FLAGS))


def save_tokenizer_dir(model, out: Path, semantics: str = "merges") -> None:
    """Write what ``ScaffoldBpeTokenizer(model=model).save_pretrained(out)`` writes
    (``scaffold_bpe.json`` + ``tokenizer_config.json``) without importing transformers; a test
    checks the two directories are byte for byte the same."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "scaffold_bpe.json"))  # hf_tokenizer.MODEL_FILE
    eos = ENDOFTEXT if ENDOFTEXT in model.special_tokens else None
    config = {
        "added_tokens_decoder": {
            str(model.model_id_of[i]): {
                "content": name,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for name, i in sorted(model.special_tokens.items(), key=lambda kv: kv[1])
        },
        "backend": "custom",
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(1e30),  # transformers' VERY_LARGE_INTEGER: no limit
        "semantics": semantics,
        "tokenizer_class": "ScaffoldBpeTokenizer",
    }
    if eos is not None:
        config["eos_token"] = eos
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_text_atomic(out / "tokenizer_config.json", text)


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_lm_training(argv):
        from repro_scaffold_bpe.train import main as lm_main

        return lm_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    source = Path(args.input)
    if not source.exists():
        raise MissingInputError(
            f"--input {source} does not exist (give a text file or a directory of text files)"
        )
    specials = [
        s for s in (args.special_token if args.special_token is not None else [ENDOFTEXT]) if s
    ]
    n_base = 256 + len(specials)
    if args.vocab_size < n_base:
        raise UserError(
            f"--vocab-size {args.vocab_size} is too small: it must be at least {n_base} "
            f"(256 byte tokens + {len(specials)} special token(s))"
        )
    if args.min_pair_count < 1:
        raise UserError(f"--min-pair-count must be >= 1, got {args.min_pair_count}")
    try:
        pretokenizer = PreTokenizer(args.regex or PATTERNS[args.pattern], specials)
    except Exception as err:  # regex.error and friends
        raise UserError(f"invalid pre-tokenisation regex: {err}") from None
    texts, files = read_documents(source)
    n_bytes = sum(len(t.encode("utf-8", "surrogateescape")) for t in texts)
    if n_bytes == 0:
        raise UserError(f"--input {source} holds no text (files found: {len(files)})")

    from repro_scaffold_bpe.scaffold import plain_bpe_as_scaffold, train_scaffold_bpe

    start = time.perf_counter()
    if args.conventions == "hf":  # HF BpeTrainer trains on the lines of its files
        texts = [line for text in texts for line in split_lines(text)]
    counts = count_pieces(texts, pretokenizer)
    count_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if args.method == "scaffold":
        model = train_scaffold_bpe(
            counts, args.vocab_size, pretokenizer, args.conventions, args.min_pair_count
        )
    else:
        vocab = train_bpe(
            counts, args.vocab_size, pretokenizer, args.conventions, args.min_pair_count
        )
        model = plain_bpe_as_scaffold(vocab)
    train_seconds = time.perf_counter() - start
    if model.vocab_size < args.vocab_size:
        print(
            f"warning: the corpus ran out of pairs: vocabulary has {model.vocab_size} < {args.vocab_size} tokens",
            file=sys.stderr,
        )

    out = Path(args.out)
    save_tokenizer_dir(model, out)
    latin1 = [b.decode("latin-1") for b in model.token_bytes]
    summary = {
        "method": args.method,
        "conventions": args.conventions,
        "pattern": pretokenizer.pattern,
        "special_tokens": model.special_tokens,
        "input_files": files,
        "input_bytes": n_bytes,
        "distinct_pieces": len(counts),
        "vocab_size": model.vocab_size,
        "expanded_vocab_size": model.expanded_vocab_size,
        "num_scaffold_tokens": len(model.scaffold_ids),
        "num_mark_events": sum(e[0] == "mark" for e in model.events),
        "num_reactivations": sum(e[0] == "reactivate" for e in model.events),
        "num_duplicate_merges": sum(e[0] == "duplicate_merge" for e in model.events),
        "count_seconds": round(count_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "token_bytes_note": "token strings are the token bytes decoded as Latin-1",
        "merges": [[a, b, t, latin1[t]] for a, b, t in model.merges],
        "merge_pair_counts": model.pair_counts,
        "merge_applied_counts": model.applied_counts,
        "scaffold_tokens": [[s, latin1[s]] for s in model.scaffold_ids],
        "demolish": {str(k): list(v) for k, v in sorted(model.demolish.items())},
        "normal_ids": model.normal_ids,
        "events": model.events,
    }
    write_text_atomic(out / "training_summary.json", json.dumps(summary, ensure_ascii=False))
    print(
        f"{args.method}: N={model.vocab_size} |E|={model.expanded_vocab_size} "
        f"|S|={len(model.scaffold_ids)} from {n_bytes / 1e6:.2f} MB in {count_seconds:.2f}s count + "
        f"{train_seconds:.2f}s train -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
