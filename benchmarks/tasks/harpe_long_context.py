"""Readers of the HARPE long-context task YAMLs (``harpe_*_local``): RULER-style tasks generated
on the fly by ``repro_harpe.tasks`` (passkey, NIAH single / multi-key, variable tracking,
common-word extraction), deterministic given the seed.

Lengths are counted in GPT-2 BPE tokens (``$REPRO_DATA_DIR/gpt2-tokenizer``), one reference
tokenizer for every package's checkpoints, whatever their own tokenizer: a model whose tokenizer
is finer sees more tokens, and lm-eval cuts the context from the left at the model's
``max_length`` (so a needle near the start can be cut off, which is part of what is measured).
Scored with RULER's ``string_match_all`` on the greedy generation.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import datasets


def data_file(relative: str, task: str):
    """``local_data.data_file`` of this folder (loaded by path: lm-eval imports task modules
    by file, not as a package)."""
    spec = importlib.util.spec_from_file_location(
        "repro_bench_local_data", Path(__file__).with_name("local_data.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.data_file(relative, task)


def _gpt2_counter(kwargs: dict):
    from tokenizers import ByteLevelBPETokenizer

    files = kwargs["data_files"]
    task = kwargs.get("task_name", "a HARPE long-context task")
    bpe = ByteLevelBPETokenizer(
        str(data_file(files["vocab"], task)), str(data_file(files["merges"], task))
    )
    return lambda text: len(bpe.encode(text).ids)


def load_task(**kwargs) -> dict[str, datasets.Dataset]:
    """``{"test": Dataset}`` of ``kwargs["ruler_task"]`` at every length x depth."""
    from repro_harpe.tasks import DEPTH_TASKS, build_sample

    count = _gpt2_counter(kwargs)
    task = kwargs["ruler_task"]
    depths = kwargs.get("depths", [0.0, 0.5, 1.0])
    rows = []
    for length in kwargs.get("lengths", [128, 256, 512, 1024, 2048]):
        cells = depths if task in DEPTH_TASKS else [None]
        per_cell = kwargs.get("samples", 2) * (1 if task in DEPTH_TASKS else len(depths))
        for d_i, depth in enumerate(cells):
            rng = random.Random(f"{kwargs.get('seed', 42)}-{task}-{length}-{d_i}")
            for _ in range(per_cell):
                try:
                    s = build_sample(task, length, depth, rng, count)
                except ValueError:  # does not fit in this length
                    break
                rows.append({"prompt": s.prompt, "target": s.target, "answers": s.answers,
                             "length": length, "depth": -1.0 if depth is None else depth})  # fmt: skip
    return {"test": datasets.Dataset.from_list(rows)}


def process_results(doc: dict, results: list[str]) -> dict:
    from repro_harpe.tasks import string_match_all

    return {"string_match_all": string_match_all([results[0]], [doc["answers"]])}
