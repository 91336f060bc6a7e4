"""The lm-eval adapter (repro_core.harness) against numbers computed another way.

* lm-eval's wikitext bits per byte (our local task, lm-eval's windows and aggregation) equals
  ``repro_core.evaluate.rolling_bits_per_byte`` (own windows, direct forward passes).
* ``ReproLM`` gives lm-eval's own ``HFLM`` numbers on a HF tokenizer (multiple choice + rolling).
* A tokenizer that is not a HF tokenizer and a model whose forward needs an extra input work, and
  a log-likelihood equals the sum of log-probabilities computed by hand.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lm_eval")

from repro_core import DecoderConfig, DecoderLM  # noqa: E402
from repro_core.evaluate import rolling_bits_per_byte, rolling_loglikelihood  # noqa: E402
from repro_core.harness import (  # noqa: E402
    UnknownTaskError,
    evaluate,
    load_model,
    make_lm,
    summary,
    task_manager,
)

TASKS = Path(__file__).resolve().parents[2] / "benchmarks" / "tasks"
DATA = os.environ.get("REPRO_DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA or not Path(DATA, "wikitext-2-raw", "wiki.test.raw").is_file(),
    reason="needs REPRO_DATA_DIR (../shared/data) with wikitext-2-raw and copa",
)


@pytest.fixture(autouse=True)
def _offline_single_thread(tmp_path, monkeypatch):
    """No hub access, a private datasets cache (hermetic; fast unknown-task errors) and one torch
    thread: these models are tiny, and on a busy 2-core machine thread spinning makes them ~10x
    slower."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A 300-token byte-level BPE (fast HF tokenizer, eos = <|endoftext|>) trained on WikiText-2."""
    from repro_core.data import train_bpe_tokenizer

    if not DATA:
        pytest.skip("needs REPRO_DATA_DIR")
    text = Path(DATA, "wikitext-2", "valid.txt").read_text(encoding="utf-8")[:100_000]
    return train_bpe_tokenizer(text.split("\n"), 300, tmp_path_factory.mktemp("tok"))


def tiny_decoder(vocab_size: int, max_positions: int = 64, seed: int = 0) -> DecoderLM:
    torch.manual_seed(seed)
    config = DecoderConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=max_positions,
    )
    return DecoderLM(config).eval()


@needs_data
def test_lm_eval_wikitext_bits_per_byte_equals_direct_rolling_evaluation(tokenizer):
    model = tiny_decoder(len(tokenizer), max_positions=64)
    res = evaluate(
        model,
        tokenizer,
        ["wikitext2_local"],
        include_path=TASKS,
        limit=2,
        batch_size=16,
        log_samples=True,
    )
    assert res["n-samples"]["wikitext2_local"] == {"original": 62, "effective": 2}
    lm_eval_bpb = res["results"]["wikitext2_local"]["bits_per_byte,none"]

    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

    docs = [s["doc"] for s in res["samples"]["wikitext2_local"]]
    # lm-eval scores the detokenized page and divides by the bytes of the original page.
    ours = rolling_bits_per_byte(
        model,
        tokenizer,
        [wikitext_detokenizer(d) for d in docs],
        max_length=64,
        num_bytes=[len(d["page"].encode("utf-8")) for d in docs],
    )
    assert ours["tokens"] > 10 * 64  # many windows per document, so the window scheme matters
    assert abs(ours["bits_per_byte"] - lm_eval_bpb) < 1e-3, (ours, lm_eval_bpb)
    assert 4.0 < lm_eval_bpb < 12.0  # a random model: about log2(vocab) bits per token


