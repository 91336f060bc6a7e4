"""LBPE (arXiv 2411.05504): long-token-first encoding over an ordinary BPE vocabulary.

`LbpeEncoder` (the encoder, `repro_lbpe.lbpe`), `TokenVocabulary` (any workspace BPE vocabulary,
`repro_lbpe.vocab`); the `transformers` wrapper `LbpeTokenizer` lives in `repro_lbpe.tokenizer`
(importing it registers the class with `AutoTokenizer`).
"""

from repro_lbpe.lbpe import READINGS, TIES, LbpeEncoder
from repro_lbpe.vocab import TokenVocabulary

__version__ = "0.1.0"

__all__ = ["READINGS", "TIES", "LbpeEncoder", "TokenVocabulary"]
