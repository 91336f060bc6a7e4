"""lm-eval adapter: hand any repro model and its tokenizer to lm-eval (``simple_evaluate``).

lm-eval is not a dependency of repro-core. It is imported inside the functions below;
``pip install repro-benchmarks`` (the ``benchmarks/`` workspace member) brings it, as does
``pip install "lm-eval>=0.4.9,<0.5"``.

Why our own ``TemplateLM`` instead of lm-eval's ``HFLM``: ``HFLM`` needs a HF tokenizer instance
and calls ``model(input_ids).logits`` with nothing else. ``ReproLM`` (built by :func:`make_lm`)
takes

* any tokenizer: a HF tokenizer, fast or slow (the tokenizer papers' ``PreTrainedTokenizer``
  subclasses), or any object with ``encode(text) -> ids`` (and ``decode(ids)`` for generation)
  plus an ``eos_token_id`` or an explicit ``prefix_token_id``;
* any causal model: called ``model(input_ids=x, **extra)``, where ``extra`` comes from the
  ``forward_kwargs`` argument or, when that is not given, from the model's own
  ``extra_forward_inputs(input_ids) -> dict`` method (the hook for a package whose forward needs
  more than token ids). The output may be an object with ``.logits``, a tuple or a tensor (B, T, V).

Scoring follows ``HFLM``: token ids without special tokens, the eos id as the context of an empty
context and as the prefix of the first rolling window, inputs cut to the last ``max_length``
tokens, log-softmax in fp32. Sequences of a batch are right-padded, which a causal model cannot
see; a model whose output for one sequence depends on the rest of the batch (capacity-limited
routing) should be run with ``batch_size=1``.

Typical use::

    from repro_core.harness import load_model, evaluate, summary
    model, tok = load_model("runs/quickstart/final")
    res = evaluate(model, tok, ["piqa_local", "wikitext2_local"],
                   include_path="benchmarks/tasks", limit=50)
    print(summary(res))   # {"piqa_local": {"acc": ..., "acc_norm": ...}, ...}
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "UnknownTaskError",
    "evaluate",
    "load_model",
    "make_lm",
    "model_logits",
    "summary",
    "task_manager",
    "token_encoder",
]

LMEVAL_MISSING = (
    "lm-eval is not installed; `pip install repro-benchmarks` (or `pip install 'lm-eval>=0.4.9,<0.5'`) "
    "brings it"
)


class UnknownTaskError(ValueError):
    """A task name that neither the local task folder nor lm-eval's own registry knows."""


def _import_lm_eval():
    try:
        import lm_eval
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(LMEVAL_MISSING) from exc
    return lm_eval


# ----------------------------------------------------------------------------------------------
# Tokenizer and model calls


def token_encoder(tokenizer) -> Callable[[str], list[int]]:
    """``text -> token ids`` without special tokens, for a HF tokenizer or any ``encode`` object.

    A HF tokenizer (fast or slow) is called as ``encode(text, add_special_tokens=False)``, like
    lm-eval's ``HFLM``. Another object is called ``encode(text)`` (with
    ``add_special_tokens=False`` when its signature accepts it); a result with ``.ids`` (a
    ``tokenizers.Encoding``) is unwrapped.
    """
    from transformers import PreTrainedTokenizerBase

    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return lambda text: list(tokenizer.encode(text, add_special_tokens=False))
    if not callable(getattr(tokenizer, "encode", None)):
        raise TypeError(
            f"tokenizer of type {type(tokenizer).__name__} has no encode(text) method; pass a HF "
            "tokenizer or an object with encode(text) -> list[int]"
        )
    try:
        takes_flag = "add_special_tokens" in inspect.signature(tokenizer.encode).parameters
    except (TypeError, ValueError):  # builtins without a signature
        takes_flag = False

    def encode(text: str) -> list[int]:
        out = (
            tokenizer.encode(text, add_special_tokens=False)
            if takes_flag
            else tokenizer.encode(text)
        )
        return list(getattr(out, "ids", out))

    return encode


