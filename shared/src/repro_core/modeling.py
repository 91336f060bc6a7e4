"""A LLaMA-style decoder as a Hugging Face model, with the extension points paper packages use.

``DecoderLM`` has the parameter names and shapes of ``LlamaForCausalLM``, so any Llama checkpoint
loads into it (:func:`load_llama_checkpoint`), and it is a ``PreTrainedModel`` +
``GenerationMixin``: ``save_pretrained`` writes safetensors, ``AutoModelForCausalLM`` loads it
without ``trust_remote_code`` once ``repro_core`` is imported, and ``generate()`` uses a KV cache.

A paper package changes the model by subclassing and setting class attributes, nothing else::

    class FinedeepForCausalLM(DecoderLM):
        config_class = FinedeepConfig
        mlp_class = FinedeepMLP            # (config, layer_idx) -> module; mlp(x, state)
        attention_class = Attention        # (config, layer_idx) -> module
        rotary_class = RotaryEmbedding     # (config) -> module giving per-head (cos, sin)

Blocks read and write a :class:`~repro_core.layers.ForwardState` (input ids, cross-layer tensors,
auxiliary losses). Auxiliary losses are added to the LM loss and reported separately in
``DecoderLMOutput.aux_losses``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from .layers import (
    Attention,
    ForwardState,
    RMSNorm,
    RotaryEmbedding,
    SwiGLUMLP,
    attention_flops_per_token,
    build_attention_mask,
    init_weights,
)


class DecoderConfig(PretrainedConfig):
    """Configuration of :class:`DecoderLM`; field names follow ``LlamaConfig``.

    Args:
        vocab_size: number of token ids.
        hidden_size: model width D.
        intermediate_size: SwiGLU hidden width of the dense MLP.
        num_hidden_layers: number of decoder layers.
        num_attention_heads: query heads H.
        num_key_value_heads: key/value heads (grouped-query attention); defaults to H.
        head_dim: per-head width; defaults to D / H.
        max_position_embeddings: longest sequence the model is meant for (RoPE has no table).
        rms_norm_eps: epsilon of every RMSNorm.
        rope_theta: RoPE base shared by all heads.
        rope_theta_per_head: optional list of H bases, one per query head; heads that share a
            key/value head must share a base.
        attention_bias / mlp_bias: biases on the projections (False in Llama).
        attention_dropout: dropout on attention probabilities during training.
        initializer_range: std of the normal initialisation of linear and embedding weights.
        tie_word_embeddings: share the input embedding and the output head.
    """

    model_type = "repro_decoder"
    keys_to_ignore_at_inference = ["cache"]

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 256,
        intermediate_size: int = 688,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        max_position_embeddings: int = 2048,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        rope_theta_per_head: list[float] | None = None,
        attention_bias: bool = False,
        mlp_bias: bool = False,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = float(rope_theta)
        self.rope_theta_per_head = list(rope_theta_per_head) if rope_theta_per_head else None
        self.attention_bias = attention_bias
        self.mlp_bias = mlp_bias
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate_shapes()

    def validate_shapes(self) -> None:
        """Raise ValueError naming the field when the shapes cannot form a model."""
        h, hkv = self.num_attention_heads, self.num_key_value_heads
        if h <= 0 or hkv <= 0 or h % hkv:
            raise ValueError(
                f"num_attention_heads={h} must be a positive multiple of num_key_value_heads={hkv}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.rope_theta_per_head is not None:
            bases = self.rope_theta_per_head
            if len(bases) != h:
                raise ValueError(
                    f"rope_theta_per_head has {len(bases)} entries; it needs one per query head "
                    f"(num_attention_heads={h})"
                )
            group = h // hkv
            for g in range(hkv):
                if len(set(bases[g * group : (g + 1) * group])) != 1:
                    raise ValueError(
                        f"rope_theta_per_head: query heads {g * group}..{(g + 1) * group - 1} share "
                        f"key/value head {g} and must share one base, got "
                        f"{bases[g * group : (g + 1) * group]}: give every query head of a "
                        "key/value group the same base, or use num_key_value_heads="
                        f"num_attention_heads={h}"
                    )


@dataclass
class DecoderLMOutput(CausalLMOutputWithPast):
    """``CausalLMOutputWithPast`` plus the loss split into its terms.

    ``loss`` = ``lm_loss`` + sum of ``aux_losses`` values (when labels are given).
    """

    lm_loss: torch.Tensor | None = None
    aux_losses: dict[str, torch.Tensor] | None = None


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)); then x + mlp(norm(x))."""

    def __init__(self, config, layer_idx, mlp_class, attention_class):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = attention_class(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = mlp_class(config, layer_idx)

    def forward(self, x, position_embeddings, attention_mask, cache, state):
        x = x + self.self_attn(
            self.input_layernorm(x), position_embeddings, attention_mask, cache, state
        )
        # The MLP sees the normalised input; the residual stream is available to MLPs that
        # stack several residual sub-layers of their own (Finedeep, CartesianMoE).
        state.shared["residual"] = x
        return x + self.mlp(self.post_attention_layernorm(x), state)


def _fresh_state(snapshot: ForwardState) -> ForwardState:
    """A copy of ``snapshot`` whose containers can be written without touching the original."""
    shared = {k: list(v) if isinstance(v, list) else v for k, v in snapshot.shared.items()}
    return dataclasses.replace(snapshot, shared=shared, aux_losses=dict(snapshot.aux_losses))


def checkpointed_layer(layer, x, position_embeddings, attention_mask, cache, state):
    """``layer(x, ...)`` whose activations are recomputed in the backward pass.

    Non-reentrant ``torch.utils.checkpoint``: tensors a layer writes into ``state`` (auxiliary
    losses, cross-layer tensors) stay in the graph as usual. The recomputation runs on a copy of
    ``state`` as it was when the layer started, so it reads what the first pass read (later
    layers may have overwritten ``state.shared`` since) and adds no second auxiliary loss.
    """
    snapshot = _fresh_state(state)
    calls = [0]

    def run(inputs):
        calls[0] += 1
        target = state if calls[0] == 1 else _fresh_state(snapshot)
        return layer(inputs, position_embeddings, attention_mask, cache, target)

    return torch.utils.checkpoint.checkpoint(run, x, use_reentrant=False)


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_t CE(hidden[t] @ weight^T, labels[t]) over chunks of rows, gradients in the forward.

    Each chunk's logits (c, V) are formed in >= fp32, turned into the chunk's loss and its
    gradient ``softmax - onehot`` at once, and dropped: the (N, V) logits never exist. The
    gradients w.r.t. hidden (N, D) and weight (V, D) are kept for the backward, which scales
    them by the incoming gradient (the approach of Liger-Kernel's fused linear cross-entropy).
    Rows with label -100 are ignored, as in ``F.cross_entropy``.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk):
        n = hidden.shape[0]
        compute = torch.promote_types(hidden.dtype, torch.float32)
        valid = labels != -100
        scale = 1.0 / valid.sum().to(compute)  # no host sync
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=compute, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=compute, device=hidden.device)
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk]  # (c, D)
            y = labels[start : start + chunk]  # (c,)
            ok = valid[start : start + chunk]
            target = y.clamp_min(0)
            logits = F.linear(h, weight).to(compute)  # (c, V)
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            picked = logits.gather(1, target[:, None]).squeeze(1)
            total = total + ((lse - picked) * ok).sum()
            if need_h or need_w:
                grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place
                grad[torch.arange(len(y), device=grad.device), target] -= 1.0
                grad.mul_((ok.to(compute) * scale)[:, None])  # d mean-loss / d logits
                grad = grad.to(weight.dtype)
                if need_h:
                    grad_h[start : start + chunk] = (grad @ weight).to(hidden.dtype)
                if need_w:
                    grad_w += (grad.t() @ h.to(grad.dtype)).to(compute)
        ctx.save_for_backward(grad_h, grad_w)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = grad_w * grad_out.to(grad_w.dtype) if grad_w is not None else None
        return gh, gw, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int = 2048
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, labels, ignore_index=-100)`` without the (N, V)
    logits: hidden (N, D), weight (V, D), labels (N,). See :class:`_LinearCrossEntropy`."""
    return _LinearCrossEntropy.apply(hidden, weight, labels, max(1, int(chunk_tokens)))


def set_gradient_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Switch layer recomputation on/off in every :class:`DecoderModel` of ``model``; returns
    how many were switched (0: the model has no decoder, a likely mistake)."""
    found = 0
    for module in model.modules():
        if isinstance(module, DecoderModel):
            module.gradient_checkpointing = enabled
            found += 1
    return found


