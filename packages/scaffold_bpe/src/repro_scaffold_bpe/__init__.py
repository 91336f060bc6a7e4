"""Scaffold-BPE (arXiv 2404.17808): BPE training that removes scaffold tokens; encoding demolishes them.

`ScaffoldBpeTokenizer` (the `transformers` wrapper, registered with `AutoTokenizer` on import) lives
in `repro_scaffold_bpe.hf_tokenizer`. The names below load on first use, so
`import repro_scaffold_bpe` stays cheap (no numba) and the command lines check their arguments first.
"""

from repro_core import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ScaffoldBpe": ".scaffold",
    "plain_bpe_as_scaffold": ".scaffold",
    "train_scaffold_bpe": ".scaffold",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
