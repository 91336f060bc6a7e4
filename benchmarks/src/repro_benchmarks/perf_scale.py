"""``make perf`` cases of the paper-scale machinery.

* ``prepare``: MB/s of ``repro_core.prepare`` (shards, 1 and 2 worker processes) against HF
  ``datasets.Dataset.map`` with the same tokenizer and ``num_proc``. The baseline's text is
  already loaded into an Arrow dataset (its load is not timed); ``prepare`` reads the file.
* ``loss``: a training step (forward, backward, AdamW) of the tiny-preset decoder with the
  chunked loss (no (B, T, V) logits) against the plain cross-entropy on full fp32 logits, same
  model. ``extra`` reports the bytes saved for the backward pass by each (measured with
  ``torch.autograd.graph.saved_tensors_hooks``; on CUDA also the allocator's peak).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch


def _corpus(folder: Path, megabytes: float) -> Path:
    rng = np.random.default_rng(0)
    words = np.array(
        "the of and to in a is that for it as was with be by on not he this are or his from at "
        "which but have an they you were her she there been one all we their has would when "
        "über naïve 東京 1999 42 straße".split()
    )
    lines, size = [], 0
    while size < megabytes * 1e6:
        n = int(rng.integers(5, 60))
        line = " ".join(words[rng.integers(0, len(words), n)].tolist()) + "\n"
        lines.append(line)
        size += len(line.encode())
    path = folder / "train.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _tokenizer(corpus):
    from repro_core.data import get_tokenizer

    return get_tokenizer("bpe:4096", corpus), "bpe:4096 (byte-level BPE, HF tokenizers)"


def prepare_cases(quick: bool = False) -> list[dict]:
    from datasets import load_dataset
    from repro_core.data import resolve_corpus
    from repro_core.prepare import prepare

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    folder = Path(tempfile.mkdtemp(prefix="perf-prepare-"))
    path = _corpus(folder, 0.5 if quick else 8)
    corpus = resolve_corpus(str(path))
    tok, tok_name = _tokenizer(corpus)
    size = path.stat().st_size
    ds = load_dataset("text", data_files=str(path), split="train", keep_linebreaks=True)

    def run_prepare(workers):
        def fn():
            root = folder / f"shards-{workers}"
            shutil.rmtree(root, ignore_errors=True)
            prepare(
                corpus, tok, workers=workers, shard_bytes=1 << 20, root=root, log=lambda *a: None
            )

        return fn

    def run_map(num_proc):
        def fn():
            ds.map(
                lambda b: tok(b["text"], add_special_tokens=False),
                batched=True,
                num_proc=num_proc if num_proc > 1 else None,
                remove_columns=["text"],
                load_from_cache_file=False,
            )

        return fn

    return [
        {
            "name": f"prepare {size / 1e6:.1f} MB of text, {tok_name}, {n} process(es)",
            "unit": "bytes",
            "work": size,
            "candidate": (f"repro_core.prepare (workers={n})", run_prepare(n)),
            "baseline": (f"datasets.map (num_proc={n})", run_map(n)),
        }
        for n in (1, 2)
    ]


def saved_bytes(step) -> int:
    """Bytes of the distinct tensors autograd saves for the backward of ``step()``."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def loss_cases(quick: bool = False) -> list[dict]:
    from repro_core import DecoderConfig, DecoderLM

    shape = dict(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=256,
    )
    batch, seq = 8, 256
    if quick:
        shape.update(hidden_size=64, intermediate_size=176, num_hidden_layers=2, vocab_size=512)
        batch, seq = 2, 64
    torch.manual_seed(0)
    model = DecoderLM(DecoderConfig(**shape)).train()
    x = torch.randint(0, shape["vocab_size"], (batch, seq))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(chunk):
        def fn():
            model.loss_chunk_tokens = chunk
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return fn

    def forward_only(chunk):
        def fn():
            model.loss_chunk_tokens = chunk
            model(input_ids=x, labels=x).loss.sum()

        return fn

    chunk = 2048
    new, old = saved_bytes(forward_only(chunk)), saved_bytes(forward_only(0))
    extra = {
        "saved_for_backward_mb": {"candidate": new / 2**20, "baseline": old / 2**20},
        "saved_ratio": new / old,
    }
    return [
        {
            "name": f"training step, tiny shape (V={shape['vocab_size']}), batch {batch}x{seq}",
            "unit": "tokens",
            "work": batch * seq,
            "candidate": (f"chunked loss ({chunk} tokens/chunk)", step(chunk)),
            "baseline": ("cross-entropy on full fp32 logits", step(0)),
            "extra": extra,
        }
    ]
