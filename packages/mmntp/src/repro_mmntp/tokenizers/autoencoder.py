"""The convolutional encoder/decoder shared by the VQ, FSQ and residual-VQ tokenizers (spec B.5):
8x8 -> 4x4 grid of D-dim latents (16 tokens per image) and back."""

from __future__ import annotations

import torch
from torch import nn


class ConvEncoder(nn.Module):
    """(N, 8, 8) images -> (N, 16, D) latents z_e (4x4 grid in raster order)."""

    def __init__(self, latent_dim: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1),  # 8x8 -> 4x4
            nn.ReLU(),
            nn.Conv2d(width, latent_dim, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.net(images[:, None])  # (N, D, 4, 4)
        return z.flatten(2).transpose(1, 2)  # (N, 16, D)


class ConvDecoder(nn.Module):
    """(N, 16, D) latents -> (N, 8, 8) images (the mirror of :class:`ConvEncoder`)."""

    def __init__(self, latent_dim: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(latent_dim, width, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),  # 4x4 -> 8x8
            nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, length, d = z.shape
        side = int(round(length**0.5))
        grid = z.transpose(1, 2).reshape(n, d, side, side)  # (N, D, 4, 4)
        return self.net(grid)[:, 0]  # (N, 8, 8)
