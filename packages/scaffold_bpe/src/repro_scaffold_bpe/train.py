"""`repro-scaffold-bpe-lm-train`: train the core's dense decoder with a Scaffold-BPE (or plain BPE) tokenizer.

Scaffold-BPE changes only the tokenizer, so the model is the core's LLaMA-style `DecoderLM` and this
entry point is the core trainer plus one thing: `data.tokenizer` also accepts

* `scaffold:N[:PATTERN]`  - Scaffold-BPE with N normal tokens (|V| = N = the embedding size),
* `plain-bpe:N[:PATTERN]` - plain BPE with N tokens from the *same* implementation, conventions and
  pre-tokeniser (the paper's baseline; the core's `bpe:N` is HF `BpeTrainer` with HF tie-breaks),

trained on the corpus's train split with `repro_core.bpe` (raw-byte "reference" tie-breaks) and
cached under `$REPRO_CACHE_DIR/tokenizers/`. PATTERN is `gpt2` (default) or `gpt2-split-digits` (the
paper's LLaMA-style digit splitting). Everything else (`bpe:N`, `sentencepiece:N`, a directory with a
saved tokenizer, e.g. one written by `repro-scaffold-bpe-train`) goes to the core's `get_tokenizer`.

    repro-scaffold-bpe-lm-train --preset tiny --run-dir runs/sbpe-tiny
    repro-scaffold-bpe-lm-train --preset tiny --set data.tokenizer=plain-bpe:4096 --run-dir runs/bpe-tiny
    accelerate launch --config_file shared/configs/accelerate/multi-gpu.yaml \\
        -m repro_scaffold_bpe.train --preset small --run-dir runs/sbpe-small
    repro-scaffold-bpe-lm-train --preset tiny --run-dir runs/sbpe-tiny --resume
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from repro_core.cli import check_inputs, train_main
from repro_core.config import ConfigError, ModelConfig, package_preset_dirs
from repro_core.data import Corpus, cache_dir, corpus_splits, get_tokenizer, load_split_texts

PROG = "repro-scaffold-bpe-lm-train"
SPEC = re.compile(r"^(scaffold|plain-bpe):(\d+)(?::([a-z0-9-]+))?$")
TOKENIZER_CACHE_VERSION = 1


def parse_spec(spec: str) -> tuple[str, int, str] | None:
    """`scaffold:4096` -> ("scaffold", 4096, "gpt2"); None for specs the core handles."""
    from repro_scaffold_bpe.cli import PATTERNS

    m = SPEC.match(spec.strip())
    if not m:
        if spec.strip().startswith(("scaffold:", "plain-bpe:")):
            raise ValueError(
                f"data.tokenizer={spec!r} is invalid: allowed scaffold:N[:PATTERN] or "
                f"plain-bpe:N[:PATTERN] with N >= 257 and PATTERN in {sorted(PATTERNS)}"
            )
        return None
    method, size, pattern = m.group(1), int(m.group(2)), m.group(3) or "gpt2"
    if pattern not in PATTERNS or size < 257:
        raise ValueError(
            f"data.tokenizer={spec!r} is invalid: N must be >= 257 (256 bytes + <|endoftext|>) "
            f"and PATTERN one of {sorted(PATTERNS)}"
        )
    return method, size, pattern


def train_tokenizer_model(texts: list[str], method: str, vocab_size: int, pattern: str = "gpt2"):
    """A `ScaffoldBpe` (plain BPE = no scaffold tokens) trained on `texts` with our trainer."""
    from repro_core.bpe import ENDOFTEXT, PreTokenizer, count_pieces, train_bpe

    from repro_scaffold_bpe.cli import PATTERNS
    from repro_scaffold_bpe.scaffold import plain_bpe_as_scaffold, train_scaffold_bpe

    pretok = PreTokenizer(PATTERNS[pattern], [ENDOFTEXT])
    counts = count_pieces(texts, pretok)
    if method == "scaffold":
        return train_scaffold_bpe(counts, vocab_size, pretok)
    return plain_bpe_as_scaffold(train_bpe(counts, vocab_size, pretok))


def resolve_tokenizer(spec: str, corpus: Corpus):
    """The HF tokenizer of `data.tokenizer` (see the module docstring); trained ones are cached."""
    # the wrapper registers ScaffoldBpeTokenizer with AutoTokenizer (run dirs' final/ reload)
    from repro_scaffold_bpe.hf_tokenizer import ScaffoldBpeTokenizer

    parsed = parse_spec(os.path.expandvars(spec))
    if parsed is None:
        return get_tokenizer(spec, corpus)
    method, size, pattern = parsed
    out = (
        cache_dir()
        / "tokenizers"
        / f"{corpus.fingerprint()}-{method}-{size}-{pattern}-v{TOKENIZER_CACHE_VERSION}"
    )
    if not (out / "tokenizer_config.json").is_file():
        splits = corpus_splits(corpus)
        texts = load_split_texts(corpus, "train" if "train" in splits else splits[0])
        start = time.perf_counter()
        model = train_tokenizer_model(texts, method, size, pattern)
        seconds = time.perf_counter() - start
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        ScaffoldBpeTokenizer(model=model).save_pretrained(str(tmp))
        (tmp / "training_summary.json").write_text(
            json.dumps(
                {
                    "method": method,
                    "vocab_size": model.vocab_size,
                    "expanded_vocab_size": model.expanded_vocab_size,
                    "num_scaffold_tokens": len(model.scaffold_ids),
                    "pattern": pattern,
                    "corpus": corpus.name,
                    "train_seconds": round(seconds, 3),
                },
                indent=1,
            )
        )
        try:
            os.replace(tmp, out)
        except OSError:  # another process won the race: keep its copy
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return ScaffoldBpeTokenizer.from_pretrained(str(out))


def validate(cfg) -> None:
    """The tokenizer spec parses, the corpus and base checkpoint exist (no torch)."""
    try:
        parse_spec(cfg.data.tokenizer)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_inputs(cfg)


def run(cfg, run_dir: Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Train the dense decoder with the run's tokenizer (the heavy imports happen here)."""
    from repro_core.data import resolve_corpus
    from repro_core.train import Trainer

    tokenizer = resolve_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))
    print(f"[tokenizer] {cfg.data.tokenizer}: N={len(tokenizer)}", flush=True)
    trainer = Trainer(cfg, run_dir, tokenizer=tokenizer, resume=resume, overwrite=overwrite)
    return trainer.train()


def main(argv: list[str] | None = None) -> int:
    """The core's train entry point (`repro_core.cli.train_main`) with Scaffold-BPE tokenizer specs."""
    return train_main(
        argv,
        ModelConfig,
        package_preset_dirs(__file__),
        PROG,
        run=run,
        validate=validate,
        description="Train the dense decoder with a Scaffold-BPE / plain BPE tokenizer.",
    )


if __name__ == "__main__":
    sys.exit(main())
