"""RULER-style synthetic long-context tasks, generated locally (spec section 3, tiny variants 3.5).

Tasks (RULER names where one exists; these are "RULER-style", not RULER scores):

* ``passkey``: the landmark-attention passkey test (Mohtashami & Jaggi 2023): a pass key in a
  haystack of the garbage sentence at a given depth.
* ``niah_single``: RULER niah_single_1: one needle "One of the special magic numbers for {key}
  is: {value}." in the noise haystack.
* ``niah_multikey``: RULER niah_multikey_2: every haystack line is a distractor needle with its
  own key and value; the query names one key.
* ``vt``: RULER variable tracking: one chain ``VAR A = 12345.``, ``VAR B = VAR A.``, ... hidden
  in noise; the answer lists every name of the chain.
* ``cwe``: RULER common-word extraction: a numbered word list in which ``num_common`` words
  appear ``freq_common`` times and the others ``freq_rare`` times; the answer lists the common
  words (in order of first appearance).

Shrunk for a tiny model as the spec suggests: keys are 4 lowercase letters, values 5 digits
(>= 4 digits so string matching is not spurious), short instructions. Every generator fills
the haystack by binary search on the number of filler units so that ``count(prompt + target)
<= length`` with ``count`` the model's tokenizer, and puts the needle after
``round(depth * units)`` filler units (depth in [0, 1]).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

NOISE = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
WORDS = (
    "apple river stone cloud bread chair light paper dream grape horse lemon music night ocean "
    "piano queen radio sugar tiger uncle voice water yacht zebra amber brush candy daisy eagle "
    "flame ghost honey ivory jelly koala maple noble olive pearl quilt robin scarf tulip"
).split()
TASKS = ("passkey", "niah_single", "niah_multikey", "vt", "cwe")
DEPTH_TASKS = ("passkey", "niah_single", "niah_multikey", "vt")


@dataclass
class Sample:
    """One task instance: the model reads ``prompt`` and should continue with ``target``.

    ``answers`` are the reference strings of ``string_match_all``; ``units`` the number of
    filler units, ``needle_unit`` the index of the unit the needle follows (None without depth).
    """

    task: str
    prompt: str
    target: str
    answers: list[str]
    length: int
    depth: float | None
    units: int = 0
    needle_unit: int | None = None
    meta: dict = field(default_factory=dict)


def random_key(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(4))


def random_value(rng: random.Random) -> str:
    return str(rng.randint(10000, 99999))


def random_name(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(4))


def noise_units(n: int, offset: int = 0) -> list[str]:
    """The first ``n`` sentences of the repeated RULER noise paragraph."""
    return [NOISE[(offset + i) % len(NOISE)] for i in range(n)]


def string_match_all(predictions: list[str], references: list[list[str]]) -> float:
    """RULER's metric: mean over samples of the fraction of references that occur
    (case-insensitively) in the prediction, x 100."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return float("nan")
    total = 0.0
    for pred, refs in zip(predictions, references):
        pred = "".join(ch for ch in pred.strip() if ch.isprintable()).lower()
        total += sum(r.lower() in pred for r in refs) / len(refs)
    return 100.0 * total / len(predictions)


# ----------------------------------------------------------------------------------------------
# One builder per task: (rng state, number of filler units, depth) -> Sample


def _passkey(rng: random.Random, depth: float, n: int, fixed: dict) -> Sample:
    key = fixed.setdefault("key", random_value(rng))
    units = noise_units(n)
    at = round(depth * n)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    body = " ".join(units[:at] + [needle] + units[at:])
    prompt = f"Find the pass key in the text.\n{body}\nWhat is the pass key? The pass key is"
    return Sample("passkey", prompt, f" {key}", [key], 0, depth, n, at)


def _needle(key: str, value: str) -> str:
    return f"One of the special magic numbers for {key} is: {value}."


def _niah(rng: random.Random, depth: float, n: int, fixed: dict, distractors: bool) -> Sample:
    key = fixed.setdefault("key", random_key(rng))
    value = fixed.setdefault("value", random_value(rng))
    if distractors:  # every haystack line is a needle with another key (multikey_2)
        pool = fixed.setdefault("pool", [])
        while len(pool) < n:
            k = random_key(rng)
            if k != key:
                pool.append(_needle(k, random_value(rng)))
        units = pool[:n]
    else:
        units = noise_units(n)
    at = round(depth * n)
    body = "\n".join(units[:at] + [_needle(key, value)] + units[at:])
    prompt = (
        "Some special magic numbers are hidden in the text. Remember them.\n"
        f"{body}\nWhat is the special magic number for {key}? "
        f"The special magic number for {key} is:"
    )
    task = "niah_multikey" if distractors else "niah_single"
    return Sample(task, prompt, f" {value}", [value], 0, depth, n, at)