def model_logits(model, input_ids: torch.Tensor, forward_kwargs=None) -> torch.Tensor:
    """Logits (B, T, V) of ``model(input_ids=input_ids, **extra)``.

    ``forward_kwargs``: a dict, or a callable ``input_ids -> dict``; when None the model's
    ``extra_forward_inputs(input_ids)`` is used if it defines one.
    """
    if forward_kwargs is None:
        forward_kwargs = getattr(model, "extra_forward_inputs", None)
    extra = forward_kwargs(input_ids) if callable(forward_kwargs) else dict(forward_kwargs or {})
    out = model(input_ids=input_ids, **extra)
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def _default_max_length(model) -> int:
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


# ----------------------------------------------------------------------------------------------
# The lm-eval model


@functools.cache
def _repro_lm_class():
    """``ReproLM``, a ``TemplateLM`` subclass (built on first use so lm-eval is imported lazily)."""
    _import_lm_eval()
    from lm_eval import utils as lm_utils
    from lm_eval.api.model import TemplateLM
    from tqdm import tqdm

    class ReproLM(TemplateLM):
        """lm-eval model over a repro model + tokenizer; see the module docstring."""

        backend = "causal"

        def __init__(
            self,
            model,
            tokenizer,
            batch_size: int = 8,
            max_length: int | None = None,
            prefix_token_id: int | None = None,
            forward_kwargs=None,
            max_gen_toks: int = 256,
        ):
            super().__init__()
            self.model = model.eval() if hasattr(model, "eval") else model
            self.tokenizer = tokenizer
            self._encode = token_encoder(tokenizer)
            self.batch_size = int(batch_size)
            self._max_length = int(max_length or _default_max_length(model))
            self.forward_kwargs = forward_kwargs
            self.max_gen_toks = int(max_gen_toks)
            eos = getattr(tokenizer, "eos_token_id", None)
            self._eot = eos if eos is not None else prefix_token_id
            self._prefix = prefix_token_id if prefix_token_id is not None else self._eot
            if self._prefix is None:
                raise ValueError(
                    f"tokenizer {type(tokenizer).__name__} has no eos_token_id: pass prefix_token_id= "
                    "(the id that conditions the first token of a text)"
                )
            params = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
            self._device = params.device if params is not None else torch.device("cpu")

        # -- what lm-eval reads ------------------------------------------------------------------

        @property
        def eot_token_id(self) -> int:
            return self._eot

        @property
        def prefix_token_id(self) -> int:
            return self._prefix

        @property
        def max_length(self) -> int:
            return self._max_length

        @property
        def device(self):
            return self._device

        @property
        def tokenizer_name(self) -> str:
            return getattr(self.tokenizer, "name_or_path", None) or type(self.tokenizer).__name__

        def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
            return self._encode(string)

        def tok_decode(self, tokens: Sequence[int]) -> str:
            return self.tokenizer.decode(list(tokens))

        # -- scoring -----------------------------------------------------------------------------

        @torch.no_grad()
        def _batch_logits(self, inputs: list[list[int]]) -> torch.Tensor:
            """Logits (b, T_max, V) of right-padded inputs (on the model's device)."""
            width = max(len(x) for x in inputs)
            batch = torch.full((len(inputs), width), self._prefix, dtype=torch.long)
            for row, ids in enumerate(inputs):
                batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            return model_logits(self.model, batch.to(self._device), self.forward_kwargs)

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
            """``[(key, context_ids, continuation_ids)] -> [(sum log p(continuation), is_greedy)]``."""
            results: list[tuple[float, bool] | None] = [None] * len(requests)
            # Longest first: the first batch fails fast if it does not fit in memory.
            order = sorted(
                range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2])
            )
            batches = range(0, len(order), self.batch_size)
            for start in tqdm(batches, disable=disable_tqdm, desc="Scoring (ReproLM)"):
                chunk = order[start : start + self.batch_size]
                inputs, scored = [], []
                for i in chunk:
                    _, context, continuation = requests[i]
                    whole = (list(context) + list(continuation))[-(self._max_length + 1) :]
                    inputs.append(whole[:-1])
                    # A continuation longer than the window is scored on its last max_length tokens.
                    scored.append(list(continuation)[-min(len(continuation), len(whole) - 1) :])
                logits = self._batch_logits(inputs)
                for row, i in enumerate(chunk):
                    n, end = len(scored[row]), len(inputs[row])
                    # (n, V): the positions that predict the continuation, fp32 log-softmax
                    window = F.log_softmax(logits[row, end - n : end].float(), dim=-1).cpu()
                    target = torch.tensor(scored[row], dtype=torch.long)
                    logprob = float(window.gather(-1, target[:, None]).sum())
                    greedy = bool((window.argmax(-1) == target).all())
                    results[i] = (logprob, greedy)
                    if requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
            return results

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
            """Log-likelihood of whole texts: lm-eval's disjoint windows of ``max_length`` tokens,
            one token of context, the first window conditioned on ``prefix_token_id``."""
            windows, owner = [], []
            for k, (text,) in enumerate(req.args for req in requests):
                rolling = lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(text),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
                for context, continuation in map(lm_utils.make_disjoint_window, rolling):
                    windows.append((None, context, continuation))
                    owner.append(k)
            totals = [0.0] * len(requests)
            for k, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm)):
                totals[k] += logprob
            for req, total in zip(requests, totals):
                self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
            return totals

        @torch.no_grad()
        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            """Greedy decoding without a KV cache (each step re-runs the window): fine for the
            small models of this project, slow for long generations."""
            if not callable(getattr(self.tokenizer, "decode", None)):
                raise TypeError("generate_until needs a tokenizer with decode(ids) -> str")
            outputs = []
            for req in tqdm(requests, disable=disable_tqdm, desc="Generating (ReproLM)"):
                context, gen_kwargs = req.args
                gen_kwargs = dict(gen_kwargs or {})
                until = gen_kwargs.get("until") or [self.tok_decode([self.eot_token_id])]
                until = [until] if isinstance(until, str) else list(until)
                max_new = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
                ids = self.tok_encode(context) or [self.prefix_token_id]
                new: list[int] = []
                text = ""
                for _ in range(max_new):
                    window = (ids + new)[-self._max_length :]
                    logits = model_logits(
                        self.model, torch.tensor([window], device=self._device), self.forward_kwargs
                    )
                    token = int(logits[0, -1].argmax())
                    if token == self.eot_token_id:
                        break
                    new.append(token)
                    text = self.tok_decode(new)
                    if any(stop in text for stop in until):
                        break
                for stop in until:
                    text = text.split(stop)[0]
                self.cache_hook.add_partial("generate_until", req.args, text)
                outputs.append(text)
            return outputs

    return ReproLM


