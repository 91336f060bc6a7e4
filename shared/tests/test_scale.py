"""Trainer features for large runs: the chunked loss, gradient checkpointing, torch.compile,
no host synchronisation per step; each checked against the plain computation."""

import json
import sys

import pytest
import repro_core.train as core_train
import torch
import torch.nn.functional as F
from repro_core import DecoderConfig, DecoderLM
from repro_core.config import load_config, package_preset_dirs
from repro_core.layers import Attention
from repro_core.modeling import linear_cross_entropy, set_gradient_checkpointing
from repro_core.moe import MoEFeedForward, report_aux
from repro_core.train import Trainer

PRESETS = package_preset_dirs(core_train.__file__)
SMALL = dict(
    vocab_size=61,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=32,
)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


class MoEMLP(torch.nn.Module):
    """The core MoE layer as a decoder MLP, with its losses reported (aux losses in state)."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.moe = MoEFeedForward(config.hidden_size, 4, 16, top_k=2, init_std=0.3)

    def forward(self, x, state):
        y, aux = self.moe(x)
        report_aux(state, aux, load_balancing_coef=0.01, z_loss_coef=0.001)
        return y


class ReuseFirstLayerValues(Attention):
    """Layers > 0 add layer 0's attention output (read from state.shared): a cross-layer
    tensor that later layers overwrite, as a KV-sharing model does."""

    def forward(self, x, position_embeddings, attention_mask, cache=None, state=None):
        out = super().forward(x, position_embeddings, attention_mask, cache, state)
        if "first" in state.shared:
            out = out + 0.5 * state.shared["first"]
        state.shared["first"] = out  # overwritten by every layer
        return out


class MoEModel(DecoderLM):
    mlp_class = MoEMLP


class CrossLayerModel(DecoderLM):
    attention_class = ReuseFirstLayerValues


def loss_and_grads(model, x, **kwargs):
    model.zero_grad(set_to_none=True)
    out = model(x, labels=x, **kwargs)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_grads_close(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


# ------------------------------------------------------------------------------------------
# Loss without (B, T, V) logits


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_chunked_loss_equals_full_logits_cross_entropy_in_loss_and_gradients(tie):
    torch.manual_seed(0)
    model = DecoderLM(DecoderConfig(**SMALL, tie_word_embeddings=tie)).double().train()
    x = torch.randint(0, 61, (3, 17))
    model.loss_chunk_tokens = 0  # the plain path: F.cross_entropy on full fp logits
    ref_out, ref = loss_and_grads(model, x)
    assert ref_out.logits is not None
    model.loss_chunk_tokens = 7  # 51 rows in 8 chunks, the last one short
    out, got = loss_and_grads(model, x)
    assert out.logits is None  # never materialised in training
    torch.testing.assert_close(out.lm_loss, ref_out.lm_loss, atol=1e-12, rtol=0)
    assert_grads_close(got, ref, atol=1e-12)


def test_linear_cross_entropy_ignores_labels_minus_100_like_f_cross_entropy():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(40, 8, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(13, 8, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, 13, (40,), generator=g)
    y[::3] = -100
    a = linear_cross_entropy(h, w, y, chunk_tokens=6)
    ga = torch.autograd.grad(2.5 * a, (h, w))
    b = F.cross_entropy(h @ w.T, y, ignore_index=-100)
    gb = torch.autograd.grad(2.5 * b, (h, w))
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, atol=1e-12, rtol=0)


def test_eval_mode_and_return_logits_still_give_fp32_logits():
    model = DecoderLM(DecoderConfig(**SMALL)).train()
    x = torch.randint(0, 61, (2, 9))
    assert model(x, labels=x, return_logits=True).logits.dtype == torch.float32
    assert model.eval()(x, labels=x).logits.shape == (2, 9, 61)


# ------------------------------------------------------------------------------------------
# Gradient checkpointing


@pytest.mark.parametrize("cls", [DecoderLM, MoEModel, CrossLayerModel])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(cls):
    torch.manual_seed(0)
    model = cls(DecoderConfig(**SMALL)).double().train()
    x = torch.randint(0, 61, (2, 16))
    ref_out, ref = loss_and_grads(model, x)
    assert set_gradient_checkpointing(model, True) == 1
    out, got = loss_and_grads(model, x)
    torch.testing.assert_close(out.loss, ref_out.loss, atol=1e-12, rtol=0)
    assert out.aux_losses.keys() == ref_out.aux_losses.keys()
    for k in ref_out.aux_losses:  # recomputation adds no second auxiliary loss
        torch.testing.assert_close(out.aux_losses[k], ref_out.aux_losses[k], atol=1e-12, rtol=0)
    assert_grads_close(got, ref, atol=1e-10)


def test_gradient_checkpointing_recomputes_layers_in_the_backward_pass():
    calls = []
    model = DecoderLM(DecoderConfig(**SMALL)).train()
    for layer in model.model.layers:
        layer.mlp.register_forward_pre_hook(lambda *a: calls.append(1))
    x = torch.randint(0, 61, (2, 8))
    model(x, labels=x).loss.backward()
    plain = len(calls)
    calls.clear()
    set_gradient_checkpointing(model, True)
    model(x, labels=x).loss.backward()
    assert (plain, len(calls)) == (3, 6)


# ------------------------------------------------------------------------------------------
# torch.compile


@pytest.mark.slow
@pytest.mark.parametrize("cls", [DecoderLM, MoEModel])
def test_compiled_model_equals_eager_in_loss_and_gradients(cls):
    torch.manual_seed(0)
    model = cls(DecoderConfig(**SMALL)).train()
    x = torch.randint(0, 61, (2, 16))
    ref_out, ref = loss_and_grads(model, x)
    compiled = torch.compile(model)
    out = compiled(x, labels=x)
    model.zero_grad(set_to_none=True)
    out.loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.testing.assert_close(out.loss, ref_out.loss, atol=1e-5, rtol=1e-5)
    assert_grads_close(got, ref, atol=1e-5)


# ------------------------------------------------------------------------------------------
# The training loop


def count_host_syncs(monkeypatch, max_steps: int, tmp_path) -> int:
    calls = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            # AdamW reads its step counter, a CPU tensor even on GPU (no device sync)
            if "torch/optim/" not in sys._getframe(1).f_code.co_filename:
                calls.append(1)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    cfg = load_config(
        "debug",
        [
            "train.progress=false",
            f"train.max_steps={max_steps}",
            "train.warmup_steps=1",
            "train.eval_every=0",
            "train.eval_batches=1",
            "train.log_every=100",
            "train.grad_accum=2",
        ],
        preset_dirs=PRESETS,
    )
    trainer = Trainer(cfg, tmp_path / f"run{max_steps}")
    calls.clear()
    trainer.train()
    monkeypatch.undo()
    return len(calls)


def test_host_synchronisations_do_not_grow_with_the_number_of_steps(monkeypatch, tmp_path):
    few = count_host_syncs(monkeypatch, 2, tmp_path)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    many = count_host_syncs(monkeypatch, 6, tmp_path)
    assert many == few, (few, many)


def test_gradient_checkpointing_and_chunked_loss_in_the_trainer_match_the_plain_run(tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    common = [
        "train.progress=false",
        "train.max_steps=3",
        "train.eval_every=0",
        "train.log_every=1",
    ]
    losses = []
    for extra in (["train.loss_chunk_tokens=0"], ["train.gradient_checkpointing=true"]):
        cfg = load_config("debug", [*common, *extra], preset_dirs=PRESETS)
        trainer = Trainer(cfg, tmp_path / str(len(losses)))
        trainer.train()
        lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(line)["lm_loss"] for line in lines[:3]])
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert losses[0] == pytest.approx(losses[1], abs=2e-5)
