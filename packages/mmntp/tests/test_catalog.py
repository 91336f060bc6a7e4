"""catalog.yaml: every entry is well formed and cites its source; an arXiv id is only given with
where it was checked."""

import re
from pathlib import Path

import yaml

CATALOG = Path(__file__).resolve().parents[1] / "catalog.yaml"


def test_catalog_entries_are_well_formed_and_cite_their_source():
    data = yaml.safe_load(CATALOG.read_text())
    entries = data["entries"]
    assert len(entries) >= 30
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names)
    ids = [e["arxiv"] for e in entries if "arxiv" in e]
    assert len(set(ids)) == len(ids)
    for e in entries:
        assert e["kind"] in ("tokenizer", "model") and e["source"], e
        assert e["modality"] in ("vision", "audio", "any-to-any"), e
        if e["kind"] == "tokenizer":
            assert e["tokenization"] in ("discrete", "continuous", "discrete & continuous"), e
        elif "model_type" in e:
            assert e["model_type"] in ("unified", "compositional"), e
        if "arxiv" in e:
            assert re.fullmatch(r"\d{4}\.\d{5}", e["arxiv"]) and e["arxiv_checked"], e
