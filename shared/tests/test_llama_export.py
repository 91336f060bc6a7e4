"""A dense DecoderLM is saved as a plain Llama checkpoint: transformers and lm-eval's HF model
load it in a process that never imports repro_core, with the same logits."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from repro_core.data import train_bpe_tokenizer
from repro_core.modeling import DecoderConfig, DecoderLM

TEXTS = ["the cat sat on the mat.\n", "a dog ran in the park, the end.\n"] * 20

LOADER = """
import json, sys
import numpy as np
import torch
from transformers import AutoModelForCausalLM
from lm_eval.models.huggingface import HFLM

path, ids = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(path)
lm = HFLM(pretrained=path, device="cpu", batch_size=1)
x = torch.tensor([ids])
with torch.no_grad():
    a, b = model(x).logits, lm.model(x).logits
np.save(sys.argv[3], np.stack([a[0].float().numpy(), b[0].float().numpy()]))
print(json.dumps({
    "class": type(model).__name__,
    "lm_eval_class": type(lm.model).__name__,
    "ours_imported": sorted(m for m in sys.modules if m.startswith("repro")),
}))
"""


@pytest.mark.slow  # importing lm-eval in the child: ~1 min of CPU
def test_dense_model_loads_as_llama_in_plain_transformers_and_lm_eval(tmp_path):
    torch.manual_seed(0)
    tok = train_bpe_tokenizer(TEXTS, 300, tmp_path / "model")
    config = DecoderConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=5000.0,
        eos_token_id=tok.eos_token_id,
    )
    model = DecoderLM(config).eval()
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["model_type"] == "llama" and saved["architectures"] == ["LlamaForCausalLM"]
    ids = tok("the cat ran in the park.")["input_ids"]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOADER,
            str(tmp_path / "model"),
            json.dumps(ids),
            tmp_path / "l.npy",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info == {
        "class": "LlamaForCausalLM",
        "lm_eval_class": "LlamaForCausalLM",
        "ours_imported": [],
    }
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0].numpy()
    theirs = np.load(tmp_path / "l.npy")
    np.testing.assert_allclose(theirs[0], ours, atol=1e-5, rtol=0)
    np.testing.assert_allclose(theirs[1], ours, atol=1e-5, rtol=0)


def test_models_with_their_own_layers_keep_their_model_type(tmp_path):
    per_head = DecoderLM(
        DecoderConfig(
            vocab_size=50,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=2,
            rope_theta_per_head=[1e4, 5e5],
        )
    )
    per_head.save_pretrained(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model_type"] == "repro_decoder"

    class Sub(DecoderLM):
        pass

    sub = Sub(
        DecoderConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    sub.save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model_type"] == "repro_decoder"