class DecoderPreTrainedModel(PreTrainedModel):
    config_class = DecoderConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.initializer_range)


class DecoderModel(DecoderPreTrainedModel):
    """Embedding, decoder layers and final norm; returns the last hidden states (B, T, D)."""

    def __init__(
        self,
        config: DecoderConfig,
        mlp_class=SwiGLUMLP,
        attention_class=Attention,
        rotary_class=RotaryEmbedding,
    ):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, mlp_class, attention_class)
            for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = rotary_class(config)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = False,
        state: ForwardState | None = None,
    ) -> tuple[torch.Tensor, Cache | None, ForwardState]:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        if use_cache and cache is None:
            cache = DynamicCache()
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            if (
                attention_mask is not None
                and attention_mask.dim() == 2
                and not attention_mask.all()
            ):
                # left padding: positions count real tokens only
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            else:
                position_ids = torch.arange(past, past + T, device=x.device)[None].expand(B, T)
        if state is None:
            state = ForwardState(input_ids=input_ids, attention_mask=attention_mask)
        mask = build_attention_mask(attention_mask, T, past + T, x.device)
        position_embeddings = self.rotary_emb(x, position_ids)
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                x = checkpointed_layer(layer, x, position_embeddings, mask, cache, state)
            else:
                x = layer(x, position_embeddings, mask, cache, state)
        return self.norm(x), cache, state


