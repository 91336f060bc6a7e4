"""The core Trainer on given token blocks (imports torch; ``train.py`` loads it when it trains)."""

from __future__ import annotations

from repro_core.data import BlockSampler
from repro_core.train import Trainer


class BlockTrainer(Trainer):
    """The core Trainer on given (N, L) token blocks instead of a packed corpus (one document
    per block, so no retrieval instance is cut in two)."""

    def __init__(self, cfg, run_dir, train_blocks, val_blocks, **kwargs):
        super().__init__(cfg, run_dir, **kwargs)
        self.train_blocks, self.val_blocks = train_blocks, val_blocks
        t = cfg.train
        self.sampler = BlockSampler(
            len(train_blocks), t.batch_size, t.grad_accum, self.accelerator.num_processes, cfg.seed
        )


__all__ = ["BlockTrainer"]
