"""The unified MMNTP model: the core's decoder over one vocabulary of text words, image codes and
specials (survey Fig. 2 and Fig. 8 Type 2), with the two continuous-token options of the survey:

* continuous inputs (section 2.4.1): image features -> projector -> vectors placed at the image
  positions instead of code embeddings (LLaVA/Fuyu; the compositional understanding path);
* continuous targets (section 4.1, "continuous token prediction"): a feature head regresses the
  next image latent with MSE (the "Direct Output" branch of Fig. 2), instead of a softmax over codes.

Everything else is ``repro_core.modeling.DecoderLM``: its layers, its HF save/load and
``generate()``; custom masks (prefix-LM, block-causal) go through its 4-D ``attention_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from repro_core.modeling import DecoderConfig, DecoderLM, DecoderLMOutput
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from .tokenizers.continuous import Projector


class MMNTPConfig(DecoderConfig):
    """DecoderConfig + the image layout of the vocabulary and the continuous-token switches.

    Args:
        code_start / num_codes / codes_per_image: where the image codes sit in the vocabulary.
        feature_dim: width of continuous image inputs (0 = discrete inputs only).
        projector / resampler_queries: see :class:`~repro_mmntp.tokenizers.continuous.Projector`.
        latent_dim: width of regressed image latents (0 = discrete targets only).
    """

    model_type = "repro_mmntp"

    def __init__(
        self,
        code_start: int = 0,
        num_codes: int = 0,
        codes_per_image: int = 16,
        feature_dim: int = 0,
        projector: str = "linear",
        resampler_queries: int = 0,
        latent_dim: int = 0,
        **kwargs,
    ):
        self.code_start, self.num_codes, self.codes_per_image = (
            code_start,
            num_codes,
            codes_per_image,
        )
        self.feature_dim, self.projector, self.resampler_queries = (
            feature_dim,
            projector,
            resampler_queries,
        )
        self.latent_dim = latent_dim
        super().__init__(**kwargs)


@dataclass
class MMNTPOutput(DecoderLMOutput):
    latent_pred: torch.Tensor | None = None
    latent_loss: torch.Tensor | None = None


def scatter_tokens(embeds: torch.Tensor, tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Replace ``embeds`` (B, T, D) at positions with ``index`` >= 0 by ``tokens`` (M*Q, D)[index]."""
    use = index >= 0
    out = embeds.clone()
    out[use] = tokens[index[use]].to(embeds.dtype)
    return out


class MMNTPForCausalLM(DecoderLM):
    config_class = MMNTPConfig

    def __init__(self, config: MMNTPConfig):
        super().__init__(config)
        if config.feature_dim:
            self.image_projector = Projector(
                config.feature_dim, config.hidden_size, config.projector, config.resampler_queries
            )
        if config.latent_dim:
            self.latent_in = nn.Linear(config.latent_dim, config.hidden_size)
            self.latent_head = nn.Linear(config.hidden_size, config.latent_dim)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values=None,
        return_dict: bool | None = None,
        image_features: torch.Tensor | None = None,
        feature_index: torch.Tensor | None = None,
        latent_inputs: torch.Tensor | None = None,
        latent_index: torch.Tensor | None = None,
        latent_target_index: torch.Tensor | None = None,
        **kwargs,
    ) -> MMNTPOutput:
        """Logits (B, T, V); with ``labels`` the next-token CE (+ latent MSE when targets given).

        ``image_features`` (M, L_in, d) with ``feature_index`` (B, T): continuous image inputs,
        index into the M*Q projected tokens (-1 = keep the token embedding).
        ``latent_inputs`` (M, L, D) with ``latent_index`` / ``latent_target_index`` (B, T):
        continuous image latents as inputs, and the latent each position must predict.
        """
        cache = cache if cache is not None else past_key_values
        if inputs_embeds is None:
            inputs_embeds = self.model.embed_tokens(input_ids)  # (B, T, D)
        if image_features is not None:
            # Fig. 2 continuous tokens: Encoder -> Projector -> vectors at the image positions
            projected = self.image_projector(image_features)  # (M, Q, D)
            inputs_embeds = scatter_tokens(inputs_embeds, projected.flatten(0, 1), feature_index)
        if latent_inputs is not None:
            inputs_embeds = scatter_tokens(
                inputs_embeds, self.latent_in(latent_inputs).flatten(0, 1), latent_index
            )
        hidden, cache, state = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=bool(use_cache),
        )  # (B, T, D)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden).float()  # (B, T, V)
        latent_pred = self.latent_head(hidden).float() if self.config.latent_dim else None
        loss = lm_loss = latent_loss = None
        if labels is not None:
            # discrete token prediction: CE over the merged vocabulary (survey Eq. 4, L_DTP)
            shifted = F.pad(labels[:, 1:], (0, 1), value=-100)
            lm_loss = F.cross_entropy(
                logits.view(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100
            )
            loss = lm_loss
            has_targets = latent_target_index is not None and bool((latent_target_index >= 0).any())
            if has_targets and latent_pred is not None:
                # continuous token prediction: ||f(h_t) - z_{t+1}||^2 (survey section 4.1, L_CTP)
                use = latent_target_index >= 0
                target = latent_inputs.flatten(0, 1)[latent_target_index[use]]
                latent_loss = F.mse_loss(latent_pred[use], target.float())
                loss = loss + latent_loss
        return MMNTPOutput(
            loss=loss,
            logits=logits,
            cache=cache if use_cache else None,
            lm_loss=lm_loss,
            aux_losses=dict(state.aux_losses),
            latent_pred=latent_pred,
            latent_loss=latent_loss,
        )


AutoConfig.register(MMNTPConfig.model_type, MMNTPConfig, exist_ok=True)
AutoModelForCausalLM.register(MMNTPConfig, MMNTPForCausalLM, exist_ok=True)