class DecoderLM(DecoderPreTrainedModel, GenerationMixin):
    """Causal LM: :class:`DecoderModel` + linear head. Subclass to plug in a paper's blocks."""

    mlp_class = SwiGLUMLP
    attention_class = Attention
    rotary_class = RotaryEmbedding
    # rows per chunk of the training loss (0 = plain cross-entropy on full logits); the trainer
    # sets it from train.loss_chunk_tokens
    loss_chunk_tokens = 2048
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        self.model = DecoderModel(
            config,
            mlp_class=type(self).mlp_class,
            attention_class=type(self).attention_class,
            rotary_class=type(self).rotary_class,
        )
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def saves_as_llama(self) -> bool:
        """True for the plain dense model (no extension point changed, one RoPE base): its
        weights are Llama's, so :meth:`save_pretrained` writes a plain Llama checkpoint."""
        return (
            type(self) is DecoderLM
            and type(self.config) is DecoderConfig
            and self.config.rope_theta_per_head is None
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``; a dense model is written as ``model_type: llama``
        (``LlamaForCausalLM``), loadable by plain transformers, lm-eval ``--model hf``, vLLM and
        conversion scripts with nothing of ours installed. Models with new layers keep their
        own type (their package registers it on import)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.saves_as_llama() and kwargs.get("is_main_process", True):
            llama_config_from_decoder(self.config).save_pretrained(save_directory)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values: Cache | None = None,
        return_dict: bool | None = None,
        return_logits: bool | None = None,
        **kwargs,
    ) -> DecoderLMOutput:
        """Logits (B, T, V) in fp32 when asked for; with ``labels`` (B, T) the next-token loss.

        ``labels`` are the input ids themselves (shifted inside, -100 = ignore), as in HF.
        ``cache`` (alias ``past_key_values``) holds keys/values of earlier tokens.
        ``attention_mask``: (B, S) padding mask, or a custom boolean (B, 1, T, S) mask
        (True = may attend) such as a prefix-LM mask, used as given.
        ``return_logits``: None means "unless training with labels". Training with labels and
        without logits computes the loss chunk by chunk (:func:`linear_cross_entropy`), so the
        (B, T, V) fp32 logits are never materialised; ``logits`` is then None.
        """
        cache = cache if cache is not None else past_key_values
        hidden, cache, state = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=bool(use_cache),
        )
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        if return_logits is None:
            return_logits = labels is None or not self.training
        fused = (
            labels is not None
            and not return_logits
            and self.loss_chunk_tokens > 0
            and self.lm_head.bias is None
            # a ZeRO-3 partitioned weight is gathered only when lm_head itself is called
            and getattr(self.lm_head.weight, "ds_id", None) is None
        )
        logits_dtype = torch.promote_types(hidden.dtype, torch.float32)  # fp64 stays fp64
        logits = self.lm_head(hidden).to(logits_dtype) if not fused else None
        loss = lm_loss = None
        if labels is not None:
            # Shift the labels, not the logits: slicing (B, T, V) logits costs a copy forward
            # and a zero-filled gradient backward.
            shifted = F.pad(labels[:, 1:], (0, 1), value=-100)
            if fused:
                lm_loss = linear_cross_entropy(
                    hidden.reshape(-1, hidden.shape[-1]),
                    self.lm_head.weight,
                    shifted.reshape(-1),
                    self.loss_chunk_tokens,
                )
            else:
                lm_loss = F.cross_entropy(
                    logits.view(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100
                )
            loss = lm_loss
            for value in state.aux_losses.values():
                loss = loss + value
        return DecoderLMOutput(
            loss=loss,
            logits=logits,
            cache=cache if use_cache else None,
            lm_loss=lm_loss,
            aux_losses=dict(state.aux_losses),
        )


AutoConfig.register(DecoderConfig.model_type, DecoderConfig, exist_ok=True)
AutoModelForCausalLM.register(DecoderConfig, DecoderLM, exist_ok=True)


# ----------------------------------------------------------------------------------------------
# Loading HF Llama checkpoints (and saving the dense model as one)


def llama_config_from_decoder(config: DecoderConfig):
    """The ``LlamaConfig`` with the shapes of a dense :class:`DecoderConfig` (no per-head RoPE)."""
    from transformers import LlamaConfig

    llama = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta,
        attention_bias=config.attention_bias,
        mlp_bias=config.mlp_bias,
        attention_dropout=config.attention_dropout,
        initializer_range=config.initializer_range,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        architectures=["LlamaForCausalLM"],
    )
    if getattr(config, "dtype", None) is not None:
        llama.dtype = config.dtype
    return llama