def _vt(rng: random.Random, depth: float, n: int, fixed: dict, hops: int) -> Sample:
    names = fixed.setdefault("names", [])
    while len(names) < hops + 1:
        name = random_name(rng)
        if name not in names:
            names.append(name)
    value = fixed.setdefault("value", random_value(rng))
    lines = [f"VAR {names[0]} = {value}."] + [
        f"VAR {names[i + 1]} = VAR {names[i]}." for i in range(hops)
    ]
    units = noise_units(n)
    at = round(depth * n)
    # the first assignment after `at` units, the hops at evenly spaced later positions
    positions = [at + round(i * (n - at) / (hops + 1)) for i in range(hops + 1)]
    out, j = [], 0
    for i in range(n + 1):
        while j < len(lines) and positions[j] == i:
            out.append(lines[j])
            j += 1
        if i < n:
            out.append(units[i])
    body = " ".join(out)
    prompt = f"Track the variables.\n{body}\nThe variables assigned the value {value} are:"
    return Sample("vt", prompt, " " + " ".join(names), list(names), 0, depth, n, at)


def _cwe(rng: random.Random, depth: float, n: int, fixed: dict, common: int, freq: tuple) -> Sample:
    words = fixed.setdefault("words", rng.sample(WORDS, len(WORDS)))
    order = fixed.setdefault("order", rng.random())
    freq_common, freq_rare = freq
    common_words, rare_words = words[:common], words[common:][:n]
    items = [w for w in common_words for _ in range(freq_common)]
    items += [w for w in rare_words for _ in range(freq_rare)]
    random.Random(order).shuffle(items)
    firsts = []
    for w in items:
        if w in common_words and w not in firsts:
            firsts.append(w)
    listing = " ".join(f"{i + 1}. {w}" for i, w in enumerate(items))
    prompt = f"Find the {common} most common words.\n{listing}\nThe {common} most common words are:"
    return Sample("cwe", prompt, " " + ", ".join(firsts), firsts, 0, None, n, None)


@dataclass(frozen=True)
class TaskSettings:
    """Sizes of the tiny task variants (RULER's values in brackets)."""

    vt_hops: int = 2  # [4]
    cwe_common: int = 3  # [10]
    cwe_freq_common: int = 4  # [30; 6 below 4096 tokens]
    cwe_freq_rare: int = 1  # [3; 1 below 4096 tokens]


DEFAULT_SETTINGS = TaskSettings()


def build_sample(
    task: str,
    length: int,
    depth: float | None,
    rng: random.Random,
    count: Callable[[str], int],
    settings: TaskSettings = DEFAULT_SETTINGS,
) -> Sample:
    """The longest instance of ``task`` with ``count(prompt + target) <= length``.

    ``depth`` (0..1) places the needle after ``round(depth * units)`` filler units; ignored by
    ``cwe``. Raises ValueError when even an empty haystack does not fit.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {TASKS}")
    if task in DEPTH_TASKS and (depth is None or not 0 <= depth <= 1):
        raise ValueError(f"task {task!r} needs a depth in [0, 1], got {depth!r}")
    fixed: dict = {}
    s = settings
    builders = {
        "passkey": lambda n: _passkey(rng, depth, n, fixed),
        "niah_single": lambda n: _niah(rng, depth, n, fixed, distractors=False),
        "niah_multikey": lambda n: _niah(rng, depth, n, fixed, distractors=True),
        "vt": lambda n: _vt(rng, depth, n, fixed, s.vt_hops),
        "cwe": lambda n: _cwe(
            rng, 0.0, n, fixed, s.cwe_common, (s.cwe_freq_common, s.cwe_freq_rare)
        ),
    }
    build = builders[task]
    if task == "cwe":
        fixed["words"] = rng.sample(WORDS, len(WORDS))
        # rare words are distinct vocabulary: extend the lexicon with numbered variants
        fixed["words"] += [f"{w}{i}" for i in range(2, 200) for w in WORDS]

    def fits(n: int) -> bool:
        smp = build(n)
        return count(smp.prompt + smp.target) <= length

    if not fits(0):
        raise ValueError(f"task {task!r} does not fit in {length} tokens even without haystack")
    lo, hi = 0, 1
    while fits(hi):  # exponential search for an upper bound, then bisect
        lo, hi = hi, hi * 2
        if hi > 4 * length + 8:  # a unit is >= 1 token: more units than this never fit
            raise ValueError(
                f"count() does not grow with the haystack of {task!r}: is it a tokenizer?"
            )
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    sample = build(lo)
    sample.length = count(sample.prompt + sample.target)
    return sample


def make_suite(
    tasks,
    lengths,
    depths,
    samples: int,
    count: Callable[[str], int],
    seed: int = 42,
    settings: TaskSettings = DEFAULT_SETTINGS,
) -> list[Sample]:
    """Every (task, length, depth) cell with ``samples`` instances; deterministic given ``seed``.
    Tasks without depth (``cwe``) get ``samples * len(depths)`` instances per length."""
    out = []
    for task in tasks:
        for length in lengths:
            cells = depths if task in DEPTH_TASKS else [None]
            per_cell = samples if task in DEPTH_TASKS else samples * len(depths)
            for d_i, depth in enumerate(cells):
                rng = random.Random(f"{seed}-{task}-{length}-{d_i}")
                for _ in range(per_cell):
                    out.append(build_sample(task, length, depth, rng, count, settings))
    return out


__all__ = [
    "DEPTH_TASKS",
    "NOISE",
    "TASKS",
    "Sample",
    "TaskSettings",
    "build_sample",
    "make_suite",
    "string_match_all",
]