def test_rolling_loglikelihood_equals_one_long_forward_when_the_text_fits():
    model = tiny_decoder(50, max_positions=64)
    ids = torch.randint(1, 50, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    x = torch.tensor([[0, *ids]])
    with torch.no_grad():
        log_probs = F.log_softmax(model(input_ids=x).logits.float(), -1)[0, :-1]
    expected = float(log_probs.gather(-1, x[0, 1:, None]).sum())
    assert rolling_loglikelihood(model, ids, max_length=64, prefix_token_id=0) == pytest.approx(
        expected, abs=1e-4
    )
    # Shorter windows see less context, so the total changes; every token is still scored once.
    assert rolling_loglikelihood(model, ids, max_length=8, prefix_token_id=0) != pytest.approx(
        expected, abs=1e-4
    )


@needs_data
def test_repro_lm_matches_lm_eval_hflm(tokenizer):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    model = tiny_decoder(len(tokenizer), max_positions=64, seed=3)
    tasks = ["copa_local", "wikitext2_local"]
    manager = task_manager(tasks, TASKS)
    lms = {
        "repro": make_lm(model, tokenizer, batch_size=8, max_length=64),
        "hflm": HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8, max_length=64),
    }
    res = {
        name: lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            task_manager=manager,
            limit=4,
            bootstrap_iters=0,
            log_samples=True,
        )
        for name, lm in lms.items()
    }

    def log_likelihoods(result, task):
        return [
            r[0] if isinstance(r, (list, tuple)) else r
            for sample in result["samples"][task]
            for r in sample["filtered_resps"]
        ]

    for task in tasks:
        ours, theirs = log_likelihoods(res["repro"], task), log_likelihoods(res["hflm"], task)
        assert len(ours) == len(theirs) > 0
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-3)
    assert summary(res["repro"])["wikitext2_local"]["bits_per_byte"] == pytest.approx(
        summary(res["hflm"])["wikitext2_local"]["bits_per_byte"], abs=1e-5
    )


class ByteTokenizer:
    """Not a HF tokenizer: UTF-8 bytes, eos = 256."""

    eos_token_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class NeedsSegmentIds(torch.nn.Module):
    """A model whose forward requires an extra input; it supplies it through the harness hook."""

    def __init__(self):
        super().__init__()
        self.decoder = tiny_decoder(257, max_positions=128, seed=5)
        self.segment_embedding = torch.nn.Embedding(2, 257)
        torch.nn.init.normal_(self.segment_embedding.weight)

    @property
    def config(self):
        return self.decoder.config

    def extra_forward_inputs(self, input_ids):
        return {"segment_ids": (input_ids == 32).long()}  # 1 on spaces

    def forward(self, input_ids, segment_ids):
        return self.decoder(input_ids=input_ids).logits + self.segment_embedding(segment_ids)


@needs_data
def test_non_hf_tokenizer_and_model_with_extra_inputs():
    model = NeedsSegmentIds().eval()
    tok = ByteTokenizer()
    res = evaluate(model, tok, ["copa_local"], include_path=TASKS, limit=4, batch_size=3)
    acc = summary(res)["copa_local"]["acc"]
    assert 0.0 <= acc <= 1.0

    from lm_eval.api.instance import Instance

    lm = make_lm(model, tok, batch_size=2)
    context, continuation = "The cat sat", " on the mat."
    request = Instance("loglikelihood", doc={}, arguments=(context, continuation), idx=0)
    ((logprob, _greedy),) = lm.loglikelihood([request])
    ids = torch.tensor([tok.encode(context + continuation)])
    with torch.no_grad():
        logits = model(ids, **model.extra_forward_inputs(ids))
    log_probs = F.log_softmax(logits.float(), -1)[0, :-1]
    n = len(continuation)
    expected = float(log_probs[-n:].gather(-1, ids[0, -n:, None]).sum())
    assert logprob == pytest.approx(expected, abs=1e-4)
    assert math.isfinite(logprob) and logprob < 0


def test_unknown_task_names_the_local_tasks():
    with pytest.raises(UnknownTaskError, match="piqa_local"):
        task_manager(["piqa_lcoal"], include_path=TASKS)


def test_load_model_says_how_to_produce_a_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="make quickstart"):
        load_model(tmp_path / "nothing-here")


def test_load_model_round_trip(tmp_path, tokenizer):
    model = tiny_decoder(len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = load_model(tmp_path)
    # a dense model is saved as a plain Llama checkpoint, which lm-eval loads as such
    from transformers import LlamaForCausalLM

    assert type(loaded) is LlamaForCausalLM and tok.encode("a b") == tokenizer.encode("a b")
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_generate_until_is_greedy_decoding_cut_at_the_stop_string():
    from lm_eval.api.instance import Instance

    model = NeedsSegmentIds().eval()
    tok = ByteTokenizer()
    lm = make_lm(model, tok)
    request = Instance(
        "generate_until",
        doc={},
        arguments=("Once upon", {"until": ["\n"], "max_gen_toks": 6}),
        idx=0,
    )
    (text,) = lm.generate_until([request])
    ids = tok.encode("Once upon")
    new = []
    with torch.no_grad():
        for _ in range(6):
            x = torch.tensor([ids + new])
            token = int(model(x, **model.extra_forward_inputs(x))[0, -1].argmax())
            if token == tok.eos_token_id:
                break
            new.append(token)
    assert text == tok.decode(new).split("\n")[0]
