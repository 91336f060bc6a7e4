"""Streaming, sharded, resumable tokenization of a corpus; ``repro-prepare``.

``prepare(corpus, tokenizer, workers)`` reads each split as a stream
(:func:`~repro_core.data.iter_documents`: local .txt/.jsonl/.parquet files, or a hub dataset
through ``datasets`` streaming), cuts it into chunks of about ``shard_bytes`` characters, and
tokenizes the chunks in ``workers`` processes. Every chunk becomes one shard::

    <cache>/shards/<corpus fingerprint>-<tokenizer fingerprint>/
        prepare.json                        shard size used (a resumed prepare keeps it)
        <split>/shard-000000.bin            token ids, uint16 when the vocabulary fits, else uint32
        <split>/shard-000000.docs.npy       end offset (in tokens) of each document in the shard
        <split>/shard-000000.json           tokens, UTF-8 bytes, documents (written last)
        <split>/index.json                  the split's shards, in order
        index.json                          every split: written last, marks the prepare complete

Memory does not grow with the corpus: the reader holds at most ``2 * workers`` chunks in
flight and a worker encodes its chunk in slices of ~1 MB, appending to the shard file. A
prepare killed halfway resumes: the stream is read again and the chunks whose shard is complete
are skipped (chunking is deterministic). The tokens are exactly those of the in-memory path
(:func:`~repro_core.data.tokenize_corpus`): the same documents, empty ones dropped, an eos after
each document of a record corpus.

:func:`load_prepared` opens the shards as memmaps; a split that spans several shards is a
:class:`TokenStream`, and :func:`~repro_core.data.as_blocks` of it is a :class:`Blocks` view,
so a rank reads only the blocks the sampler gives it. Multi-node: run ``repro-prepare`` once on
the shared filesystem, then launch (see the README).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .cli import ArgumentParser, cli_main
from .data import (
    Corpus,
    TokenizedSplit,
    cache_dir,
    corpus_splits,
    has_document_records,
    iter_documents,
    tokenizer_fingerprint,
)
from .results import write_text_atomic

FORMAT = 1
DEFAULT_SHARD_BYTES = 64 << 20
ENCODE_SLICE_CHARS = 1 << 20


def token_dtype(tokenizer) -> np.dtype:
    """uint16 when every id fits (as the in-memory cache), else uint32."""
    return np.dtype(np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.uint32)


def shard_root(corpus: Corpus, tokenizer) -> Path:
    """Where the shards of ``corpus`` tokenized by ``tokenizer`` live (keyed by both)."""
    return cache_dir() / "shards" / f"{corpus.fingerprint()}-{tokenizer_fingerprint(tokenizer)}"


def is_prepared(root: Path) -> bool:
    return (root / "index.json").is_file()


# ----------------------------------------------------------------------------------------------
# Encoding (runs in the worker processes)

_TOKENIZER = None


def _init_worker(tokenizer) -> None:
    global _TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker
    _TOKENIZER = tokenizer


def encode_documents(tokenizer, texts: list[str], eos: int | None, dtype) -> tuple:
    """Token ids of ``texts`` (non-empty ones) concatenated, and each document's length.

    Returns ``(ids (n,) dtype, lengths (docs,) int64)``; with ``eos`` each document is
    followed by it (counted in its length). Fast tokenizers are called through their Rust
    ``encode_batch`` (the call ``tokenizer(texts)`` makes, without building a BatchEncoding).
    """
    texts = [t for t in texts if t]
    if not texts:
        return np.zeros(0, dtype), np.zeros(0, np.int64)
    if getattr(tokenizer, "is_fast", False):
        encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids for e in encodings]
    else:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    if eos is None:
        return flat, lengths
    lengths = lengths + 1
    out = np.empty(int(lengths.sum()), dtype)
    is_eos = np.zeros(len(out), bool)
    is_eos[np.cumsum(lengths) - 1] = True
    out[is_eos] = eos
    out[~is_eos] = flat
    return out, lengths


def _slices(texts: list[str], max_chars: int) -> Iterator[list[str]]:
    start, size = 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= max_chars:
            yield texts[start : i + 1]
            start, size = i + 1, 0
    if start < len(texts):
        yield texts[start:]


def write_shard(folder: Path, index: int, texts: list[str], eos: int | None, dtype, tokenizer=None):
    """Tokenize ``texts`` into shard ``index`` of ``folder`` (atomic: the .json comes last)."""
    tokenizer = tokenizer if tokenizer is not None else _TOKENIZER
    dtype = np.dtype(dtype)
    name = f"shard-{index:06d}"
    tag = f"{socket.gethostname()}.{os.getpid()}"  # unique when several nodes prepare at once
    tmp_bin = folder / f".{name}.bin.{tag}"
    lengths = []
    n_tokens = 0
    with open(tmp_bin, "wb") as fh:
        for part in _slices(texts, ENCODE_SLICE_CHARS):
            ids, lens = encode_documents(tokenizer, part, eos, dtype)
            fh.write(ids.tobytes())
            n_tokens += len(ids)
            lengths.append(lens)
    ends = np.cumsum(np.concatenate(lengths)) if lengths else np.zeros(0, np.int64)
    np.save(folder / f".{name}.docs.{tag}.npy", ends.astype(np.int64))
    os.replace(folder / f".{name}.docs.{tag}.npy", folder / f"{name}.docs.npy")
    os.replace(tmp_bin, folder / f"{name}.bin")
    meta = {
        "tokens": int(n_tokens),
        "bytes": int(sum(len(t.encode("utf-8")) for t in texts)),
        "documents": int(len(ends)),
        "dtype": dtype.name,
    }
    write_text_atomic(folder / f"{name}.json", json.dumps(meta))
    return index, meta


def _write_shard_task(args):
    return write_shard(*args)


def _shard_meta(folder: Path, index: int, dtype) -> dict | None:
    """Metadata of a complete shard (its .json exists and the .bin has the stated size)."""
    name = f"shard-{index:06d}"
    meta_file, bin_file = folder / f"{name}.json", folder / f"{name}.bin"
    if not (meta_file.is_file() and bin_file.is_file()):
        return None
    meta = json.loads(meta_file.read_text())
    if bin_file.stat().st_size != meta["tokens"] * np.dtype(dtype).itemsize:
        return None
    return meta


# ----------------------------------------------------------------------------------------------
# The reader (main process)


def chunk_documents(docs: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    """Group a document stream into lists of about ``max_chars`` characters (deterministic)."""
    chunk, size = [], 0
    for text in docs:
        chunk.append(text)
        size += len(text)
        if size >= max_chars:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def prepare(
    corpus: Corpus,
    tokenizer,
    workers: int = 1,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    root: Path | None = None,
    log=print,
) -> Path:
    """Tokenize every split of ``corpus`` into shards (see the module docstring); returns the
    shard folder. A complete folder is returned as it is; a partial one is resumed."""
    root = Path(root) if root is not None else shard_root(corpus, tokenizer)
    if is_prepared(root):
        return root
    root.mkdir(parents=True, exist_ok=True)
    settings_file = root / "prepare.json"
    if settings_file.is_file():
        shard_bytes = json.loads(settings_file.read_text())["shard_bytes"]  # resume as begun
    else:
        write_text_atomic(
            settings_file, json.dumps({"format": FORMAT, "shard_bytes": int(shard_bytes)})
        )
    dtype = token_dtype(tokenizer)
    eos = tokenizer.eos_token_id if has_document_records(corpus) else None
    workers = max(1, int(workers))
    pool = None
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer,))
    index = {"corpus": corpus.name, "tokenizer": tokenizer.name_or_path, "dtype": dtype.name}
    index["splits"] = {}
    try:
        for split in corpus_splits(corpus):
            folder = root / split
            folder.mkdir(exist_ok=True)
            start = time.perf_counter()
            metas: dict[int, dict] = {}
            pending: deque = deque()
            skipped = 0
            for i, texts in enumerate(chunk_documents(iter_documents(corpus, split), shard_bytes)):
                done = _shard_meta(folder, i, dtype)
                if done is not None:
                    metas[i] = done
                    skipped += 1
                    continue
                args = (folder, i, texts, eos, dtype.name)
                if pool is None:
                    metas[i] = write_shard(*args, tokenizer=tokenizer)[1]
                    continue
                pending.append(pool.apply_async(_write_shard_task, (args,)))
                while len(pending) >= 2 * workers:  # bounded: memory independent of corpus size
                    j, meta = pending.popleft().get()
                    metas[j] = meta
            while pending:
                j, meta = pending.popleft().get()
                metas[j] = meta
            shards = [metas[i] for i in range(len(metas))]
            split_index = {
                "shards": shards,
                "tokens": sum(m["tokens"] for m in shards),
                "bytes": sum(m["bytes"] for m in shards),
                "documents": sum(m["documents"] for m in shards),
                "dtype": dtype.name,
            }
            write_text_atomic(folder / "index.json", json.dumps(split_index, indent=1))
            index["splits"][split] = {k: v for k, v in split_index.items() if k != "shards"}
            seconds = time.perf_counter() - start
            log(
                f"[prepare] {corpus.name}/{split}: {split_index['tokens']:,} tokens, "
                f"{split_index['bytes'] / 1e6:.1f} MB in {len(shards)} shard(s) "
                f"({skipped} resumed) in {seconds:.1f}s with {workers} worker(s) -> {folder}"
            )
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    write_text_atomic(root / "index.json", json.dumps(index, indent=1))
    return root


# ----------------------------------------------------------------------------------------------
# Reading


class TokenStream:
    """Several 1-D token arrays (memmapped shards) read as one, between ``start`` and ``stop``.

    Supports ``len``, ``dtype`` and slicing with step 1 (a view when the slice lies in one
    shard, else a copy); ``[a:b]`` of a stream with ``stop=None`` slices are streams too when
    they span shards.
    """

    def __init__(self, arrays: list[np.ndarray], start: int = 0, stop: int | None = None):
        self.arrays = arrays
        self.offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
        self.start = start
        self.stop = int(self.offsets[-1]) if stop is None else stop
        self.dtype = arrays[0].dtype if arrays else np.dtype(np.uint16)

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def view(self, start: int, stop: int) -> TokenStream | np.ndarray:
        """Tokens [start, stop) of this stream, without reading them (a memmap view or a
        stream)."""
        a, b = self.start + start, self.start + stop
        first = int(np.searchsorted(self.offsets, a, side="right")) - 1
        if first < len(self.arrays) and b <= self.offsets[first + 1]:
            base = self.offsets[first]
            return self.arrays[first][a - base : b - base]
        return TokenStream(self.arrays, a, b)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) as an array (one copy)."""
        a, b = self.start + start, self.start + stop
        first = int(np.searchsorted(self.offsets, a, side="right")) - 1
        pieces = []
        while a < b:
            base, end = self.offsets[first], self.offsets[first + 1]
            take = min(b, end)
            pieces.append(self.arrays[first][a - base : take - base])
            a, first = take, first + 1
        return np.concatenate(pieces) if len(pieces) != 1 else np.asarray(pieces[0])

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("TokenStream supports slices with step 1 only")
        start, stop, _ = key.indices(len(self))
        return self.view(start, max(start, stop))

    def __array__(self, dtype=None, copy=None):
        out = self.read(0, len(self))
        return out.astype(dtype) if dtype is not None else out


