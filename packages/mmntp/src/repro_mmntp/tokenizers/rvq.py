"""Two-level residual VQ (RQ-VAE, Lee et al. 2022; survey section 2.2.1): the second codebook
quantizes what the first left over, z_q = q1(z) + q2(z - q1(z)).

In the LM sequence the two codes of a grid cell follow each other (depth inside raster order,
as RQ-Transformer flattens them): 32 codes per image; level-2 ids are offset by K so the LM sees
2K distinct image codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import ConvDecoder, ConvEncoder
from .vq import EMAVectorQuantizer


class ResidualVQTokenizer(nn.Module):
    kind = "rvq"

    def __init__(
        self, num_codes=64, latent_dim=16, decay=0.99, commitment=0.25, dead_threshold=0.01
    ):
        super().__init__()
        self.encoder, self.decoder = ConvEncoder(latent_dim), ConvDecoder(latent_dim)
        self.levels = nn.ModuleList(
            EMAVectorQuantizer(num_codes, latent_dim, decay, dead_threshold) for _ in range(2)
        )
        self.commitment, self.codes_per_level = commitment, num_codes
        self.num_codes, self.codes_per_image, self.latent_dim = 2 * num_codes, 32, latent_dim

    def quantize(self, z: torch.Tensor):
        residual, zq, codes, commit = z, torch.zeros_like(z), [], 0.0
        for q in self.levels:
            part, c, cm = q(residual)
            zq = zq + part
            residual = residual - part.detach()
            codes.append(c)
            commit = commit + cm
        return zq, codes, commit

    def loss(self, images):
        zq, _, commit = self.quantize(self.encoder(images))
        recon = F.mse_loss(self.decoder(zq), images)
        return recon + self.commitment * commit, {"recon_mse": recon.item()}

    def latents(self, images):
        return self.encoder(images)

    def encode(self, images):
        """(N, 8, 8) -> (N, 32): [c1_0, K + c2_0, c1_1, K + c2_1, ...]."""
        _, (c1, c2), _ = self.quantize(self.encoder(images))
        return torch.stack([c1, c2 + self.codes_per_level], -1).flatten(1)

    def decode(self, codes):
        pairs = codes.view(codes.shape[0], -1, 2)  # (N, 16, 2)
        c1, c2 = (
            pairs[..., 0],
            (pairs[..., 1] - self.codes_per_level).clamp(0, self.codes_per_level - 1),
        )
        z = self.levels[0].lookup(c1.clamp(0, self.codes_per_level - 1)) + self.levels[1].lookup(c2)
        return self.decoder(z)

    def decode_latents(self, z):
        return self.decoder(z)
