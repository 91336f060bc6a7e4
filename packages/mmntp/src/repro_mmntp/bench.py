"""``make perf`` cases: tokenizer and LM training throughput against plain-PyTorch versions of the
same shapes (the obvious alternative a reader would write).

* VQ-VAE training step (images/s): our tokenizer (EMA codebook, dead-code restart) vs a plain
  VQ-VAE with a learned codebook (``torch.cdist`` + argmin + codebook/commitment losses).
* Decoder LM training step (tokens/s): ``MMNTPForCausalLM`` (the core decoder: RMSNorm, RoPE,
  SwiGLU, SDPA) vs ``nn.TransformerEncoder`` (pre-norm, GELU MLP widened to the same parameter
  count, causal mask) with the same width, depth, heads and vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .modeling import MMNTPConfig, MMNTPForCausalLM
from .tokenizers import VQTokenizer
from .tokenizers.autoencoder import ConvDecoder, ConvEncoder


class PlainVQVAE(nn.Module):
    """The textbook VQ-VAE: L = ||x - D(z_q)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2."""

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.encoder, self.decoder = ConvEncoder(dim), ConvDecoder(dim)
        self.codebook = nn.Parameter(torch.randn(num_codes, dim) * 0.1)
        self.beta = beta

    def loss(self, images):
        z = self.encoder(images)  # (N, 16, D)
        codes = torch.cdist(z, self.codebook[None].expand(z.shape[0], -1, -1)).argmin(-1)
        e = self.codebook[codes]
        zq = z + (e - z).detach()
        recon = F.mse_loss(self.decoder(zq), images)
        return recon + F.mse_loss(e, z.detach()) + self.beta * F.mse_loss(z, e.detach())


class PlainGPT(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, ffn: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(256, d)
        layer = nn.TransformerEncoderLayer(
            d, heads, ffn, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.embed(ids) + self.pos(torch.arange(T))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(T)
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))


def _step(model, loss_fn):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = loss_fn(model)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def perf_cases(quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    batch_images = 32 if quick else 128
    images = torch.rand(batch_images, 8, 8)
    ours_tok = VQTokenizer(64, 16).train()
    plain_tok = PlainVQVAE(64, 16).train()
    d, layers, heads, vocab = (64, 1, 4, 110) if quick else (96, 2, 4, 110)
    batch, seq = (8, 30) if quick else (64, 30)
    cfg = MMNTPConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=4 * d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
    )
    ours_lm = MMNTPForCausalLM(cfg).train()
    plain_lm = PlainGPT(vocab, d, layers, heads, ffn=6 * d).train()  # 2 x 6d = 3 x 4d weights
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))

    def plain_lm_loss(m):
        logits = m(ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))

    return [
        {
            "name": f"VQ-VAE training step, K=64, batch {batch_images} 8x8 images",
            "unit": "images",
            "work": batch_images,
            "candidate": (
                "repro_mmntp VQTokenizer (EMA, restarts)",
                _step(ours_tok, lambda m: m.loss(images)[0]),
            ),
            "baseline": (
                "plain PyTorch VQ-VAE (learned codebook)",
                _step(plain_tok, lambda m: m.loss(images)),
            ),
        },
        {
            "name": f"MMNTP decoder training step, d={d} x {layers} layers, batch {batch}x{seq}",
            "unit": "tokens",
            "work": batch * seq,
            "candidate": (
                "MMNTPForCausalLM (core DecoderLM)",
                _step(ours_lm, lambda m: m(input_ids=ids, labels=ids).loss),
            ),
            "baseline": ("plain nn.TransformerEncoder GPT", _step(plain_lm, plain_lm_loss)),
        },
    ]
