"""Scaffold-BPE (arXiv 2404.17808): BPE training that removes scaffold tokens; encoding demolishes them.

`ScaffoldBpeTokenizer` (the `transformers` wrapper, registered with `AutoTokenizer` on import) lives
in `repro_scaffold_bpe.hf_tokenizer`.
"""

from repro_scaffold_bpe.scaffold import ScaffoldBpe, plain_bpe_as_scaffold, train_scaffold_bpe

__version__ = "0.1.0"

__all__ = ["ScaffoldBpe", "plain_bpe_as_scaffold", "train_scaffold_bpe"]