class Blocks:
    """(num_blocks, seq_len) view of a :class:`TokenStream`; rows are read on indexing."""

    def __init__(self, stream: TokenStream, seq_len: int):
        self.stream = stream
        self.seq_len = seq_len
        self.num_blocks = len(stream) // seq_len
        self.dtype = stream.dtype

    def __len__(self) -> int:
        return self.num_blocks

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_blocks, self.seq_len)

    def _row(self, i: int) -> np.ndarray:
        if not -self.num_blocks <= i < self.num_blocks:
            raise IndexError(f"block {i} out of range ({self.num_blocks} blocks)")
        i %= self.num_blocks
        return self.stream.read(i * self.seq_len, (i + 1) * self.seq_len)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._row(int(key))
        if isinstance(key, slice):
            rows = range(*key.indices(self.num_blocks))
            if key.step in (None, 1):
                if not len(rows):
                    return np.zeros((0, self.seq_len), self.dtype)
                flat = self.stream.read(rows[0] * self.seq_len, (rows[-1] + 1) * self.seq_len)
                return flat.reshape(len(rows), self.seq_len)
            key = np.arange(rows.start, rows.stop, rows.step)
        idx = np.asarray(key).reshape(-1)
        out = np.empty((len(idx), self.seq_len), self.dtype)
        for r, i in enumerate(idx):
            out[r] = self._row(int(i))
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype) if dtype is not None else self[:]


