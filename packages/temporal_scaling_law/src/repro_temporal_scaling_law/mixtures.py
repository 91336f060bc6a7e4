"""Data-mixture corpora for the paper's application (choose mixture proportions from early training).

A mixture corpus is a folder with ``train.txt`` and ``valid.txt``, which the core resolves to a
train and a validation split (``repro_core.data.resolve_corpus``). For a weight ``w``:

* ``train.txt`` holds ``round(w * train_chars)`` characters of source A's training text followed by
  ``train_chars - that`` characters of source B's; a source shorter than its share is repeated
  (upweighting a small domain means repeating it, as in real mixture tuning). Whole lines only.
* ``valid.txt`` is the same for every weight: the target distribution, equal parts of A's and B's
  held-out text, interleaved in chunks of about ``chunk_chars`` characters, so that every prefix of
  the validation blocks (the trainer evaluates the first ``eval_batches * batch_size`` blocks) is
  about half A and half B.

A source without a validation split (tinyshakespeare) gives up its last ``heldout_fraction`` of
lines as held-out text; those lines never enter ``train.txt``. The files are a pure function of
the sources and the arguments (no randomness), and they are rewritten only when their content
changes, so the core's token cache (keyed by a hash of the files) is reused across reruns.
"""

from __future__ import annotations

from pathlib import Path

from .run_data import write_bytes_atomic


def source_texts(name: str, heldout_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """Lines (with line breaks) of a corpus's train and held-out text.

    Uses the corpus's ``validation`` split when it has one, else its last ``heldout_fraction`` of
    training lines.
    """
    from repro_core.data import corpus_splits, load_split_texts, resolve_corpus

    corpus = resolve_corpus(name)
    splits = corpus_splits(corpus)
    train = [t for t in load_split_texts(corpus, "train") if t]
    if "validation" in splits:
        return train, [t for t in load_split_texts(corpus, "validation") if t]
    cut = int(round(len(train) * (1 - heldout_fraction)))
    if cut <= 0 or cut >= len(train):
        raise ValueError(
            f"corpus {name!r} has {len(train)} lines: too few to hold out {heldout_fraction:.0%}"
        )
    return train[:cut], train[cut:]


def take_chars(lines: list[str], num_chars: int, repeat: bool = True) -> list[str]:
    """Whole lines from the start of ``lines`` until ``num_chars`` characters; cycles if allowed."""
    if num_chars <= 0:
        return []
    total = sum(len(line) for line in lines)
    if total == 0:
        raise ValueError("a mixture source has no text")
    if not repeat and total < num_chars:
        raise ValueError(f"a mixture source has {total} characters, fewer than {num_chars}")
    out: list[str] = []
    count = 0
    while count < num_chars:
        for line in lines:
            out.append(line)
            count += len(line)
            if count >= num_chars:
                break
    return out


def interleave(a: list[str], b: list[str], chunk_chars: int) -> list[str]:
    """Alternate chunks of about ``chunk_chars`` characters (whole lines) from ``a`` and ``b``."""

    def chunks(lines: list[str]) -> list[list[str]]:
        out, current, size = [], [], 0
        for line in lines:
            current.append(line)
            size += len(line)
            if size >= chunk_chars:
                out.append(current)
                current, size = [], 0
        if current:
            out.append(current)
        return out

    ca, cb = chunks(a), chunks(b)
    merged: list[str] = []
    for k in range(max(len(ca), len(cb))):
        if k < len(ca):
            merged.extend(ca[k])
        if k < len(cb):
            merged.extend(cb[k])
    return merged


def _ensure_newlines(lines: list[str]) -> str:
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    write_bytes_atomic(path, data)


def build_mixture_corpora(
    out_dir: str | Path,
    weights: list[float] | tuple[float, ...],
    sources: tuple[str, str] = ("wikitext-2", "tinyshakespeare"),
    train_chars: int = 4_000_000,
    valid_chars_per_source: int = 0,
    heldout_fraction: float = 0.1,
    chunk_chars: int = 1000,
) -> dict[float, Path]:
    """Write one corpus folder per weight ``w`` (fraction of source A in ``train.txt``).

    ``valid_chars_per_source`` = 0 takes as much held-out text of each source as the smaller
    source has. Returns ``{w: folder}``; folders are named ``mix-a0.20`` etc.
    """
    if len(sources) != 2:
        raise ValueError(f"a mixture needs exactly two sources, got {sources}")
    for w in weights:
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"mixture weight {w} must lie in [0, 1]")
    (a_train, a_valid), (b_train, b_valid) = (source_texts(s, heldout_fraction) for s in sources)
    per_source = valid_chars_per_source or min(
        sum(len(t) for t in a_valid), sum(len(t) for t in b_valid)
    )
    valid = interleave(
        take_chars(a_valid, per_source, repeat=False),
        take_chars(b_valid, per_source, repeat=False),
        chunk_chars,
    )
    valid_text = _ensure_newlines(valid)
    out_dir = Path(out_dir)
    folders = {}
    for w in weights:
        a_chars = int(round(w * train_chars))
        train = take_chars(a_train, a_chars) + take_chars(b_train, train_chars - a_chars)
        folder = out_dir / mixture_name(w)
        folder.mkdir(parents=True, exist_ok=True)
        _write_if_changed(folder / "train.txt", _ensure_newlines(train))
        _write_if_changed(folder / "valid.txt", valid_text)
        folders[w] = folder
    return folders