def decoder_config_from_llama(llama_config) -> DecoderConfig:
    """Translate a ``LlamaConfig`` into a :class:`DecoderConfig` with the same shapes.

    Raises ValueError for Llama features this decoder does not implement (RoPE scaling types
    other than "default", sliding windows).
    """
    rope = getattr(llama_config, "rope_parameters", None) or {}
    rope_type = rope.get("rope_type", "default")
    if rope_type != "default":
        raise ValueError(
            f"RoPE type {rope_type!r} of this checkpoint is not supported by DecoderLM; "
            "only 'default' RoPE is (pass a checkpoint without rope scaling)"
        )
    theta = rope.get("rope_theta", getattr(llama_config, "rope_theta", 10000.0))
    eos = llama_config.eos_token_id
    return DecoderConfig(
        vocab_size=llama_config.vocab_size,
        hidden_size=llama_config.hidden_size,
        intermediate_size=llama_config.intermediate_size,
        num_hidden_layers=llama_config.num_hidden_layers,
        num_attention_heads=llama_config.num_attention_heads,
        num_key_value_heads=llama_config.num_key_value_heads,
        head_dim=getattr(llama_config, "head_dim", None),
        max_position_embeddings=llama_config.max_position_embeddings,
        rms_norm_eps=llama_config.rms_norm_eps,
        rope_theta=theta,
        attention_bias=llama_config.attention_bias,
        mlp_bias=getattr(llama_config, "mlp_bias", False),
        attention_dropout=llama_config.attention_dropout,
        initializer_range=llama_config.initializer_range,
        tie_word_embeddings=llama_config.tie_word_embeddings,
        bos_token_id=llama_config.bos_token_id,
        eos_token_id=eos,
        pad_token_id=llama_config.pad_token_id,
    )