def _split_stream(folder: Path) -> TokenStream:
    info = json.loads((folder / "index.json").read_text())
    arrays = [
        np.memmap(
            folder / f"shard-{i:06d}.bin", dtype=info["dtype"], mode="r", shape=(m["tokens"],)
        )
        for i, m in enumerate(info["shards"])
        if m["tokens"]
    ]
    return TokenStream(arrays)


def load_prepared(root: Path, val_fraction: float = 0.1) -> dict[str, TokenizedSplit]:
    """{split: TokenizedSplit} of a prepared folder, as :func:`~repro_core.data.tokenize_corpus`
    returns: a split without ``validation`` gives the last ``val_fraction`` of the training
    tokens (and the same share of its bytes). ``tokens`` is a memmap when the split lies in one
    shard, else a :class:`TokenStream`."""
    index = json.loads((root / "index.json").read_text())
    out = {}
    for split, info in index["splits"].items():
        stream = _split_stream(root / split)
        n, nb = len(stream), info["bytes"]
        if split == "train" and "validation" not in index["splits"]:
            cut = int(n * (1 - val_fraction))
            frac = cut / max(n, 1)
            out["train"] = TokenizedSplit(stream.view(0, cut), int(nb * frac))
            out["validation"] = TokenizedSplit(stream.view(cut, n), nb - int(nb * frac))
        else:
            out[split] = TokenizedSplit(stream.view(0, n), nb)
    return out


