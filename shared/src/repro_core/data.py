"""Corpora, tokenizers, token caches and packed blocks.

* :func:`resolve_corpus` turns a corpus name into local files under ``REPRO_DATA_DIR``
  (``wikitext-2``, ``wikitext-2-raw``, ``tinyshakespeare``), any local ``.txt``/``.jsonl`` file or
  folder, or a HF hub dataset id; all loading goes through ``datasets.load_dataset``.
* :func:`get_tokenizer` trains (byte-level BPE through HF ``tokenizers``, or SentencePiece) or
  loads a HF tokenizer; every tokenizer is a ``transformers`` tokenizer object afterwards.
* :func:`tokenize_corpus` tokenizes once and caches token ids as a memmap keyed by a hash of the
  corpus files and the tokenizer, with the byte count of each split (for bits per byte).
* :class:`BlockSampler` packs a split into fixed-length blocks and yields a deterministic,
  resumable, rank-sharded order of batches.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import MissingInputError

# corpus name -> (folder under REPRO_DATA_DIR, {split: file}, hub id, hub config)
NAMED_CORPORA: dict[str, tuple[str, dict[str, str], str, str | None]] = {
    "wikitext-2": (
        "wikitext-2",
        {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
        "Salesforce/wikitext",
        "wikitext-2-v1",
    ),
    "wikitext-2-raw": (
        "wikitext-2-raw",
        {"validation": "wiki.valid.raw", "test": "wiki.test.raw"},
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
    ),
    "tinyshakespeare": (
        "tinyshakespeare",
        {"train": "input.txt"},
        "karpathy/tiny_shakespeare",
        None,
    ),
    # Corpora of the paper presets (sizes in the README). Read through `datasets` streaming
    # unless a local copy (same file names as wikitext-2, or a folder of .parquet/.jsonl files
    # passed as a path) exists; prepare them with `repro-prepare` before a multi-node launch.
    "wikitext-103": (
        "wikitext-103",
        {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
        "Salesforce/wikitext",
        "wikitext-103-v1",
    ),
    "fineweb-edu-10bt": ("fineweb-edu-10bt", {}, "HuggingFaceFW/fineweb-edu", "sample-10BT"),
    "pile-uncopyrighted": ("pile-uncopyrighted", {}, "monology/pile-uncopyrighted", None),
    "slimpajama-627b": ("slimpajama-627b", {}, "cerebras/SlimPajama-627B", None),
}

# Suffixes of local corpus files: plain text (one document per line) or records with `text`.
TEXT_SUFFIXES = (".txt", ".raw")
RECORD_SUFFIXES = (".jsonl", ".parquet")

EOS_TOKEN = "<|endoftext|>"


def workspace_root() -> Path | None:
    """The repository root: the nearest folder holding the workspace ``pyproject.toml`` (one
    with ``[tool.uv.workspace]``) above the working directory, else above this file (an
    editable install); None for an installed wheel run outside a checkout."""
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            pyproject = folder / "pyproject.toml"
            try:
                if pyproject.is_file() and "[tool.uv.workspace]" in pyproject.read_text():
                    return folder
            except OSError:
                continue
    return None


def data_dir() -> Path | None:
    """The local data folder, the same for every entry point (CLI, tests, notebooks):

    1. ``REPRO_DATA_DIR`` when set (None if that folder does not exist: an explicit setting is
       never replaced by a guess);
    2. else ``../shared/data`` beside the repository root (:func:`workspace_root`), the folder
       the Makefile uses;
    3. else None: named corpora come from the HF hub.
    """
    value = os.environ.get("REPRO_DATA_DIR")
    if value:
        return Path(value) if Path(value).is_dir() else None
    root = workspace_root()
    sibling = root.parent / "shared" / "data" if root is not None else None
    return sibling if sibling is not None and sibling.is_dir() else None


def hub_offline(timeout: float = 3.0) -> bool:
    """True when the HF hub cannot be used: ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` = 1,
    or (no HTTPS proxy set) no TCP connection to ``HF_ENDPOINT`` (default huggingface.co)
    within ``timeout`` s."""
    import socket
    from urllib.parse import urlsplit

    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return True
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # behind a proxy a direct connection proves nothing: let the hub client try
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except (OSError, ValueError):
        return True
    return False


def cache_dir() -> Path:
    """Where tokenizers and token ids are cached (``REPRO_CACHE_DIR``, default ~/.cache/repro)."""
    path = Path(os.environ.get("REPRO_CACHE_DIR", Path.home() / ".cache" / "repro"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Corpus:
    """A resolved corpus: local files per split, or a hub dataset id."""

    name: str
    files: dict[str, list[Path]] | None = None
    hub_id: str | None = None
    hub_config: str | None = None

    def fingerprint(self) -> str:
        """Hash of the file contents (or of the hub id), used as part of cache keys."""
        h = hashlib.sha256(self.name.encode())
        if self.files:
            for split in sorted(self.files):
                for f in self.files[split]:
                    h.update(split.encode())
                    with open(f, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 20), b""):
                            h.update(chunk)
        else:
            h.update(f"{self.hub_id}/{self.hub_config}".encode())
        return h.hexdigest()[:16]


def resolve_corpus(name: str) -> Corpus:
    """Resolve a corpus name, path or hub id.

    Raises FileNotFoundError naming the folder tried and how to provide the data.
    """
    if name in NAMED_CORPORA:
        folder, splits, hub_id, hub_config = NAMED_CORPORA[name]
        root = data_dir()
        if root is not None and (root / folder).is_dir():
            files = {
                s: [root / folder / f] for s, f in splits.items() if (root / folder / f).is_file()
            }
            if files:
                return Corpus(name, files=files)
        if hub_offline():
            env = os.environ.get("REPRO_DATA_DIR")
            tried = root / folder if root else f"REPRO_DATA_DIR={env}" if env else "../shared/data"
            raise MissingInputError(
                f"corpus {name!r}: no local copy at {tried} and the hub is offline. Set "
                f"REPRO_DATA_DIR to a folder containing {folder}/ ({', '.join(splits.values())}), "
                f"or go online so the hub dataset {hub_id!r} can be downloaded."
            )
        return Corpus(name, hub_id=hub_id, hub_config=hub_config)
    path = Path(name).expanduser()
    if path.is_file():
        return Corpus(name, files={"train": [path]})
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES + RECORD_SUFFIXES)
        if not files:
            raise FileNotFoundError(
                f"corpus folder {path} holds no .txt/.jsonl/.parquet/.raw files"
            )
        by_split: dict[str, list[Path]] = {}
        for f in files:
            stem = f.stem.lower()
            split = (
                "validation"
                if stem.startswith(("valid", "val", "dev"))
                else "test"
                if stem.startswith("test")
                else "train"
            )
            by_split.setdefault(split, []).append(f)
        return Corpus(name, files=by_split)
    hub_like = "/" in name and not name.startswith((".", "/", "~"))
    if hub_like and not hub_offline():
        return Corpus(name, hub_id=name)
    raise MissingInputError(
        f"corpus {name!r} not found: it is not one of the named corpora {sorted(NAMED_CORPORA)}, "
        "not a local file or folder, and "
        + ("the hub is offline" if hub_like else "not a hub id (owner/name)")
        + ". Set REPRO_DATA_DIR to ../shared/data (or the folder holding the corpora) or pass a path."
    )


def load_split_texts(corpus: Corpus, split: str) -> list[str]:
    """Documents of one split as strings, through ``datasets.load_dataset``.

    Local ``.txt`` files give one document per line (line breaks kept); ``.jsonl`` and
    ``.parquet`` one per record (field ``text``). The whole split is held in memory: the
    streaming equivalent is :func:`iter_documents` (used by ``repro_core.prepare``).
    """
    from datasets import load_dataset

    if corpus.files is not None:
        files = corpus.files.get(split)
        if not files:
            raise KeyError(f"corpus {corpus.name!r} has no {split!r} split")
        if files[0].suffix in RECORD_SUFFIXES:
            kind = "json" if files[0].suffix == ".jsonl" else "parquet"
            ds = load_dataset(kind, data_files={split: [str(f) for f in files]}, split=split)
        else:
            ds = load_dataset(
                "text",
                data_files={split: [str(f) for f in files]},
                split=split,
                keep_linebreaks=True,
            )
        return list(ds["text"])
    ds = load_dataset(corpus.hub_id, corpus.hub_config, split=split)
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    return list(ds[column])


def iter_documents(corpus: Corpus, split: str) -> Iterator[str]:
    """Stream the documents of one split, in the order of :func:`load_split_texts`.

    Memory stays bounded by one document (text lines, jsonl records) or one parquet row group;
    hub datasets are read with ``datasets`` streaming. ``.txt`` files are read as
    ``datasets``' text loader reads them (universal newlines, split on "\\n", line breaks kept).
    """
    if corpus.files is None:
        from datasets import load_dataset

        ds = load_dataset(corpus.hub_id, corpus.hub_config, split=split, streaming=True)
        column = None
        for record in ds:
            if column is None:
                column = "text" if "text" in record else next(iter(record))
            yield record[column] or ""
        return
    files = corpus.files.get(split)
    if not files:
        raise KeyError(f"corpus {corpus.name!r} has no {split!r} split")
    for f in files:
        if f.suffix == ".jsonl":
            with open(f, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        record = json.loads(line)
                        if "text" not in record:
                            raise ValueError(
                                f"{f}:{n}: record has no 'text' field; a .jsonl corpus needs "
                                "one JSON object with a 'text' string per line"
                            )
                        yield record["text"] or ""
        elif f.suffix == ".parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(f)
            if "text" not in pf.schema_arrow.names:
                raise ValueError(f"{f}: no 'text' column (columns: {pf.schema_arrow.names})")
            for batch in pf.iter_batches(batch_size=1024, columns=["text"]):
                for text in batch.column(0).to_pylist():
                    yield text or ""
        else:
            with open(f, encoding="utf-8") as fh:
                yield from fh


def has_document_records(corpus: Corpus) -> bool:
    """True when documents are records (jsonl, parquet, hub): an eos token follows each one.

    Plain-text corpora (one line per document, as wikitext) are concatenated as they are.
    """
    return corpus.files is None or any(
        f.suffix in RECORD_SUFFIXES for fs in corpus.files.values() for f in fs
    )


def sample_documents(corpus: Corpus, split: str, max_bytes: int) -> Iterator[str]:
    """The first documents of ``split`` up to ``max_bytes`` UTF-8 bytes (0 = all), streamed."""
    seen = 0
    for text in iter_documents(corpus, split):
        if max_bytes and seen >= max_bytes:
            return
        seen += len(text.encode("utf-8"))
        yield text


def corpus_splits(corpus: Corpus) -> list[str]:
    if corpus.files is not None:
        return sorted(corpus.files)
    from datasets import get_dataset_split_names

    return list(get_dataset_split_names(corpus.hub_id, corpus.hub_config))


# ----------------------------------------------------------------------------------------------
# Tokenizers


def get_tokenizer(spec: str, corpus: Corpus | None = None, sample_bytes: int = 10**9):
    """Return a HF tokenizer for ``spec``.

    ``bpe:N`` / ``sentencepiece:N`` train one with N tokens on the first ``sample_bytes`` bytes
    of the corpus's train split, streamed (0 = the whole split; cached under the cache dir,
    keyed by the corpus fingerprint, and by the budget when it cuts the split); anything else is passed to
    ``AutoTokenizer.from_pretrained`` (a local directory, e.g. ``$REPRO_DATA_DIR/gpt2-tokenizer``,
    or a hub id). ``$REPRO_DATA_DIR`` in the spec is expanded.

    Plug-ins: a distribution that declares ``KIND = "module:function"`` in the entry-point group
    ``repro.tokenizers`` makes ``KIND:REST`` resolve to ``function(REST, corpus)`` (a HF
    tokenizer). Plug-in modules are imported before a directory is loaded, so the tokenizer
    classes they register with ``AutoTokenizer`` load from saved runs too.
    """
    from importlib.metadata import entry_points

    from transformers import AutoTokenizer

    spec = os.path.expandvars(spec)
    kind, _, size = spec.partition(":")
    plugins = {ep.name: ep for ep in entry_points(group="repro.tokenizers")}
    if kind in plugins and kind not in ("bpe", "sentencepiece"):
        return plugins[kind].load()(size, corpus)
    if kind in ("bpe", "sentencepiece") and size:
        if not size.isdigit() or int(size) < 260:
            raise ValueError(f"tokenizer {spec!r}: the size after ':' must be an integer >= 260")
        if corpus is None:
            raise ValueError(f"tokenizer {spec!r} is trained on a corpus; pass the corpus")
        split = "train" if "train" in corpus_splits(corpus) else corpus_splits(corpus)[0]
        budget = _sample_budget(corpus, split, sample_bytes)
        suffix = f"-sample{budget}" if budget else ""
        out = cache_dir() / "tokenizers" / f"{corpus.fingerprint()}-{kind}-{size}{suffix}"
        if not (out / "tokenizer_config.json").is_file():
            texts = sample_documents(corpus, split, budget)
            trainer = train_bpe_tokenizer if kind == "bpe" else train_sentencepiece_tokenizer
            _atomic_dir(out, lambda tmp: trainer(texts, int(size), tmp))
        return AutoTokenizer.from_pretrained(str(out))
    if Path(spec).is_dir() or "/" in spec or not Path(spec).suffix:
        for ep in plugins.values():  # their AutoTokenizer registrations
            ep.load()
        try:
            return AutoTokenizer.from_pretrained(spec)
        except OSError as exc:
            raise FileNotFoundError(
                f"tokenizer {spec!r} could not be loaded ({exc}). Use bpe:N, sentencepiece:N, or a "
                "directory holding a HF tokenizer (tokenizer.json or vocab.json + merges.txt)."
            ) from exc
    raise ValueError(
        f"tokenizer {spec!r}: expected bpe:N, sentencepiece:N, a HF tokenizer dir, or a plug-in "
        f"KIND:... with KIND in {sorted(plugins)}"
    )


def _sample_budget(corpus: Corpus, split: str, sample_bytes: int) -> int:
    """``sample_bytes``, or 0 when the split's local files are smaller (the whole split is read,
    and the cache key stays the one of a tokenizer trained on all of it)."""
    if not sample_bytes:
        return 0
    if corpus.files is not None:
        if sum(f.stat().st_size for f in corpus.files.get(split, [])) <= sample_bytes:
            return 0
    return int(sample_bytes)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path):
    """Byte-level BPE (GPT-2 style) with ``<|endoftext|>`` as eos, saved as a fast tokenizer.

    ``texts`` may be a stream (any iterable of documents)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    length = len(texts) if hasattr(texts, "__len__") else None
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN)
    fast.save_pretrained(str(out_dir))
    return fast


def train_sentencepiece_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path):
    """SentencePiece BPE (byte fallback), wrapped as a HF ``LlamaTokenizer``; ``texts`` may be
    a stream (written to a temporary file line by line)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    text_file = out_dir / "train.txt"
    with open(text_file, "w", encoding="utf-8") as fh:
        for t in texts:
            if t.strip():
                fh.write(t if t.endswith("\n") else t + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text_file),
        model_prefix=str(out_dir / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        num_threads=os.cpu_count() or 1,
        max_sentence_length=1 << 16,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )
    text_file.unlink()
    tok = LlamaTokenizer.from_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return tok


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of a tokenizer's saved files (any HF tokenizer, fast or not)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for f in sorted(Path(tmp).iterdir()):
            if f.name == "tokenizer_config.json":
                cfg = json.loads(f.read_text())
                cfg.pop("name_or_path", None)
                h.update(json.dumps(cfg, sort_keys=True).encode())
            else:
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Tokenized corpora


@dataclass
class TokenizedSplit:
    """Token ids of one split (a read-only memmap) and the UTF-8 bytes they encode."""

    tokens: np.ndarray
    num_bytes: int

    @property
    def bytes_per_token(self) -> float:
        return self.num_bytes / max(len(self.tokens), 1)


def _atomic_dir(final: Path, write) -> None:
    """Run ``write(tmp_dir)`` then rename tmp_dir to ``final`` (no half-written cache)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write(tmp)
        if final.exists():  # another process won the race
            shutil.rmtree(tmp)
            return
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _encode_texts(texts: list[str], tokenizer, eos_between_docs: bool, desc: str) -> np.ndarray:
    from tqdm.auto import tqdm

    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.uint32
    pieces = []
    batch = 2048
    eos = tokenizer.eos_token_id
    for start in tqdm(
        range(0, len(texts), batch), desc=desc, disable=len(texts) < 4 * batch, leave=False
    ):
        chunk = [t for t in texts[start : start + batch] if t]
        if not chunk:
            continue
        ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        if eos_between_docs and eos is not None:
            ids = [seq + [eos] for seq in ids]
        lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(
            itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum())
        )
        pieces.append(flat)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def tokenize_corpus(
    corpus: Corpus, tokenizer, val_fraction: float = 0.1
) -> dict[str, TokenizedSplit]:
    """Tokenize every split once and cache it (memmap); returns {split: TokenizedSplit}.

    Plain-text corpora (one document per line, as wikitext) are concatenated as they are;
    ``.jsonl`` and hub corpora get an eos token after each document. A corpus without a
    ``validation`` split gets one from the last ``val_fraction`` of its training tokens.
    """
    key = f"{corpus.fingerprint()}-{tokenizer_fingerprint(tokenizer)}-v{val_fraction}"
    root = cache_dir() / "tokens" / key

    def write(tmp: Path) -> None:
        meta = {"corpus": corpus.name, "tokenizer": tokenizer.name_or_path, "splits": {}}
        eos_between = has_document_records(corpus)
        for split in corpus_splits(corpus):
            texts = load_split_texts(corpus, split)
            ids = _encode_texts(texts, tokenizer, eos_between, f"tokenizing {corpus.name}/{split}")
            n_bytes = sum(len(t.encode("utf-8")) for t in texts)
            if split == "train" and "validation" not in corpus_splits(corpus):
                cut = int(len(ids) * (1 - val_fraction))
                frac = cut / max(len(ids), 1)
                parts = {
                    "train": (ids[:cut], int(n_bytes * frac)),
                    "validation": (ids[cut:], n_bytes - int(n_bytes * frac)),
                }
            else:
                parts = {split: (ids, n_bytes)}
            for name, (arr, nb) in parts.items():
                arr.tofile(tmp / f"{name}.bin")
                meta["splits"][name] = {
                    "tokens": int(len(arr)),
                    "bytes": int(nb),
                    "dtype": str(arr.dtype),
                }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))

    if not (root / "meta.json").is_file():
        _atomic_dir(root, write)
    meta = json.loads((root / "meta.json").read_text())
    return {
        name: TokenizedSplit(
            np.memmap(root / f"{name}.bin", dtype=info["dtype"], mode="r", shape=(info["tokens"],)),
            info["bytes"],
        )
        for name, info in meta["splits"].items()
    }


# ----------------------------------------------------------------------------------------------
# Packing and sampling


def as_blocks(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """View a 1-D token array as (num_blocks, seq_len) non-overlapping blocks (tail dropped).

    A :class:`~repro_core.prepare.TokenStream` (a split over several shards) gives a
    :class:`~repro_core.prepare.Blocks` view that reads rows on indexing."""
    n = len(tokens) // seq_len
    if n == 0:
        raise ValueError(
            f"split has {len(tokens)} tokens, fewer than one block of seq_len={seq_len}"
        )
    if not isinstance(tokens, np.ndarray):
        from .prepare import Blocks

        return Blocks(tokens, seq_len)
    return tokens[: n * seq_len].reshape(n, seq_len)


class BlockSampler:
    """Deterministic, resumable order of training blocks, sharded over ranks.

    Each optimizer step consumes G = micro_batch * grad_accum * world_size blocks of a seeded
    permutation (a new permutation every epoch). Micro-batch ``m`` of rank ``r`` gets rows
    ``[(m * world + r) * B, ... + B)`` of the step's G rows, so 1 process with accumulation 2
    sees exactly the rows 2 processes with accumulation 1 see.
    """

    def __init__(
        self, num_blocks: int, micro_batch: int, grad_accum: int, world_size: int, seed: int
    ):
        self.num_blocks = num_blocks
        self.micro_batch = micro_batch
        self.grad_accum = grad_accum
        self.world_size = world_size
        self.seed = seed
        self.global_batch = micro_batch * grad_accum * world_size
        if self.global_batch > num_blocks:
            raise ValueError(
                f"global batch of {self.global_batch} blocks exceeds the {num_blocks} training blocks; "
                "lower train.batch_size / train.grad_accum or use more data"
            )
        self.steps_per_epoch = num_blocks // self.global_batch
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_blocks)
            self._perm_epoch = epoch
        return self._perm

    def indices(self, step: int, micro: int, rank: int) -> np.ndarray:
        """Block indices of micro-batch ``micro`` of optimizer step ``step`` on ``rank``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        start = within * self.global_batch + (micro * self.world_size + rank) * self.micro_batch
        return self._permutation(epoch)[start : start + self.micro_batch]


__all__ = [
    "BlockSampler",
    "Corpus",
    "NAMED_CORPORA",
    "TokenizedSplit",
    "as_blocks",
    "cache_dir",
    "data_dir",
    "hub_offline",
    "workspace_root",
    "get_tokenizer",
    "has_document_records",
    "iter_documents",
    "load_split_texts",
    "resolve_corpus",
    "sample_documents",
    "tokenize_corpus",
    "tokenizer_fingerprint",
    "train_bpe_tokenizer",
    "train_sentencepiece_tokenizer",
]
