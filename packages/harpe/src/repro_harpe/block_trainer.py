"""The core Trainer on given token blocks (imports torch; ``train.py`` loads it when it trains)."""

from __future__ import annotations

import numpy as np
from repro_core.data import BlockSampler
from repro_core.prepare import epochs_over_corpus
from repro_core.train import Trainer


class PhasedSampler:
    """Steps ``[0, first_steps)`` draw from the first ``first_blocks`` blocks, later steps from
    the rest (each part its own seeded :class:`BlockSampler`): a data curriculum inside one run,
    one optimizer and one lr schedule. Same interface as :class:`BlockSampler`."""

    def __init__(self, first_blocks, first_steps, num_blocks, micro, accum, world, seed):
        self.first_blocks, self.first_steps = first_blocks, first_steps
        self.first = BlockSampler(first_blocks, micro, accum, world, seed)
        self.rest = BlockSampler(num_blocks - first_blocks, micro, accum, world, seed)
        self.global_batch = self.rest.global_batch

    def indices(self, step: int, micro: int, rank: int) -> np.ndarray:
        if step < self.first_steps:
            return self.first.indices(step, micro, rank)
        return self.first_blocks + self.rest.indices(step - self.first_steps, micro, rank)


class BlockTrainer(Trainer):
    """The core Trainer on given (N, L) token blocks instead of a packed corpus (one document
    per block, so no retrieval instance is cut in two). ``first_blocks`` > 0: the first
    ``first_steps`` steps train on ``train_blocks[:first_blocks]`` only (:class:`PhasedSampler`)."""

    def __init__(
        self, cfg, run_dir, train_blocks, val_blocks, first_blocks=0, first_steps=0, **kwargs
    ):
        super().__init__(cfg, run_dir, **kwargs)
        self.train_blocks, self.val_blocks = train_blocks, val_blocks
        t = cfg.train
        args = (t.batch_size, t.grad_accum, self.accelerator.num_processes, cfg.seed)
        if first_blocks:
            self.sampler = PhasedSampler(first_blocks, first_steps, len(train_blocks), *args)
        else:
            self.sampler = BlockSampler(len(train_blocks), *args)
        # the core counted epochs over its own packing of the corpus text; these blocks are it
        self.epochs = epochs_over_corpus(
            t.max_steps * self.tokens_per_step, len(train_blocks) * cfg.data.seq_len
        )


__all__ = ["BlockTrainer", "PhasedSampler"]
