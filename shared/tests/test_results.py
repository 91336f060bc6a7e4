"""repro_core.results: atomic writes, README blocks, seed statistics."""

from __future__ import annotations

import json
import math
import os

import pytest
from repro_core.results import mean_std, replace_block, write_json_atomic, write_text_atomic


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "results.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2, "nan": float("nan")})
    data = json.loads(target.read_text())
    assert data["a"] == 2 and math.isnan(data["nan"])
    assert os.listdir(target.parent) == ["results.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    write_text_atomic(target, "old")

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": Boom()})  # json.dumps fails before any write
    with pytest.raises(TypeError):
        write_text_atomic(target, None)  # the write itself fails: temporary removed
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]


def test_replace_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("head\n<!-- s -->\nold\n<!-- e -->\ntail\n")
    assert replace_block(readme, "<!-- s -->", "<!-- e -->", "\nnew\n")
    assert readme.read_text() == "head\n<!-- s -->\nnew\n<!-- e -->\ntail\n"
    assert replace_block(readme, "<!-- s -->", "<!-- e -->", "\nnewer\n")
    assert "newer" in readme.read_text() and "new\n<!-- e" not in readme.read_text().replace(
        "newer", ""
    )
    assert not replace_block(readme, "<!-- x -->", "<!-- e -->", "body")
    assert not replace_block(tmp_path / "missing.md", "a", "b", "body")
    readme.write_text("<!-- e -->\n<!-- s -->\n")
    with pytest.raises(ValueError, match="comes before"):
        replace_block(readme, "<!-- s -->", "<!-- e -->", "body")


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert mean_std([5.0, None]) == {"mean": 5.0, "std": 0.0, "n": 1}
    assert mean_std([None]) is None and mean_std([]) is None
    assert math.isnan(mean_std([1.0, float("nan")])["mean"])  # a diverged seed is not hidden