def make_lm(
    model,
    tokenizer,
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    prefix_token_id: int | None = None,
    forward_kwargs: dict | Callable[[torch.Tensor], dict] | None = None,
    max_gen_toks: int = 256,
):
    """An lm-eval ``TemplateLM`` over ``model`` and ``tokenizer`` (see the module docstring).

    Args:
        model: a causal LM (put it on its device first); called ``model(input_ids=(B, T))``.
        tokenizer: HF tokenizer (fast or slow) or any object with ``encode(text)``.
        batch_size: sequences per forward pass.
        max_length: context window in tokens (default: ``config.max_position_embeddings``).
        prefix_token_id: conditions the first token of a text (default: the eos id).
        forward_kwargs: extra forward inputs, a dict or ``input_ids -> dict`` (default: the
            model's ``extra_forward_inputs`` method, if any).
        max_gen_toks: default generation length of ``generate_until`` tasks.
    """
    return _repro_lm_class()(
        model,
        tokenizer,
        batch_size=batch_size,
        max_length=max_length,
        prefix_token_id=prefix_token_id,
        forward_kwargs=forward_kwargs,
        max_gen_toks=max_gen_toks,
    )


# ----------------------------------------------------------------------------------------------
# Tasks and evaluation


def _hf_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def task_manager(
    tasks: Iterable[str],
    include_path: str | Path | Sequence[str | Path] | None = None,
    include_defaults: bool | None = None,
):
    """An lm-eval ``TaskManager`` that knows every name in ``tasks``.

    Looks in ``include_path`` (local task YAMLs) first without indexing lm-eval's own ~10k task
    files (fast); only names not found there bring in lm-eval's registry, unless
    ``include_defaults`` is False (default: False when ``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE`` is set, since lm-eval's own tasks download their data). Unknown names
    raise :class:`UnknownTaskError` listing the local tasks and close matches.
    """
    _import_lm_eval()
    from lm_eval.tasks import TaskManager

    tasks = list(tasks)
    if include_defaults is None:
        include_defaults = not _hf_offline()
    paths = [
        str(p)
        for p in ([include_path] if isinstance(include_path, (str, Path)) else include_path or [])
    ]
    local = TaskManager(include_path=paths, include_defaults=False) if paths else None
    if local is not None and all(t in local.all_tasks for t in tasks):
        return local
    manager = (
        TaskManager(include_path=paths or None, include_defaults=True)
        if include_defaults
        else local
    )
    known = manager.all_tasks if manager is not None else []
    missing = [t for t in tasks if t not in known]
    if missing:
        local_names = sorted(n for n in (local.all_tasks if local else []) if not n.startswith("_"))
        hints = {t: difflib.get_close_matches(t, known, n=3) for t in missing}
        raise UnknownTaskError(
            f"unknown lm-eval task(s) {missing}"
            + "".join(f" (did you mean {h} for {t!r}?)" for t, h in hints.items() if h)
            + (f". Local (offline) tasks in {', '.join(paths)}: {local_names}" if paths else "")
            + (
                ". lm-eval's own tasks are listed by `lm-eval ls tasks` (they download their data, "
                "so they need network access)."
                if include_defaults
                else ". lm-eval's own tasks were not searched (offline: HF_HUB_OFFLINE / "
                "HF_DATASETS_OFFLINE is set, and they download their data)."
            )
        )
    return manager


