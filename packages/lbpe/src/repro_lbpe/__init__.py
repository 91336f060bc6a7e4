"""LBPE (arXiv 2411.05504): long-token-first encoding over an ordinary BPE vocabulary.

`LbpeEncoder` (the encoder, `repro_lbpe.lbpe`), `TokenVocabulary` (any workspace BPE vocabulary,
`repro_lbpe.vocab`); the `transformers` wrapper `LbpeTokenizer` lives in `repro_lbpe.tokenizer`
(importing it registers the class with `AutoTokenizer`). The names below load on first use, so
`import repro_lbpe` stays cheap and the command lines check their arguments first.
"""

from repro_core import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "READINGS": ".lbpe",
    "TIES": ".lbpe",
    "LbpeEncoder": ".lbpe",
    "TokenVocabulary": ".vocab",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
