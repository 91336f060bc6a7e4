"""Finite scalar quantization (Mentzer et al. 2023; survey section 2.2.1): each of d latent
dimensions is bounded and rounded to L_i levels, the implicit codebook has prod(L_i) codes and
there is no codebook to learn (no EMA, no commitment loss, no dead codes).

    z_hat = round(f(z)),  f(z) = tanh(z + shift) * (L - 1) / 2 - offset     (offset 0.5 for even L)
    index = sum_i (z_hat_i + L_i // 2) * prod_{j < i} L_j
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import ConvDecoder, ConvEncoder


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (x.round() - x).detach()


class FiniteScalarQuantizer(nn.Module):
    def __init__(self, levels: list[int]):
        super().__init__()
        if not levels or min(levels) < 2:
            raise ValueError(f"fsq levels {levels} must be a non-empty list of integers >= 2")
        lv = torch.tensor(levels, dtype=torch.float64)
        self.register_buffer("levels", lv.float())
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1])), 0)
        self.register_buffer("basis", basis)
        self.num_codes = int(torch.prod(torch.tensor(levels)))
        half_l = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        self.register_buffer("half_l", half_l.float())
        self.register_buffer("offset", offset.float())
        self.register_buffer("shift", torch.atanh(offset / half_l).float())
        self.register_buffer("half_width", (lv // 2).float())

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z + self.shift) * self.half_l - self.offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L, d) -> (grid values in [-1, 1] (straight-through), codes (N, L))."""
        grid = round_ste(self.bound(z))  # integers in [-L//2, (L-1)//2]
        return grid / self.half_width, self.grid_to_index(grid)

    def grid_to_index(self, grid: torch.Tensor) -> torch.Tensor:
        return ((grid.round() + self.half_width).long() * self.basis).sum(-1)

    def index_to_grid(self, codes: torch.Tensor) -> torch.Tensor:
        """(...) indices -> (..., d) integer grid values."""
        digits = (codes[..., None] // self.basis) % self.levels.long()
        return digits.float() - self.half_width


class FSQTokenizer(nn.Module):
    kind = "fsq"

    def __init__(self, levels=(4, 4, 4)):
        super().__init__()
        d = len(levels)
        self.encoder, self.decoder = ConvEncoder(d), ConvDecoder(d)
        self.quantizer = FiniteScalarQuantizer(list(levels))
        self.num_codes, self.codes_per_image, self.latent_dim = self.quantizer.num_codes, 16, d

    def loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
        zq, _ = self.quantizer(self.encoder(images))
        recon = F.mse_loss(self.decoder(zq), images)
        return recon, {"recon_mse": recon.item()}

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        return self.quantizer.bound(self.encoder(images)) / self.quantizer.half_width

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.quantizer(self.encoder(images))[1]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.index_to_grid(codes) / self.quantizer.half_width)

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
