"""repro_core.prepare: streamed, sharded, resumable tokenization checked against the in-memory
path (repro_core.data.tokenize_corpus), and the rank-sharded reading of the shards."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from repro_core.data import BlockSampler, as_blocks, get_tokenizer, resolve_corpus, tokenize_corpus
from repro_core.prepare import Blocks, TokenStream, document_ends, load_prepared, prepare

WORDS = np.array(
    "the cat sat on a mat déjà vu naïve 42 and ran über straße 東京 x lorem ipsum dolor sit "
    "amet 7 1999 -".split()
)


def quiet(*args):
    pass


def make_docs(n: int, seed: int = 0) -> list[str]:
    """n documents of 0..39 words (some empty), deterministic."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 40, size=n)
    words = WORDS[rng.integers(0, len(WORDS), size=int(lengths.sum()))].tolist()
    ends = np.cumsum(lengths)
    return [" ".join(words[e - k : e]) for k, e in zip(lengths, ends)]


def write_lines(path: Path, docs: list[str]) -> None:
    path.write_text("".join(d + "\n" for d in docs), encoding="utf-8")


def as_arrays(splits: dict) -> dict:
    return {k: (np.asarray(v.tokens), v.num_bytes) for k, v in splits.items()}


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for split in a:
        assert a[split][1] == b[split][1], f"{split}: byte counts differ"
        assert a[split][0].dtype == b[split][0].dtype, split
        np.testing.assert_array_equal(a[split][0], b[split][0], err_msg=split)


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("txt")
    docs = make_docs(4000)
    write_lines(folder / "train.txt", docs[:3000])
    write_lines(folder / "valid.txt", docs[3000:])
    corpus = resolve_corpus(str(folder))
    return corpus, get_tokenizer("bpe:300", corpus)


