"""ImageGPT-style palette baseline (Chen et al. 2020 cluster pixel colours with k-means): here
k-means over 2x2 pixel patches of the training images, so an 8x8 image is 16 palette indices.
No learned encoder or decoder: decoding pastes the centroid patches back."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_patches(images: torch.Tensor) -> torch.Tensor:
    """(N, 8, 8) -> (N, 16, 4) 2x2 patches in raster order."""
    n = images.shape[0]
    p = images.reshape(n, 4, 2, 4, 2).permute(0, 1, 3, 2, 4)  # (N, 4, 4, 2, 2)
    return p.reshape(n, 16, 4)


def from_patches(patches: torch.Tensor) -> torch.Tensor:
    """(N, 16, 4) -> (N, 8, 8), the inverse of :func:`to_patches`."""
    n = patches.shape[0]
    return patches.reshape(n, 4, 4, 2, 2).permute(0, 1, 3, 2, 4).reshape(n, 8, 8)


class KMeansPaletteTokenizer(nn.Module):
    kind = "kmeans"

    def __init__(self, num_codes: int = 64):
        super().__init__()
        self.register_buffer("centroids", torch.zeros(num_codes, 4))
        self.num_codes, self.codes_per_image, self.latent_dim = num_codes, 16, 4

    def fit(self, images: np.ndarray, seed: int, max_points: int = 20000) -> dict:
        from sklearn.cluster import KMeans

        patches = to_patches(torch.as_tensor(images)).reshape(-1, 4).numpy()
        rng = np.random.default_rng(seed)
        if len(patches) > max_points:
            patches = patches[rng.choice(len(patches), max_points, replace=False)]
        km = KMeans(self.num_codes, n_init=1, random_state=seed).fit(patches)
        self.centroids.copy_(torch.as_tensor(km.cluster_centers_, dtype=torch.float32))
        return {"inertia_per_point": float(km.inertia_ / len(patches))}

    def latents(self, images):
        return to_patches(images)

    def encode(self, images):
        p = to_patches(images)  # (N, 16, 4)
        return torch.cdist(p, self.centroids[None].expand(p.shape[0], -1, -1)).argmin(-1)

    def decode(self, codes):
        return from_patches(self.centroids[codes])

    def decode_latents(self, z):
        return from_patches(z)
