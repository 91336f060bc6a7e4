"""NSAR: the share of FFN hidden activations whose magnitude exceeds a threshold, per layer.

    NSAR_tau = (1 / (N H)) Σ_{i <= N} Σ_{j <= H} 1[|A_ij| > tau]       (spec §2.2, S2.3)

A (N tokens x H hidden units) is read from every FFN on validation blocks by forward hooks, for
two readings of "activation" (the spec leaves the tensor open): ``"silu"`` = silu(x W_gate), the
SiLU output (spec default, Figure 1 of the paper plots SiLU outputs), and ``"gated"`` =
silu(x W_gate) ⊙ (x W_up), the SwiGLU intermediate that enters the down projection. For
Finedeep, H runs over the K F_e hidden units of all M sub-layers of a layer (M K F_e = F, the
dense width). A higher NSAR means less sparse activation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from repro_core.layers import SwiGLUMLP, fused_linear

from .config import DEFAULT_THRESHOLD, THRESHOLDS
from .modeling import FinedeepMLP

TENSORS = ("silu", "gated")


def nsar(activations: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of entries of ``activations`` (any shape) with |a| > ``threshold``."""
    return float((activations.abs() > threshold).float().mean())


def _swiglu_activations(mlp: SwiGLUMLP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gate, up = fused_linear(x, (mlp.gate_proj, mlp.up_proj)).chunk(2, dim=-1)  # (B, T, F) each
    act = F.silu(gate)
    return act, act * up


class NSARCollector:
    """Context manager counting |activation| > tau in every FFN of a decoder, per layer.

    Works for the core's dense :class:`~repro_core.layers.SwiGLUMLP` and for
    :class:`~repro_finedeep.modeling.FinedeepMLP` (hooks on each sub-layer see its input u_m).
    Hooks recompute the hidden activations from the hooked module's input, so the model itself
    is untouched.
    """

    def __init__(self, model, thresholds=THRESHOLDS):
        self.model = model
        self.thresholds = tuple(float(t) for t in thresholds)
        layers = model.model.layers
        self.above = {name: np.zeros((len(layers), len(self.thresholds))) for name in TENSORS}
        self.total = np.zeros(len(layers))
        self._handles = []

    def _count(self, layer_idx: int, act: torch.Tensor, gated: torch.Tensor) -> None:
        for name, tensor in (("silu", act), ("gated", gated)):
            magnitude = tensor.detach().abs()
            for j, tau in enumerate(self.thresholds):
                self.above[name][layer_idx, j] += float((magnitude > tau).sum())
        self.total[layer_idx] += act.numel()

    def __enter__(self) -> NSARCollector:
        for i, layer in enumerate(self.model.model.layers):
            mlp = layer.mlp
            if isinstance(mlp, FinedeepMLP):
                for sublayer in mlp.sublayers:
                    self._handles.append(
                        sublayer.register_forward_hook(
                            lambda mod, inputs, out, i=i: self._count(
                                i, *mod.hidden_activations(inputs[0])
                            )
                        )
                    )
            elif isinstance(mlp, SwiGLUMLP):
                self._handles.append(
                    mlp.register_forward_hook(
                        lambda mod, inputs, out, i=i: self._count(
                            i, *_swiglu_activations(mod, inputs[0])
                        )
                    )
                )
            else:
                raise TypeError(f"layer {i}: no NSAR hook for FFN type {type(mlp).__name__}")
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def result(self) -> dict:
        """``{"thresholds": [...], "per_layer": {tensor: {tau: [L values]}}, "mean": {tensor: {tau: x}}}``.

        ``mean`` averages over layers (every layer has the same number of hidden units).
        """
        if not self.total.all():
            raise RuntimeError("NSARCollector saw no forward pass through some FFN")
        per_layer, mean = {}, {}
        for name in TENSORS:
            ratio = self.above[name] / self.total[:, None]  # (L, thresholds)
            per_layer[name] = {str(t): ratio[:, j].tolist() for j, t in enumerate(self.thresholds)}
            mean[name] = {str(t): float(ratio[:, j].mean()) for j, t in enumerate(self.thresholds)}
        return {"thresholds": list(self.thresholds), "per_layer": per_layer, "mean": mean}


@torch.no_grad()
def measure_nsar(
    model, blocks: np.ndarray, batch_size: int = 16, max_batches: int = 0, thresholds=THRESHOLDS
) -> dict:
    """NSAR of ``model`` on validation ``blocks`` (N, L) token ids (first ``max_batches`` batches,
    0 = all). Returns :meth:`NSARCollector.result`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(blocks) if not max_batches else min(len(blocks), max_batches * batch_size)
    with NSARCollector(model, thresholds) as collector:
        for start in range(0, n, batch_size):
            x = torch.from_numpy(
                np.asarray(blocks[start : min(start + batch_size, n)], dtype=np.int64)
            )
            model(input_ids=x.to(device))
    model.train(was_training)
    return collector.result()


__all__ = ["DEFAULT_THRESHOLD", "NSARCollector", "THRESHOLDS", "measure_nsar", "nsar"]
