"""DecoderLM against HF Llama (an independent implementation), and its extension points."""

import pytest
import torch
from repro_core import (
    DecoderConfig,
    DecoderLM,
    count_parameters,
    flops_per_token,
    load_llama_checkpoint,
)
from repro_core.layers import Attention, RotaryEmbedding, SwiGLUMLP
from repro_core.modeling import decoder_config_from_llama
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


def tiny_llama(num_kv_heads: int, tie: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie,
        rope_theta=500.0,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_logits_match_hf_llama(num_kv_heads):
    hf = tiny_llama(num_kv_heads)
    ours = DecoderLM(decoder_config_from_llama(hf.config)).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    x = torch.randint(0, 97, (3, 29), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=1e-5, rtol=0)
        # the loss, too (HF shifts inside, so do we)
        torch.testing.assert_close(ours(x, labels=x).loss, hf(x, labels=x).loss, atol=1e-5, rtol=0)


@pytest.mark.parametrize("num_kv_heads", [4, 2])
def test_greedy_generate_matches_hf(num_kv_heads):
    hf = tiny_llama(num_kv_heads)
    ours = DecoderLM(decoder_config_from_llama(hf.config)).eval()
    ours.load_state_dict(hf.state_dict())
    prompt = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(prompt)
    kw = dict(max_new_tokens=12, do_sample=False, attention_mask=mask, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, **kw), hf.generate(prompt, **kw))


def test_left_padded_batch_equals_unpadded_rows():
    hf = tiny_llama(2)
    ours = DecoderLM(decoder_config_from_llama(hf.config)).eval()
    ours.load_state_dict(hf.state_dict())
    a = torch.tensor([[5, 6, 7, 8, 9]])
    b = torch.tensor([[11, 12, 13]])
    batch = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 11, 12, 13]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    out = ours.generate(batch, attention_mask=mask, **kw)
    assert torch.equal(out[0], ours.generate(a, **kw)[0])
    assert torch.equal(out[1, 2:], ours.generate(b, **kw)[0])


