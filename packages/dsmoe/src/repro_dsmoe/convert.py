"""Convert a trained dense Llama / DecoderLM into a DSMoE model (Eq. 6: exact weight copies).

    repro-dsmoe-convert --base runs/base/final --experts 8 --tau 0.5 --out runs/dsmoe-init
    repro-dsmoe-convert --base /models/Llama-3.2-1B --experts 8 --tau 0.5 --out DIR \\
        --router-init zeros --tau 0.49

The output directory loads with ``AutoModelForCausalLM.from_pretrained(DIR)`` after
``import repro_dsmoe``. Every dense weight keeps its name and value; the only new tensors are the
routers ``model.layers.<l>.mlp.router.weight`` (n x d), initialised by ``router_init``.

Python::

    from repro_dsmoe.convert import convert_model, convert_checkpoint
    model = convert_checkpoint("runs/base/final", num_experts=8, tau=0.5)
    model = convert_model(LlamaForCausalLM(...), num_experts=8)     # in memory
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from repro_core.cli import ArgumentParser, cli_main
from repro_core.config import MissingInputError, UserError

from .config import GATE_MODES, ROUTER_INITS, SPARSITY_TARGETS

if TYPE_CHECKING:  # torch and the model load when a function runs: the CLI checks first
    from .modeling import DSMoEConfig, DSMoEForCausalLM


def dsmoe_config_from(base_config, **switches) -> DSMoEConfig:
    """A :class:`DSMoEConfig` with the shapes of ``base_config`` (Llama or DecoderConfig)."""
    from repro_core.modeling import DecoderConfig, decoder_config_from_llama

    from .modeling import DSMoEConfig

    if not isinstance(base_config, DecoderConfig):
        base_config = decoder_config_from_llama(base_config)
    core_fields = set(DecoderConfig().to_dict())
    fields = {k: v for k, v in base_config.to_dict().items() if k in core_fields}
    for key in ("model_type", "transformers_version", "architectures"):
        fields.pop(key, None)
    return DSMoEConfig(**fields, **switches)


def _check_missing(missing: list[str]) -> None:
    extra = [k for k in missing if not k.endswith("mlp.router.weight") and "neuron_mask" not in k]
    if extra:
        raise ValueError(f"the dense checkpoint lacks weights the DSMoE model needs: {extra[:8]}")


def convert_model(base, **switches) -> DSMoEForCausalLM:
    """DSMoE model holding copies of an in-memory dense model's weights (routers initialised).

    Args:
        base: a ``LlamaForCausalLM`` or :class:`~repro_core.modeling.DecoderLM`.
        switches: :class:`DSMoEConfig` fields (``num_experts``, ``tau``, ``router_init``, ...).
    """
    from .modeling import DSMoEForCausalLM

    config = dsmoe_config_from(base.config, **switches)
    model = DSMoEForCausalLM(config).to(next(base.parameters()).dtype)
    state = {k: v for k, v in base.state_dict().items() if "rotary_emb" not in k}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"dense weights with no place in DSMoE: {result.unexpected_keys[:8]}")
    _check_missing([k for k in result.missing_keys if k != "lm_head.weight"])
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def convert_checkpoint(path: str | Path, **switches) -> DSMoEForCausalLM:
    """:func:`convert_model` for a checkpoint directory (HF Llama or the core's ``make base``)."""
    from repro_core.modeling import load_llama_checkpoint

    from .modeling import DSMoEConfig, DSMoEForCausalLM

    source = Path(path)
    if (source / "config.json").is_file():
        kind = json.loads((source / "config.json").read_text()).get("model_type")
        if kind == DSMoEConfig.model_type:
            raise ValueError(
                f"{source} already holds a DSMoE model; load it with "
                "DSMoEForCausalLM.from_pretrained instead of converting it again"
            )
    model = load_llama_checkpoint(source, model_class=DSMoEForCausalLM, **switches)
    _check_missing(model.missing_keys)
    return model


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="repro-dsmoe-convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="dense HF Llama / DecoderLM checkpoint directory")
    p.add_argument("--experts", type=int, default=8, help="n, blocks of the intermediate dim")
    p.add_argument("--tau", type=float, default=0.5, help="gate threshold (paper 0.5)")
    p.add_argument("--router-init", default="random", choices=ROUTER_INITS)
    p.add_argument("--gate-mode", default="ste", choices=GATE_MODES)
    p.add_argument("--sparsity-coef", type=float, default=1.0, help="lambda of Eq. 19")
    p.add_argument("--sparsity-on", default="G", choices=SPARSITY_TARGETS)
    p.add_argument("--seed", type=int, default=0, help="seed of the router initialisation")
    p.add_argument("--out", required=True, help="output directory (must not exist)")
    args = p.parse_args(argv)
    # checks first (no torch)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose another --out")
    if not (Path(args.base) / "config.json").is_file():
        raise MissingInputError(
            f"--base {args.base} is not a model directory (no config.json): pass the output "
            "directory of save_pretrained, e.g. runs/base/final from `make base`"
        )
    if args.experts < 1 or not 0 <= args.tau < 1 or args.sparsity_coef < 0:
        raise UserError(
            f"--experts {args.experts} --tau {args.tau} --sparsity-coef {args.sparsity_coef}: "
            "need experts >= 1, 0 <= tau < 1 and sparsity coefficient >= 0"
        )
    # the heavy stack from here on
    import torch

    torch.manual_seed(args.seed)
    try:
        model = convert_checkpoint(
            args.base,
            num_experts=args.experts,
            tau=args.tau,
            router_init=args.router_init,
            gate_mode=args.gate_mode,
            sparsity_coef=args.sparsity_coef,
            sparsity_on=args.sparsity_on,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    model.save_pretrained(out)
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(args.base).save_pretrained(out)
    except Exception:  # noqa: BLE001 - a weights-only directory converts without a tokenizer
        print(f"[convert] no tokenizer in {args.base}; only the model was written", file=sys.stderr)
    from .accounting import dense_parameter_counts

    summary = {
        "base": str(args.base),
        "num_experts": args.experts,
        "expert_size": model.config.expert_size,
        "tau": args.tau,
        "router_init": args.router_init,
        "dense_parameters": dense_parameter_counts(model.config)["total"],
        "dsmoe_parameters": sum(p.numel() for p in model.parameters()),
        "router_parameters": len(model.model.layers) * model.config.hidden_size * args.experts,
    }
    (out / "conversion.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
