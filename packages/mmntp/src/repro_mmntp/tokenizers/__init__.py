"""Image tokenizers of the survey's taxonomy: discrete (VQ, FSQ, residual VQ, k-means palette)
and continuous (patch / encoder features + projector). :func:`build_tokenizer` makes one from a
:class:`~repro_mmntp.config.TokenizerConfig`; :func:`train_tokenizer` fits it."""

from .fsq import FiniteScalarQuantizer, FSQTokenizer
from .kmeans import KMeansPaletteTokenizer, from_patches, to_patches
from .rvq import ResidualVQTokenizer
from .training import build_tokenizer, train_tokenizer
from .vq import EMAVectorQuantizer, VQTokenizer

__all__ = [
    "EMAVectorQuantizer",
    "FSQTokenizer",
    "FiniteScalarQuantizer",
    "KMeansPaletteTokenizer",
    "ResidualVQTokenizer",
    "VQTokenizer",
    "build_tokenizer",
    "from_patches",
    "to_patches",
    "train_tokenizer",
]