def mixture_name(weight: float) -> str:
    """Folder / run name of a mixture: ``mix-a0.20`` for 20% of source A."""
    return f"mix-a{weight:.2f}"


def mixture_tokenizer_dir(data_dir: str | Path, tokenizer: str, corpus: str) -> Path:
    """Folder of the tokenizer the mixture runs share, keyed by what it is trained from: the
    config's ``data.tokenizer`` spec and main ``data.corpus``. A run with another tokenizer
    (``--set data.tokenizer=...``) gets its own folder instead of silently reusing the first."""
    import hashlib

    key = hashlib.sha256(f"{tokenizer}\0{corpus}".encode()).hexdigest()[:12]
    return Path(data_dir) / f"tokenizer-{key}"


def prepare_mixture_runs(
    data_dir: str | Path,
    cfg,
    weights: list[float] | tuple[float, ...],
    sources: tuple[str, str] = ("wikitext-2", "tinyshakespeare"),
    train_chars: int = 4_000_000,
    valid_chars_per_source: int = 0,
) -> tuple[dict[float, Path], Path]:
    """The mixture corpora under ``data_dir/corpora`` and the one tokenizer every mixture run
    uses, ``data_dir/tokenizer-<key>`` (the config's, trained on its main corpus, keyed by
    both: the runs' losses are comparable only with one tokenizer); every corpus tokenized once (the core caches tokens).
    Returns ``({w: corpus folder}, tokenizer folder)``; a second call rewrites nothing."""
    from repro_core.data import get_tokenizer, resolve_corpus, tokenize_corpus

    data_dir = Path(data_dir)
    tokenizer_dir = mixture_tokenizer_dir(data_dir, str(cfg.data.tokenizer), str(cfg.data.corpus))
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        tokenizer = get_tokenizer(cfg.data.tokenizer, resolve_corpus(cfg.data.corpus))
        tokenizer.save_pretrained(str(tokenizer_dir))
    folders = build_mixture_corpora(
        data_dir / "corpora", weights, sources, train_chars, valid_chars_per_source
    )
    shared = get_tokenizer(str(tokenizer_dir.resolve()))
    for folder in folders.values():
        tokenize_corpus(resolve_corpus(str(folder.resolve())), shared, cfg.data.val_fraction)
    return folders, tokenizer_dir