def load_llama_checkpoint(path: str | Path, model_class=DecoderLM, **config_overrides) -> DecoderLM:
    """Load any HF Llama checkpoint directory (or a DecoderLM one) as ``model_class``.

    Args:
        path: directory with ``config.json`` and safetensors weights (``save_pretrained``
            output of ``LlamaForCausalLM`` or of this project's models).
        model_class: a :class:`DecoderLM` subclass; its extra parameters (if any) keep their
            initialisation and are listed in the returned model's ``missing_keys`` attribute.
        config_overrides: fields set on the translated config (e.g. a package's switches).
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig as _AutoConfig

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory (no config.json). Pass the output directory of "
            "save_pretrained, e.g. runs/base/final from `make base`."
        )
    source = _AutoConfig.from_pretrained(path)
    config = source if isinstance(source, DecoderConfig) else decoder_config_from_llama(source)
    config_dict = config.to_dict()
    config_dict.update(config_overrides)
    for key in ("model_type", "transformers_version", "architectures"):
        config_dict.pop(key, None)
    config = model_class.config_class(**config_dict)
    model = model_class(config)
    state = {}
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {path}")
    for f in files:
        state.update(load_file(f))
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    result = model.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if "rotary_emb" not in k]
    if unexpected:
        raise ValueError(
            f"checkpoint {path} has weights this model does not know: {unexpected[:8]}"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    model.missing_keys = [k for k in result.missing_keys if k != "lm_head.weight"]
    return model


# ----------------------------------------------------------------------------------------------
# Counting parameters and FLOPs


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts used to prove parity between a method and its baseline.

    Returns:
        ``total``: every parameter (tied weights once);
        ``embedding``: the input embedding table;
        ``non_embedding``: total - embedding (the output head counts as a matmul);
        ``activated``: non-embedding parameters used for one token. A module that defines
        ``num_activated_parameters()`` (an MoE layer) reports its own count; everything else
        counts fully. The embedding lookup is excluded, as in Kaplan et al. (2020).
    """
    seen: set[int] = set()

    def unique(params):
        out = 0
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                out += p.numel()
        return out

    embedding = (
        model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    )
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    emb = embedding.numel() if embedding is not None else 0

    def activated(module: nn.Module) -> int:
        if hasattr(module, "num_activated_parameters") and module is not model:
            n = int(module.num_activated_parameters())
            unique(module.parameters())  # mark as counted
            return n
        n = unique(module.parameters(recurse=False))
        return n + sum(activated(child) for child in module.children())

    if embedding is not None:
        seen.add(id(embedding))
    act = activated(model)
    return {"total": total, "embedding": emb, "non_embedding": total - emb, "activated": act}


def flops_per_token(model: nn.Module, seq_len: int) -> dict[str, float]:
    """Training FLOPs per token, the PaLM (Chowdhery et al., 2022, App. B) convention.

    forward = 2 * activated non-embedding parameters (every weight is one multiply-add per
    token) + attention scores and values, 2 * 2 * H * hd * seq_len per layer (full, not causal,
    context as in PaLM); training = 3 * forward. An attention module may define
    ``attention_flops_per_token(seq_len)`` (forward) to report less (e.g. a layer that reuses
    another layer's attention map); an MoE layer reports its activated parameters through
    ``num_activated_parameters()``.

    Returns ``forward`` and ``train`` FLOPs per token.
    """
    params = count_parameters(model)["activated"]
    attn = 0.0
    for module in model.modules():
        if hasattr(module, "attention_flops_per_token"):
            attn += float(module.attention_flops_per_token(seq_len))
        elif isinstance(module, Attention):
            attn += attention_flops_per_token(module.num_heads, module.head_dim, seq_len)
    forward = 2.0 * params + attn
    return {"forward": forward, "train": 3.0 * forward}


__all__ = [
    "DecoderConfig",
    "DecoderLM",
    "DecoderLMOutput",
    "DecoderModel",
    "DecoderLayer",
    "DecoderPreTrainedModel",
    "count_parameters",
    "decoder_config_from_llama",
    "checkpointed_layer",
    "flops_per_token",
    "llama_config_from_decoder",
    "linear_cross_entropy",
    "load_llama_checkpoint",
    "set_gradient_checkpointing",
]
