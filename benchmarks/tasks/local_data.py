"""Readers of the offline task YAMLs in this folder: files under ``$REPRO_DATA_DIR``.

Every YAML here names its files relative to ``$REPRO_DATA_DIR`` (``dataset_kwargs.data_files``,
``{split: relative path}``) and loads them with ``custom_dataset: !function local_data.<reader>``,
so nothing touches the HF hub or the ``datasets`` cache. A missing variable or file raises
:class:`MissingDataError` saying what is missing and where it comes from.
"""

from __future__ import annotations

import bz2
import json
import os
import re
from pathlib import Path

import datasets

DATA_ENV = "REPRO_DATA_DIR"


class MissingDataError(FileNotFoundError):
    """A data file of a local task is not on disk (or ``$REPRO_DATA_DIR`` is unset)."""


def data_file(relative: str, task: str = "this task") -> Path:
    """``$REPRO_DATA_DIR/relative``, or a :class:`MissingDataError` that says how to get it."""
    root = os.environ.get(DATA_ENV)
    if not root:
        raise MissingDataError(
            f"{task} reads $REPRO_DATA_DIR/{relative}, but REPRO_DATA_DIR is not set. Point it at the "
            "project's data folder (../shared/data beside the repository; its README.md lists the "
            "sources), e.g. `export REPRO_DATA_DIR=$(realpath ../shared/data)`; `make bench` sets it "
            "when that folder exists. With network access, lm-eval's hub task of the same name without "
            "the `_local` suffix needs no local file."
        )
    path = Path(root) / relative
    if not path.is_file():
        folder = relative.split("/")[0]
        raise MissingDataError(
            f"{task}: missing data file {path} (REPRO_DATA_DIR={root}). Fetch it as "
            f"{Path(root) / folder / 'SOURCE.md'} describes (repository, commit, sha256), or point "
            "REPRO_DATA_DIR at a complete copy of the project's data folder."
        )
    return path


def _files(kwargs: dict) -> dict[str, Path]:
    task = kwargs.get("task_name", "a local task")
    return {split: data_file(rel, task) for split, rel in kwargs["data_files"].items()}


def load_jsonl(**kwargs) -> dict[str, datasets.Dataset]:
    """One JSON object per line, per split (the llm-foundry eval files, LAMBADA)."""
    out = {}
    for split, path in _files(kwargs).items():
        with open(path, encoding="utf-8") as f:
            out[split] = datasets.Dataset.from_list(
                [json.loads(line) for line in f if line.strip()]
            )
    return out


_ARTICLE_HEADING = re.compile(r"^ = [^=].* = $")


def wikitext_pages(text: str) -> list[str]:
    """Split WikiText raw into articles at top-level headings (`` = Title = ``), the documents of
    lm-eval's ``wikitext`` task (62 test, 60 validation articles in WikiText-2)."""
    pages, current = [], []
    for line in text.split("\n"):
        if _ARTICLE_HEADING.match(line) and current:
            if "".join(current).strip():
                pages.append("\n".join(current))
            current = []
        current.append(line)
    if "".join(current).strip():
        pages.append("\n".join(current))
    return pages


def load_wikitext_pages(**kwargs) -> dict[str, datasets.Dataset]:
    """WikiText raw files -> ``{"page": article}`` rows per split."""
    return {
        split: datasets.Dataset.from_dict(
            {"page": wikitext_pages(path.read_text(encoding="utf-8"))}
        )
        for split, path in _files(kwargs).items()
    }


def load_hellaswag_text(**kwargs) -> dict[str, datasets.Dataset]:
    """The klosax text dump (bz2): 6 lines per item, context, gold index, 4 endings.

    The context line is ``activity_label: ctx`` with ``ctx_b`` not capitalised, so the prompt can
    differ by one capital letter from lm-eval's ``hellaswag``; the same bracket clean-up is applied.
    """
    out = {}
    for split, path in _files(kwargs).items():
        with bz2.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        rows = {"query": [], "choices": [], "label": []}
        for i in range(0, len(lines) - 5, 6):
            rows["query"].append(_hellaswag_clean(lines[i]))
            rows["label"].append(int(lines[i + 1]))
            rows["choices"].append([_hellaswag_clean(e) for e in lines[i + 2 : i + 6]])
        out[split] = datasets.Dataset.from_dict(rows)
    return out


def _hellaswag_clean(text: str) -> str:
    # lm-eval's hellaswag preprocess: brackets are WikiHow artifacts.
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def winogrande_gold(doc: dict) -> int:
    """Partial evaluation: the gold context option is the "text", the shared ending the target."""
    return doc["gold"]


def boolq_prompt(doc: dict) -> str:
    """lm-eval's boolq prompt, ``{passage}\\nQuestion: {question}?\\nAnswer:`` (llm-foundry's
    query starts with ``Passage: ``, which lm-eval's prompt does not have)."""
    query = doc["query"]
    return (query[len("Passage: ") :] if query.startswith("Passage: ") else query) + "\nAnswer:"


def wikitext_detokenizer(doc: dict) -> str:
    """lm-eval's own WikiText detokenizer, so the perplexities match its ``wikitext`` task."""
    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer as detokenize

    return detokenize(doc)


def wikitext_process_results(doc: dict, results):
    """lm-eval's: word and byte counts of the original page (before detokenization)."""
    from lm_eval.tasks.wikitext.preprocess_wikitext import process_results

    return process_results(doc, results)