def test_two_workers_over_many_shards_give_exactly_the_in_memory_tokens(text_corpus, tmp_path):
    corpus, tok = text_corpus
    root = prepare(corpus, tok, workers=2, shard_bytes=8_000, root=tmp_path / "s", log=quiet)
    assert len(json.loads((root / "train" / "index.json").read_text())["shards"]) > 5
    assert_same(as_arrays(load_prepared(root, 0.1)), as_arrays(tokenize_corpus(corpus, tok, 0.1)))


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_record_folder_gives_the_in_memory_tokens_with_an_eos_after_each_document(kind, tmp_path):
    docs = make_docs(1200, seed=3)
    folder = tmp_path / kind
    folder.mkdir()
    parts = {"train-0": docs[:500], "train-1": docs[500:1000], "validation": docs[1000:]}
    for stem, part in parts.items():
        if kind == "jsonl":
            with open(folder / f"{stem}.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps({"text": d}) + "\n" for d in part)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"text": part}), folder / f"{stem}.parquet", row_group_size=100)
    corpus = resolve_corpus(str(folder))
    assert sorted(corpus.files) == ["train", "validation"]
    tok = get_tokenizer("bpe:300", corpus)
    root = prepare(corpus, tok, workers=2, shard_bytes=4_000, root=tmp_path / "s", log=quiet)
    got = as_arrays(load_prepared(root))
    assert_same(got, as_arrays(tokenize_corpus(corpus, tok)))
    # the document index: one end per non-empty document, each closed by eos
    train_docs = [d for d in docs[:1000] if d]
    ends = document_ends(root, "train")
    assert len(ends) == len(train_docs)
    tokens = got["train"][0]
    assert ends[-1] == len(tokens) and np.all(tokens[ends - 1] == tok.eos_token_id)
    starts = np.concatenate([[0], ends[:-1]])
    for i in (0, 17, len(train_docs) - 1):
        ids = tok(train_docs[i], add_special_tokens=False)["input_ids"]
        np.testing.assert_array_equal(tokens[starts[i] : ends[i] - 1], ids)


KILL_AFTER_THREE_SHARDS = textwrap.dedent(
    """
    import os, signal, sys
    import repro_core.prepare as P
    from repro_core.data import get_tokenizer, resolve_corpus

    original, done = P.write_shard, []

    def write_then_die(folder, index, *args, **kwargs):
        out = original(folder, index, *args, **kwargs)
        done.append(index)
        if len(done) == 3:
            (folder / ".shard-000003.bin.999").write_bytes(b"half a shard")  # torn write
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    P.write_shard = write_then_die
    corpus = resolve_corpus(sys.argv[1])
    P.prepare(corpus, get_tokenizer("bpe:300", corpus), workers=1, shard_bytes=8000,
              root=sys.argv[2], log=lambda *a: None)
    """
)


def test_prepare_killed_after_three_shards_resumes_to_the_same_result(text_corpus, tmp_path):
    corpus, tok = text_corpus
    cut = tmp_path / "cut"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_THREE_SHARDS, corpus.name, str(cut)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (cut / "index.json").exists()
    first = sorted(cut.rglob("shard-*.json"))
    assert len(first) == 3
    stamps = {p: p.stat().st_mtime_ns for p in first}
    logs = []
    prepare(corpus, tok, workers=2, root=cut, log=logs.append)
    assert any("(3 resumed)" in line for line in logs), logs
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # not rewritten
    fresh = prepare(corpus, tok, workers=1, shard_bytes=8000, root=tmp_path / "fresh", log=quiet)
    for split in ("train", "validation"):
        for f in sorted((fresh / split).glob("shard-*")):
            assert (cut / split / f.name).read_bytes() == f.read_bytes(), f.name
    assert_same(as_arrays(load_prepared(cut)), as_arrays(tokenize_corpus(corpus, tok)))


def test_blocks_over_shards_equal_the_reshaped_concatenation():
    rng = np.random.default_rng(0)
    shards = [rng.integers(0, 1000, size=n).astype(np.uint16) for n in (37, 5, 64, 1, 90)]
    flat = np.concatenate(shards)
    stream = TokenStream(shards)
    for a, b in [(0, len(flat)), (3, 40), (36, 43), (100, 197), (40, 41)]:
        np.testing.assert_array_equal(np.asarray(stream[a:b]), flat[a:b])
    part = stream[10:150]
    blocks = as_blocks(part, 8)
    assert isinstance(blocks, Blocks) and blocks.shape == (17, 8)
    ref = flat[10:146].reshape(17, 8)
    np.testing.assert_array_equal(blocks[:], ref)
    np.testing.assert_array_equal(blocks[2:9], ref[2:9])
    idx = np.array([16, 0, 5, 5, 11])
    np.testing.assert_array_equal(blocks[idx], ref[idx])
    np.testing.assert_array_equal(blocks[-1], ref[-1])


def test_two_ranks_read_disjoint_blocks_that_together_cover_the_split():
    rng = np.random.default_rng(1)
    shards = [rng.integers(0, 60000, size=n).astype(np.uint16) for n in (1000, 333, 2000, 507)]
    flat = np.concatenate(shards)
    L = 16
    blocks = as_blocks(TokenStream(shards), L)  # 240 blocks, 7 of them span two shards
    ref = flat[: len(blocks) * L].reshape(-1, L)
    sampler = BlockSampler(len(blocks), micro_batch=3, grad_accum=2, world_size=2, seed=5)
    assert len(blocks) % sampler.global_batch == 0
    seen = {0: [], 1: []}
    for step in range(sampler.steps_per_epoch):
        for micro in range(2):
            for rank in (0, 1):
                idx = sampler.indices(step, micro, rank)
                rows = blocks[np.sort(idx)]
                np.testing.assert_array_equal(rows, ref[np.sort(idx)])
                seen[rank].extend(idx.tolist())
    a, b = set(seen[0]), set(seen[1])
    assert len(a) == len(seen[0]) and len(b) == len(seen[1])  # no block twice within a rank
    assert not a & b
    assert a | b == set(range(len(blocks)))


# ------------------------------------------------------------------------------------------
# A corpus of >= 50 MB: exactness and memory that does not grow with the corpus

MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from repro_core.data import get_tokenizer, resolve_corpus
    from repro_core.prepare import prepare

    corpus = resolve_corpus(sys.argv[1])
    tok = get_tokenizer("bpe:300", resolve_corpus(sys.argv[3]))
    shard = int(sys.argv[4]) if len(sys.argv) > 4 else 4 << 20
    prepare(corpus, tok, workers=2, shard_bytes=shard, root=sys.argv[2], log=lambda *a: None)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"main_kb": own, "worker_kb": kids}))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_50mb_corpus_two_workers_exact_tokens_and_peak_memory_flat_when_doubled(tmp_path):
    sample = tmp_path / "sample"
    sample.mkdir()
    docs = make_docs(60_000, seed=7)  # ~6 MB, repeated with other seeds below
    write_lines(sample / "train.txt", docs[:20_000])
    text = "".join(d + "\n" for seed in range(10) for d in make_docs(60_000, seed=seed))
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "train.txt").write_text(text, encoding="utf-8")
    (two / "train.txt").write_text(text + text, encoding="utf-8")
    size = (one / "train.txt").stat().st_size
    assert size >= 50e6, size
    peaks = {}
    for name, folder in (("one", one), ("two", two)):
        proc = subprocess.run(
            [sys.executable, "-c", MEASURE, str(folder), str(tmp_path / f"s-{name}"), str(sample)],
            capture_output=True,
            text=True,
            timeout=3000,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        peaks[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    grow_main = peaks["two"]["main_kb"] - peaks["one"]["main_kb"]
    grow_worker = peaks["two"]["worker_kb"] - peaks["one"]["worker_kb"]
    print(f"corpus {size / 1e6:.1f} MB -> x2: peak RSS {peaks}")
    # doubling adds 50+ MB of text; an in-memory path would grow by more than that
    assert grow_main < 15_000 and grow_worker < 15_000, peaks
    corpus = resolve_corpus(str(one))
    tok = get_tokenizer("bpe:300", resolve_corpus(str(sample)))
    assert_same(
        as_arrays(load_prepared(tmp_path / "s-one")), as_arrays(tokenize_corpus(corpus, tok))
    )