def evaluate(
    model,
    tokenizer,
    tasks: Sequence[str],
    *,
    include_path: str | Path | Sequence[str | Path] | None = None,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    prefix_token_id: int | None = None,
    forward_kwargs: dict | Callable[[torch.Tensor], dict] | None = None,
    bootstrap_iters: int = 0,
    log_samples: bool = False,
    seed: int = 1234,
) -> dict[str, Any]:
    """Run lm-eval's ``simple_evaluate`` on ``model`` + ``tokenizer``; returns its result dict.

    ``tasks`` are task names from ``include_path`` (e.g. ``benchmarks/tasks``, offline) or from
    lm-eval's registry (these need network access for their data). ``limit`` caps the documents
    per task (an int, or a fraction in (0, 1)). ``bootstrap_iters=0`` skips the slow stderr
    bootstrap. ``results["results"][task]["<metric>,none"]`` holds each metric; :func:`summary`
    flattens them.
    """
    lm_eval = _import_lm_eval()
    manager = task_manager(tasks, include_path)
    lm = make_lm(
        model,
        tokenizer,
        batch_size=batch_size,
        max_length=max_length,
        prefix_token_id=prefix_token_id,
        forward_kwargs=forward_kwargs,
    )
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        num_fewshot=num_fewshot,
        bootstrap_iters=bootstrap_iters,
        log_samples=log_samples,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )


def summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` from a ``simple_evaluate`` result (no stderr, no filter suffix)."""
    out: dict[str, dict[str, float]] = {}
    for task, metrics in results["results"].items():
        row = {}
        for key, value in metrics.items():
            name, comma, _filter = key.partition(",")  # "acc,none": metric, filter
            if not comma or name.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            row[name] = float(value)
        out[task] = row
    return out


# ----------------------------------------------------------------------------------------------
# Loading a saved model


def load_model(model_dir: str | Path, device: str | torch.device | None = None, dtype=None):
    """``(model, tokenizer)`` from a ``save_pretrained`` directory with the tokenizer beside it.

    Import the package that defines the model first (``import repro_<slug>.modeling`` registers
    its classes with ``AutoModelForCausalLM``); ``repro_core`` is imported here, which registers
    ``DecoderLM`` (the ``final/`` of a core run directory).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    import repro_core.modeling  # noqa: F401  (registers DecoderLM)

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no model at {path} (no config.json): train one first, e.g. `make quickstart` writes "
            "runs/quickstart/final, `make reproduce-<slug>` writes a package's checkpoints"
        )
    try:
        config = AutoConfig.from_pretrained(path)
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"{path}: its model_type is not registered with transformers ({exc}). Import the package "
            "that defines it before loading (`import repro_<slug>.modeling`; "
            "`repro-bench --import repro_<slug>`)"
        ) from exc
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, config=config, **kwargs)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise FileNotFoundError(
            f"no loadable tokenizer next to the model in {path} ({exc}); save it there with "
            "tokenizer.save_pretrained(dir), and register a custom tokenizer class with "
            "AutoTokenizer.register in the package that defines it"
        ) from exc
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
