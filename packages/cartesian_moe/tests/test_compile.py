"""torch.compile of a CartesianMoE model equals eager in loss and gradients (train.compile)."""

import pytest
import torch
from repro_cartesian_moe.modeling import CartesianMoEConfig, CartesianMoEForCausalLM


@pytest.mark.slow
def test_compiled_cartesian_moe_equals_eager_in_loss_and_gradients():
    torch.manual_seed(0)
    config = CartesianMoEConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=32,
        moe_variant="cartesian",
        num_experts=4,
    )
    model = CartesianMoEForCausalLM(config).train()
    x = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))

    def loss_and_grads(m):
        model.zero_grad(set_to_none=True)
        out = m(x, labels=x)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.loss.detach(), grads

    ref_loss, ref = loss_and_grads(model)
    loss, got = loss_and_grads(torch.compile(model))
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    assert got.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=1e-5, rtol=1e-4, msg=name)
