"""Scaffold-BPE as a `transformers` tokenizer (for the data pipeline, `generate()` and lm-eval).

Ids are the compact model ids 0..N-1 over the normal tokens V; scaffold tokens never appear. A token
string is the GPT-2 `bytes_to_unicode` spelling of the token's bytes (special tokens: their text).
`encode` / `__call__` take a fast path through our cached encoder; tokens added later with
`add_tokens` fall back to the generic `transformers` path.

    tok = ScaffoldBpeTokenizer.from_pretrained("out/tokenizer")
    ids = tok("Hello world")["input_ids"];  tok.decode(ids) == "Hello world"

Importing this module registers the class with `AutoTokenizer`, so `AutoTokenizer.from_pretrained(dir)`
(e.g. `repro_core.data.get_tokenizer(dir)`) loads a saved Scaffold-BPE tokenizer without remote code.
"""

from __future__ import annotations

from typing import Any

from repro_core.byte_tokenizer import ByteLevelTokenizer
from transformers import AutoTokenizer, PretrainedConfig

from repro_scaffold_bpe.scaffold import ScaffoldBpe

MODEL_FILE = "scaffold_bpe.json"


class ScaffoldBpeTokenizer(ByteLevelTokenizer):
    """HF tokenizer over a `ScaffoldBpe` model (a plain BPE is a ScaffoldBpe with no scaffold tokens).

    Args:
        model_file: path of a `scaffold_bpe.json` written by `ScaffoldBpe.save` / `save_pretrained`.
        model: an in-memory `ScaffoldBpe` instead of `model_file`.
        semantics: BPE semantics of the encoder, "merges" (HF) or "token_rank" (tiktoken).
        eos_token: defaults to `<|endoftext|>` when the model has it. No BOS/EOS is added by `encode`.
    """

    vocab_files_names = {"model_file": MODEL_FILE}

    def __init__(
        self,
        model_file: str | None = None,
        model: ScaffoldBpe | None = None,
        semantics: str = "merges",
        eos_token: str | None = "<|endoftext|>",
        clean_up_tokenization_spaces: bool = False,
        **kwargs: Any,
    ) -> None:
        if model is None:
            if model_file is None:
                raise ValueError(
                    "pass model_file=<path to scaffold_bpe.json> or model=ScaffoldBpe(...)"
                )
            model = ScaffoldBpe.load(model_file)
        self.model = model
        self.semantics = semantics
        self._encoder = model.encoder(semantics)
        specials = {s: model.model_id_of[i] for s, i in model.special_tokens.items()}
        self._set_encoder(self._encoder, self._encoder.output_token_bytes, specials)
        super().__init__(
            eos_token=self._eos_if_known(eos_token),
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            semantics=semantics,
            **kwargs,
        )

    def save_vocabulary(
        self, save_directory: str, filename_prefix: str | None = None
    ) -> tuple[str, ...]:
        path = self._save_path(save_directory, filename_prefix, MODEL_FILE)
        self.model.save(path)
        return (path,)


class ScaffoldBpeTokenizerConfig(PretrainedConfig):
    """Marker config: `AutoTokenizer.register` needs one to find `ScaffoldBpeTokenizer` by name."""

    model_type = "scaffold_bpe_tokenizer"


AutoTokenizer.register(
    ScaffoldBpeTokenizerConfig, slow_tokenizer_class=ScaffoldBpeTokenizer, exist_ok=True
)