def document_ends(root: Path, split: str) -> np.ndarray:
    """End offsets (in tokens, over the whole split) of every document of ``split``."""
    folder = root / split
    info = json.loads((folder / "index.json").read_text())
    ends, base = [], 0
    for i, m in enumerate(info["shards"]):
        ends.append(np.load(folder / f"shard-{i:06d}.docs.npy") + base)
        base += m["tokens"]
    return np.concatenate(ends) if ends else np.zeros(0, np.int64)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def prepared_splits(
    corpus: Corpus, tokenizer, val_fraction: float = 0.1, workers: int = 0, log=print
) -> dict[str, TokenizedSplit]:
    """Prepare (if missing) and open the shards of ``corpus`` x ``tokenizer``."""
    root = shard_root(corpus, tokenizer)
    if not is_prepared(root):
        log(
            f"[prepare] tokenizing {corpus.name} into {root} (run `repro-prepare` before a "
            "multi-node launch so that no rank waits on it)"
        )
        prepare(corpus, tokenizer, workers or default_workers(), root=root, log=log)
    return load_prepared(root, val_fraction)


def epochs_over_corpus(tokens_planned: int, train_tokens: int) -> float:
    """How many times a budget of ``tokens_planned`` goes over ``train_tokens``."""
    return tokens_planned / max(train_tokens, 1)


# ----------------------------------------------------------------------------------------------
# Command line


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``repro-prepare``: tokenize a preset's corpus (or any corpus) into shards."""
    from .config import UserError, load_config, package_preset_dirs
    from .data import get_tokenizer, resolve_corpus

    p = ArgumentParser(
        prog="repro-prepare",
        description="Tokenize a corpus into memmapped shards (streamed, N workers, resumable). "
        "Run it once before a multi-node launch; the trainer finds the shards by corpus + "
        "tokenizer fingerprint.",
    )
    p.add_argument("--preset", default=None, help="take corpus and tokenizer from this preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--corpus", default=None, help="corpus name, path or hub id (else the preset's)")
    p.add_argument("--tokenizer", default=None, help="bpe:N, sentencepiece:N or a HF tokenizer")
    p.add_argument("--workers", type=int, default=0, help="tokenizer processes (0 = cores, <= 8)")
    p.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_BYTES / 2**20)
    args = p.parse_args(argv)
    cfg = None
    if args.preset:
        cfg = load_config(args.preset, args.overrides, preset_dirs=package_preset_dirs(__file__))
    corpus_name = args.corpus or (cfg.data.corpus if cfg else None)
    tok_spec = args.tokenizer or (cfg.data.tokenizer if cfg else None)
    if not corpus_name or not tok_spec:
        p.error("pass --preset, or both --corpus and --tokenizer")
    if args.workers < 0 or args.shard_mb <= 0:
        raise UserError("--workers must be >= 0 (0 = cores) and --shard-mb > 0")
    corpus = resolve_corpus(corpus_name)
    sample = cfg.data.tokenizer_sample_bytes if cfg else 10**9
    tokenizer = get_tokenizer(tok_spec, corpus, sample_bytes=sample)
    workers = args.workers or default_workers()
    root = prepare(corpus, tokenizer, workers, int(args.shard_mb * 2**20))
    index = json.loads((root / "index.json").read_text())
    for split, info in index["splits"].items():
        print(
            f"{split}: {info['tokens']:,} tokens, {info['bytes']:,} bytes, {info['documents']:,} docs"
        )
    print(f"shards: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "Blocks",
    "TokenStream",
    "document_ends",
    "encode_documents",
    "epochs_over_corpus",
    "load_prepared",
    "prepare",
    "prepared_splits",
    "shard_root",
    "token_dtype",
]
