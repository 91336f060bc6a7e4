"""Writing experiment results: atomic files, the generated block of a README, seed statistics.

Every ``reproduce.py`` ends the same way: write ``results.json`` / ``results.md``, then replace
the generated block of the package README. A crash or Ctrl-C in the middle must not leave a
half-written file behind, so every write here goes to a temporary file in the same folder that
is renamed over the target (``os.replace`` is atomic on POSIX and Windows).

No torch import: usable from report-only code paths.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed over it (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj, indent: int = 1) -> Path:
    """``json.dumps(obj)`` written atomically (a diverged run's NaN is kept, as Python's json
    reads and writes it, rather than failing the whole report)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def replace_block(path: str | Path, start: str, end: str, body: str) -> bool:
    """Replace the text between the markers ``start`` and ``end`` of a file with ``body``
    (markers kept), atomically. Returns False, writing nothing, when the file or a marker is
    missing; raises ValueError when ``end`` does not follow ``start``."""
    path = Path(path)
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    i = text.find(start)
    if i < 0:
        return False
    j = text.find(end, i + len(start))
    if j < 0:
        if end in text:
            raise ValueError(f"{path}: marker {end!r} comes before {start!r}")
        return False
    write_text_atomic(path, text[: i + len(start)] + body + text[j:])
    return True


def mean_std(values: Iterable[float | None]) -> dict | None:
    """``{"mean", "std", "n"}`` of the values that are not None (sample std, 0 for one value);
    None if there is none. A NaN or inf is kept, so a diverged seed shows in the mean."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None
    if not all(math.isfinite(x) for x in xs):  # statistics.stdev cannot take NaN
        return {"mean": statistics.fmean(xs), "std": float("nan"), "n": len(xs)}
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "n": len(xs),
    }


__all__ = ["mean_std", "replace_block", "write_json_atomic", "write_text_atomic"]
