"""Turn a HF Llama / DecoderLM checkpoint into a UniAttn model, and fit the compensation.

    repro-uniattn-convert --base runs/base/final --group-size 2 --start 2 --end 4 --out runs/uniattn-init
    repro-uniattn-convert --base /models/Llama-3.1-8B --group-size 4 --start 16 --end 33 \\
        --init lsq_official --calib-corpus my_sft.jsonl --calib-blocks 1000 --calib-seq-len 1024 --out DIR

Python::

    from repro_uniattn.convert import convert_checkpoint, fit_compensation
    model = convert_checkpoint("runs/base/final", group_size=2, start=2, end=4)
    base = load_llama_checkpoint("runs/base/final")
    report = fit_compensation(model, base, calibration_ids, method="lsq_tokens")

The compensation W_c of each reusing layer is fitted greedily in ascending layer order
(spec §1.3): with W_c active on the earlier reusing layers only, the target is the drift of the
post-attention residual ``A = y_l^base - y_l^unified`` and the regressor the normalised layer
input ``B = u_l``; ``W_c^T = argmin ||A - B W||``. Estimators (``method``):

* ``lsq_tokens`` (default): all calibration tokens stacked, ridge
  ``W = (B^T B + lam I)^-1 B^T A`` with ``lam = ridge * trace(B^T B) / D``;
* ``lsq_official``: the official estimator: position-wise means over samples (T x D), then
  ``W = pinv(B_mean) A_mean`` with singular values <= 1e-10 dropped;
* ``zero``: W_c = 0 (unification alone until training moves it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from repro_core import no_grad
from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import UserError, resolve_base
from repro_core.data import resolve_corpus

from .config import INIT_METHODS

if TYPE_CHECKING:  # torch and the model load when a function runs: the CLI checks first
    import torch
    from repro_core.modeling import DecoderConfig

    from .modeling import UniAttnForCausalLM


def read_checkpoint(path: str | Path) -> tuple[DecoderConfig, dict[str, torch.Tensor]]:
    """(config, state dict) of a HF Llama or DecoderLM checkpoint directory."""
    from repro_core.modeling import DecoderConfig, decoder_config_from_llama
    from safetensors.torch import load_file
    from transformers import AutoConfig

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory (no config.json); pass a save_pretrained output "
            "such as runs/base/final (`make base`) or a HF Llama checkpoint directory"
        )
    source = AutoConfig.from_pretrained(path)
    config = source if isinstance(source, DecoderConfig) else decoder_config_from_llama(source)
    files = sorted(path.glob("model*.safetensors")) or sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {path}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f))
    return config, state


def convert_state_dict(
    config: DecoderConfig,
    state_dict: dict[str, torch.Tensor],
    group_size: int,
    start: int,
    end: int,
    sharing: str = "softmax",
    compensation: bool = True,
    drop_unused_qk: bool = True,
) -> UniAttnForCausalLM:
    """A :class:`UniAttnForCausalLM` holding the base weights; W_c = 0.

    Args:
        config: the base config (a :class:`DecoderConfig`; translate a ``LlamaConfig`` with
            ``decoder_config_from_llama``).
        state_dict: HF Llama parameter names.
        group_size / start / end: the superblock rule (official ``grouping_idx``,
            ``grouping_begin_idx``, ``grouping_end_idx``; ``end`` may exceed the layer count).
        sharing / compensation / drop_unused_qk: see :class:`UniAttnConfig`.

    The q/k (or, for ``sharing="kv"``, k/v) projections of reusing layers are dropped.
    """
    import torch

    from .modeling import UniAttnConfig, UniAttnForCausalLM

    L = config.num_hidden_layers
    if not 0 <= start < L:
        raise ValueError(f"start={start} must be a layer index in 0..{L - 1}")
    if end <= start:
        raise ValueError(f"end={end} must be > start={start} (layers >= end are untouched)")
    fields = config.to_dict()
    for key in ("model_type", "transformers_version", "architectures"):
        fields.pop(key, None)
    fields = {k: v for k, v in fields.items() if not k.startswith("uniattn_")}
    uni_config = UniAttnConfig(
        uniattn_group_size=group_size,
        uniattn_start=start,
        uniattn_end=end,
        uniattn_sharing=sharing,
        uniattn_compensation=compensation,
        uniattn_drop_unused_qk=drop_unused_qk,
        **fields,
    )
    model = UniAttnForCausalLM(uni_config)
    own = model.state_dict()
    state = {k: v for k, v in state_dict.items() if "rotary_emb" not in k}
    if uni_config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    dropped = sorted(k for k in state if k not in own)
    unused = ("q_proj", "k_proj") if sharing == "softmax" else ("k_proj", "v_proj")
    reusing = uni_config.reusing_layers()
    for key in dropped:
        parts = key.split(".")
        ok = (
            len(parts) >= 5
            and parts[1] == "layers"
            and int(parts[2]) in reusing
            and parts[4] in unused
        )
        if not ok:
            raise ValueError(f"base weight {key!r} has no place in the UniAttn model")
        state.pop(key)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if "compensation" not in k and k != "lm_head.weight"]
    if missing:
        raise ValueError(f"the base checkpoint lacks weights: {missing[:8]}")
    if uni_config.tie_word_embeddings:
        model.tie_weights()
    with torch.no_grad():
        for layer in model.model.layers:
            if layer.self_attn.compensation is not None:
                layer.self_attn.compensation.weight.zero_()
    model.dropped_keys = dropped
    return model.eval()


def convert_checkpoint(base, group_size: int, start: int, end: int, **kwargs) -> UniAttnForCausalLM:
    """:func:`convert_state_dict` for a checkpoint directory or an in-memory Llama/DecoderLM."""
    from repro_core.modeling import DecoderConfig, decoder_config_from_llama

    if isinstance(base, (str, Path)):
        config, state = read_checkpoint(base)
    else:
        config = base.config
        if not isinstance(config, DecoderConfig):
            config = decoder_config_from_llama(config)
        state = base.state_dict()
    return convert_state_dict(config, state, group_size, start, end, **kwargs)


class _Recorder:
    """Hooks that record, for chosen layers, u_l (attention input) and y_l = x_l + a_l."""

    def __init__(self, model, layers: list[int]):
        self.u: dict[int, torch.Tensor] = {}
        self.y: dict[int, torch.Tensor] = {}
        self._x: dict[int, torch.Tensor] = {}
        self.handles = []
        for i in layers:
            layer = model.model.layers[i]
            self.handles.append(layer.register_forward_pre_hook(self._pre(i)))
            self.handles.append(layer.self_attn.register_forward_hook(self._post(i)))

    def _pre(self, i):
        def hook(module, args):
            self._x[i] = args[0]

        return hook

    def _post(self, i):
        def hook(module, args, output):
            self.u[i] = args[0]
            self.y[i] = self._x[i] + output

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


@no_grad
def fit_compensation(
    model: UniAttnForCausalLM,
    base_model,
    calibration_ids: torch.Tensor,
    method: str = "lsq_tokens",
    ridge: float = 1e-3,
    batch_size: int = 8,
) -> dict:
    """Set every W_c of ``model`` by sequential least squares; returns per-layer diagnostics.

    Args:
        model: the unified model (its W_c are overwritten).
        base_model: the base model the unified one was converted from (same weights).
        calibration_ids: (N, T) token ids, no padding.
        method: ``lsq_tokens`` | ``lsq_official`` | ``zero``.
        ridge: relative ridge of ``lsq_tokens``.

    Returns ``{"method": ..., layer: {"token_residual": r, "mean_residual": m}}``: after the
    fit, the relative error ||A - B W|| / ||A|| over all calibration tokens (what
    ``lsq_tokens`` minimises) and over the position-wise means (what ``lsq_official``
    minimises); both are 1 for W = 0.

    Cost: the base model's targets ``y_l^base`` do not depend on any W_c, so the base model runs
    once per batch for all N reusing layers together (kept on the CPU, in the model's dtype:
    N x calibration tokens x D values, e.g. 2 x 32 x 128 x 64 fp32 = 2 MB at tiny scale), and
    the unified model once per batch and layer: N + 1 passes over the calibration data, not 2N.
    """
    import torch

    if method not in INIT_METHODS:
        raise ValueError(f"method={method!r} is invalid: allowed {' | '.join(INIT_METHODS)}")
    targets = [
        (layer, model.model.layers[layer].self_attn.compensation)
        for layer in model.config.reusing_layers()
        if model.model.layers[layer].self_attn.compensation is not None
    ]
    for _, comp in targets:
        comp.weight.zero_()
    report: dict = {"method": method}
    if method == "zero" or not targets:
        return report
    was_training = (model.training, base_model.training)
    model.eval()
    base_model.eval()
    ids = torch.as_tensor(calibration_ids, dtype=torch.long)
    batches = list(ids.split(batch_size))
    device = next(model.parameters()).device
    layers = [layer for layer, _ in targets]
    base_rec = _Recorder(base_model, layers)
    base_y: list[dict[int, torch.Tensor]] = []  # per batch: {layer: y_l^base (b, T, D)}, CPU
    for batch in batches:
        base_model(input_ids=batch.to(device))
        base_y.append({layer: base_rec.y[layer].cpu() for layer in layers})
    base_rec.remove()
    for layer, comp in targets:  # ascending: W_c of earlier layers already active
        cur_rec = _Recorder(model, [layer])
        D = comp.weight.shape[1]
        gram = torch.zeros(D, D, dtype=torch.float64, device=device)
        cross = torch.zeros(D, comp.weight.shape[0], dtype=torch.float64, device=device)
        a_sum = b_sum = None
        a_sq = 0.0
        for batch, cached in zip(batches, base_y):
            model(input_ids=batch.to(device))
            a = (cached[layer].to(device) - cur_rec.y[layer]).double()  # (b, T, D) target drift
            b = cur_rec.u[layer].double()  # (b, T, D) normalised input
            a_sq += float(a.pow(2).sum())
            flat_b, flat_a = b.reshape(-1, D), a.reshape(-1, a.shape[-1])
            gram += flat_b.T @ flat_b
            cross += flat_b.T @ flat_a
            a_sum = a.sum(0) if a_sum is None else a_sum + a.sum(0)
            b_sum = b.sum(0) if b_sum is None else b_sum + b.sum(0)
        cur_rec.remove()
        n = ids.shape[0]
        a_mean, b_mean = a_sum / n, b_sum / n  # (T, D) position-wise sample means
        if method == "lsq_tokens":
            lam = ridge * float(torch.trace(gram)) / D
            w = torch.linalg.solve(
                gram + lam * torch.eye(D, dtype=gram.dtype, device=device), cross
            )
        else:  # official: position-wise sample means, min-norm pinv
            w = torch.linalg.pinv(b_mean, atol=1e-10) @ a_mean
        # ||A - B W||^2 = ||A||^2 - 2 tr(W^T B^T A) + tr(W^T B^T B W), over all tokens
        after = a_sq - 2 * float((w * cross).sum()) + float((w * (gram @ w)).sum())
        mean_after = float((a_mean - b_mean @ w).norm() / a_mean.norm().clamp_min(1e-30))
        comp.weight.copy_(w.T.to(comp.weight.dtype))  # nn.Linear layout (out, in)
        report[layer] = {
            "token_residual": float(np.sqrt(max(after, 0.0) / max(a_sq, 1e-30))),
            "mean_residual": mean_after,
        }
    model.train(was_training[0])
    base_model.train(was_training[1])
    return report


def calibration_blocks(tokenizer, corpus: str, num_blocks: int, seq_len: int, seed: int = 0):
    """(num_blocks, seq_len) token ids drawn from the training split of ``corpus``."""
    import torch
    from repro_core.data import as_blocks, resolve_corpus, tokenize_corpus

    splits = tokenize_corpus(resolve_corpus(corpus), tokenizer, 0.1)
    blocks = as_blocks(splits["train"].tokens, seq_len)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(blocks), size=min(num_blocks, len(blocks)), replace=False))
    return torch.from_numpy(blocks[pick].astype(np.int64))


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-uniattn-convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="HF Llama / DecoderLM checkpoint directory")
    p.add_argument("--group-size", type=int, required=True, help="superblock size g")
    p.add_argument("--start", type=int, required=True, help="first layer of the first superblock")
    p.add_argument("--end", type=int, required=True, help="layers >= end are untouched")
    p.add_argument("--out", required=True, help="output directory (save_pretrained)")
    p.add_argument("--sharing", default="softmax", choices=("softmax", "kv"))
    p.add_argument("--no-compensation", action="store_true", help="unification without W_c")
    p.add_argument("--init", default="lsq_tokens", choices=INIT_METHODS)
    p.add_argument("--ridge", type=float, default=1e-3)
    p.add_argument("--calib-corpus", default="wikitext-2", help="corpus name or local file/dir")
    p.add_argument("--calib-blocks", type=int, default=64)
    p.add_argument("--calib-seq-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    resolve_base(str(args.base))  # a missing checkpoint is one line, not a traceback
    if args.group_size < 1 or args.start < 0 or args.end <= args.start:
        raise UserError(
            f"--group-size {args.group_size} --start {args.start} --end {args.end}: need "
            "group size >= 1, start >= 0 and end > start"
        )
    if args.calib_blocks < 1 or args.calib_seq_len < 2:
        raise UserError("--calib-blocks must be >= 1 and --calib-seq-len >= 2")
    compensates = args.init != "zero" and not args.no_compensation and args.sharing == "softmax"
    if compensates:
        resolve_corpus(args.calib_corpus)
    # the heavy stack from here on
    from repro_core.data import get_tokenizer
    from repro_core.modeling import load_llama_checkpoint

    model = convert_checkpoint(
        args.base,
        args.group_size,
        args.start,
        args.end,
        sharing=args.sharing,
        compensation=not args.no_compensation,
    )
    tokenizer = None
    try:
        tokenizer = get_tokenizer(str(args.base))
    except Exception as exc:  # noqa: BLE001 - a weights-only directory is fine without --init lsq
        if args.init != "zero" and not args.no_compensation:
            print(
                f"cannot load the tokenizer of {args.base} for calibration: {exc}", file=sys.stderr
            )
            return 2
    report: dict = {"method": "zero"}
    if compensates:
        ids = calibration_blocks(
            tokenizer, args.calib_corpus, args.calib_blocks, args.calib_seq_len, args.seed
        )
        report = fit_compensation(
            model, load_llama_checkpoint(args.base), ids, args.init, args.ridge
        )
    out = Path(args.out)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    summary = {
        "superblocks": model.config.superblocks(),
        "dropped_base_weights": len(model.dropped_keys),
        "compensation_init": report,
    }
    (out / "conversion.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
