import pytest
import torch
from repro_mmntp.modeling import MMNTPConfig, MMNTPForCausalLM
from repro_mmntp.vocab import Vocabulary


@pytest.fixture
def tiny_model():
    """A random decoder over the vocabulary of a 16-code tokenizer."""
    torch.manual_seed(0)
    v = Vocabulary(16)
    cfg = MMNTPConfig(
        code_start=v.code_start,
        num_codes=16,
        vocab_size=len(v),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        bos_token_id=v.bos,
        eos_token_id=v.eos,
        pad_token_id=v.pad,
    )
    return v, MMNTPForCausalLM(cfg).eval()
