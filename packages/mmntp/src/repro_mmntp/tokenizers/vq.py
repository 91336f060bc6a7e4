"""VQ-VAE tokenizer with an EMA codebook, dead-code restart and the commitment loss
(van den Oord et al. 2017; EMA variant of its appendix; survey section 2.2.1 / Fig. 4).

    z = argmin_j ||z_e - c_j||^2                          (Fig. 4: nearest code of codebook C)
    L = ||x - D(z_q)||^2 + beta * ||z_e - sg[z_q]||^2     (the codebook term is replaced by EMA)
    z_q(st) = z_e + sg[z_q - z_e]                         (straight-through: identity gradient)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import ConvDecoder, ConvEncoder


class EMAVectorQuantizer(nn.Module):
    """K codes of dimension D, updated by exponential moving averages of their assigned vectors.

    Args:
        num_codes: K.
        dim: D.
        decay: EMA decay; 0 sets each used code to the mean of the vectors assigned to it.
        dead_threshold: a code whose EMA count falls below this is restarted on a random vector
            of the current batch (0 = never).
    """

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, dead_threshold: float = 0.0):
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"decay={decay} must be in [0, 1)")
        self.num_codes, self.dim, self.decay, self.dead_threshold = (
            num_codes,
            dim,
            decay,
            dead_threshold,
        )
        self.register_buffer("codebook", torch.randn(num_codes, dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.restarts = 0

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (...) index of the nearest code (squared Euclidean)."""
        flat = z.reshape(-1, self.dim)
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.codebook.t()
            + self.codebook.pow(2).sum(1)[None]
        )  # (M, K)
        return dist.argmin(1).view(z.shape[:-1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step of counts and sums; codes without any assignment ever keep their vector."""
        flat, idx = z.reshape(-1, self.dim).float(), codes.reshape(-1)
        onehot = F.one_hot(idx, self.num_codes).type_as(flat)  # (M, K)
        count, total = onehot.sum(0), onehot.t() @ flat  # (K,), (K, D)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(total, alpha=1 - self.decay)
        used = self.ema_count > 0
        self.codebook[used] = self.ema_sum[used] / self.ema_count[used, None]
        if self.dead_threshold > 0:
            dead = (self.ema_count < self.dead_threshold).nonzero().flatten()
            if len(dead):
                pick = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)
                self.codebook[dead] = flat[pick]
                self.ema_sum[dead] = flat[pick]
                self.ema_count[dead] = 1.0
                self.restarts += len(dead)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z_e (N, L, D) -> (straight-through z_q (N, L, D), codes (N, L), commitment term)."""
        codes = self.quantize(z)
        zq = self.lookup(codes)
        if self.training:
            self.ema_update(z.detach(), codes)
        commitment = F.mse_loss(z, zq.detach())
        return z + (zq - z).detach(), codes, commitment


class VQTokenizer(nn.Module):
    """Encoder -> EMA vector quantizer -> decoder; 16 codes per 8x8 image."""

    kind = "vq"

    def __init__(
        self, num_codes=64, latent_dim=16, decay=0.99, commitment=0.25, dead_threshold=0.01
    ):
        super().__init__()
        self.encoder, self.decoder = ConvEncoder(latent_dim), ConvDecoder(latent_dim)
        self.quantizer = EMAVectorQuantizer(num_codes, latent_dim, decay, dead_threshold)
        self.commitment = commitment
        self.num_codes, self.codes_per_image, self.latent_dim = num_codes, 16, latent_dim

    def loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
        z = self.encoder(images)
        zq, codes, commit = self.quantizer(z)
        recon = F.mse_loss(self.decoder(zq), images)
        return recon + self.commitment * commit, {
            "recon_mse": recon.item(),
            "commit": commit.item(),
        }

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantization latents z_e (N, 16, D)."""
        return self.encoder(images)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.quantizer.quantize(self.encoder(images))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(codes))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