def test_incremental_decoding_with_cache_equals_full_forward():
    model = DecoderLM(
        DecoderConfig(
            vocab_size=50,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).eval()
    x = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        full = model(x).logits
        out = model(x[:, :10], use_cache=True)
        steps = [out.logits]
        cache = out.cache
        for t in range(10, 16):
            out = model(x[:, t : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_loader_turns_hf_llama_checkpoint_into_decoder(tmp_path):
    hf = tiny_llama(2, tie=True)
    hf.save_pretrained(tmp_path / "llama")
    ours = load_llama_checkpoint(tmp_path / "llama").eval()
    assert isinstance(ours, DecoderLM) and ours.missing_keys == []
    assert ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()
    x = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=1e-5, rtol=0)


def test_save_pretrained_round_trip_through_automodel(tmp_path):
    model = DecoderLM(
        DecoderConfig(
            vocab_size=40,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
        )
    ).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # no trust_remote_code
    # a dense DecoderLM is saved as a plain Llama checkpoint (model_type llama)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    x = torch.randint(0, 40, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, loaded(x).logits, atol=1e-5, rtol=1e-5)


def test_config_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="num_key_value_heads"):
        DecoderConfig(num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match="rope_theta_per_head"):
        DecoderConfig(num_attention_heads=4, rope_theta_per_head=[1.0, 2.0])
    with pytest.raises(ValueError, match="share one base"):
        DecoderConfig(
            num_attention_heads=4, num_key_value_heads=2, rope_theta_per_head=[1e4, 2e4, 1e4, 1e4]
        )


# ---------------------------------------------------------------------------------------------
# Extension points: each is exercised by a small subclass, the way a paper package uses it.

SMALL = dict(
    vocab_size=60,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
)


class ScaledMLP(SwiGLUMLP):
    """MLP extension point: an MLP that reads input ids and adds an auxiliary loss."""

    def forward(self, x, state):
        assert state.input_ids is not None
        y = super().forward(x, state)
        state.add_loss("l2", 1e-3 * y.pow(2).mean())
        return 0.5 * y


class SharedMapAttention(Attention):
    """Attention + state: layer 0 stores its output in state.shared, later layers add it."""

    def forward(self, x, position_embeddings, attention_mask, cache=None, state=None):
        out = super().forward(x, position_embeddings, attention_mask, cache, state)
        if self.layer_idx == 0:
            state.shared["first_attention_output"] = out
            return out
        return out + 0.0 * state.shared["first_attention_output"]


class ScaledMLPModel(DecoderLM):
    mlp_class = ScaledMLP


class SharedStateModel(DecoderLM):
    attention_class = SharedMapAttention


def test_mlp_extension_point_and_aux_losses_reported_separately():
    torch.manual_seed(0)
    model = ScaledMLPModel(DecoderConfig(**SMALL))
    assert all(isinstance(layer.mlp, ScaledMLP) for layer in model.model.layers)
    x = torch.randint(0, 60, (2, 12))
    out = model(x, labels=x)
    assert set(out.aux_losses) == {"l2"}
    torch.testing.assert_close(out.loss, out.lm_loss + out.aux_losses["l2"])
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_attention_extension_point_shares_tensors_across_layers():
    model = SharedStateModel(DecoderConfig(**SMALL))
    ref = DecoderLM(DecoderConfig(**SMALL))
    ref.load_state_dict(model.state_dict())
    x = torch.randint(0, 60, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, ref(x).logits)


def test_rotary_extension_point_per_head_bases():
    """Per-head RoPE bases: head h must equal a single-base model whose base is that head's."""
    torch.manual_seed(0)
    bases = [100.0, 100.0, 5000.0, 5000.0]
    cfg = DecoderConfig(**SMALL, rope_theta_per_head=bases)
    rot = RotaryEmbedding(cfg)
    pos = torch.arange(10)[None]
    cos, sin = rot(torch.zeros(1), pos)
    assert cos.shape == (1, 4, 10, cfg.head_dim)
    for h, base in enumerate(bases):
        single = RotaryEmbedding(DecoderConfig(**SMALL, rope_theta=base))
        c1, s1 = single(torch.zeros(1), pos)
        torch.testing.assert_close(cos[:, h], c1[:, 0])
        torch.testing.assert_close(sin[:, h], s1[:, 0])
    # a whole model with one base per head runs forward and generate
    model = DecoderLM(cfg).eval()
    out = model.generate(torch.randint(0, 60, (1, 4)), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)


def test_rotary_class_can_be_replaced():
    class NoRope(RotaryEmbedding):
        def forward(self, x, position_ids):
            cos, sin = super().forward(x, position_ids)
            return torch.ones_like(cos), torch.zeros_like(sin)

    class NoRopeModel(DecoderLM):
        rotary_class = NoRope

    model = NoRopeModel(DecoderConfig(**(SMALL | {"num_hidden_layers": 1}))).eval()
    assert isinstance(model.model.rotary_emb, NoRope)
    x = torch.randint(0, 60, (1, 8))
    with torch.no_grad():
        # one layer without positions: the last token's logits ignore the order of the prefix
        a = model(x).logits[0, -1]
        b = model(torch.cat([x[:, :-1].flip(1), x[:, -1:]], 1)).logits[0, -1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


class HalfActiveMLP(SwiGLUMLP):
    def num_activated_parameters(self):
        return sum(p.numel() for p in self.parameters()) // 2


class HalfActiveModel(DecoderLM):
    mlp_class = HalfActiveMLP


def test_parameter_and_flop_counts_follow_their_formulas():
    cfg = DecoderConfig(**SMALL)
    model = DecoderLM(cfg)
    d, f, L, V, H, hd, kv = 32, 64, 3, 60, 4, 8, 2
    per_layer = d * H * hd + 2 * d * kv * hd + H * hd * d + 3 * d * f + 2 * d
    counts = count_parameters(model)
    assert counts["total"] == V * d * 2 + L * per_layer + d
    assert counts["embedding"] == V * d
    assert counts["activated"] == counts["non_embedding"]
    seq = 16
    flops = flops_per_token(model, seq)
    assert flops["forward"] == 2 * counts["activated"] + L * 4 * H * hd * seq
    assert flops["train"] == 3 * flops["forward"]
    half = HalfActiveModel(cfg)
    mlp = 3 * d * f
    assert count_parameters(half)["activated"] == counts["activated"] - L * mlp // 2


def test_custom_4d_attention_mask_matches_hf_llama():
    """A boolean (B, 1, T, T) mask (here prefix-LM: the first 5 tokens see each other) is used as
    given, like HF Llama's custom 4-D masks; a 4-D causal mask equals the default path."""
    hf = tiny_llama(2)
    ours = DecoderLM(decoder_config_from_llama(hf.config)).eval()
    ours.load_state_dict(hf.state_dict())
    x = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(3))
    causal = torch.ones(11, 11, dtype=torch.bool).tril()
    prefix = causal.clone()
    prefix[:5, :5] = True
    mask = prefix[None, None].expand(2, 1, 11, 11)
    with torch.no_grad():
        got = ours(x, attention_mask=mask).logits
        torch.testing.assert_close(got, hf(x, attention_mask=mask).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(got[:, :4], ours(x).logits[:, :4], atol=1e-4)
        torch.testing.assert_close(
            ours(x, attention_mask=causal[None, None]).logits, ours(x).logits, atol=1e-6, rtol=0
        )
        with pytest.raises(ValueError, match="custom 4-D attention mask"):
            ours(x, attention_mask=mask[:, :, :10])
