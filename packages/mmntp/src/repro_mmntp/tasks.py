"""Unified task representation (survey section 4): every task is one token sequence over the
one vocabulary, with a segment label per token (structure / text / image) and a loss mask.

    caption      <bos> <cap> <boi> v1..vL <eoi> a digit seven , thick , left , small <eos>
    generation   <bos> <gen> a digit seven <boi> v1..vL <eoi> <eos>
    interleaved  <bos> <boi> A <eoi> then <boi> B <eoi> <eos>          (B shows the next digit)
    icl          <bos> <boi> X1 <eoi> is dax ... <boi> Q <eoi> is wug <eos>   (k-shot, made-up words)

Images are referred to by their index in an image pool; the collate step turns a batch of
sequences into tensors, including continuous inputs (patch / encoder features) and continuous
targets (latents to regress) when the run uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .vocab import ATTRIBUTE_WORDS, CLASS_WORDS, NOVEL_TRAIN_WORDS, Vocabulary

SEG_STRUCTURE, SEG_TEXT, SEG_IMAGE = 0, 1, 2
SEGMENT_NAMES = ("structure", "text", "image")

# Caption / prompt templates; {c} class word, {thickness} {slant} {size} attribute words.
TEMPLATES = (
    "a digit {c}",
    "a digit {c} , {thickness} , {slant} , {size}",
    "a {thickness} {size} digit {c} slanted {slant}",
    "the number {c} written {thickness} and {size} , slanted {slant}",
)
CAPTION_TEMPLATES = (1, 2, 3)  # captions always carry the attributes
GENERATION_TEMPLATES = (0, 1, 2, 3)
EVAL_CAPTION_TEMPLATE = 1  # "a digit {c} , ..." : class word right after "a digit"
EVAL_GENERATION_TEMPLATE = 0


def caption_words(template: int, label: int, attrs: np.ndarray) -> list[str]:
    words = {name: pair[int(attrs[i])] for i, (name, pair) in enumerate(ATTRIBUTE_WORDS.items())}
    return TEMPLATES[template].format(c=CLASS_WORDS[int(label)], **words).split()


@dataclass
class Record:
    """One sequence before padding (lists of equal length)."""

    ids: list
    segment: list
    span: list  # image-span number (1, 2, ...) or 0
    image: list  # pool index of the image a position shows, or -1
    slot: list  # position inside that image, or -1
    prefix_len: int
    understanding: list  # True for image positions that are inputs to understand (not targets)


class SequenceBuilder:
    """Builds :class:`Record` s. ``codes``: (P, L) image codes of the pool (0..K-1)."""

    def __init__(self, vocab: Vocabulary, codes: np.ndarray):
        self.v, self.codes = vocab, codes
        self.codes_per_image = codes.shape[1]

    def _image(self, r: Record, index: int, span: int, understanding: bool) -> None:
        v = self.v
        r.ids.append(v.boi), r.segment.append(SEG_STRUCTURE)
        r.span.append(0), r.image.append(-1), r.slot.append(-1), r.understanding.append(False)
        ids = v.codes_to_ids(self.codes[index])
        r.ids.extend(ids.tolist())
        r.segment.extend([SEG_IMAGE] * len(ids))
        # block-causal masks open only the spans of input images; an image being generated
        # stays causal (its codes are the targets)
        r.span.extend([span if understanding else 0] * len(ids))
        r.image.extend([index] * len(ids))
        r.slot.extend(range(len(ids)))
        r.understanding.extend([understanding] * len(ids))
        self._tokens(r, [v.eoi], SEG_STRUCTURE)

    def _tokens(self, r: Record, ids, seg: int) -> None:
        r.ids.extend(ids)
        r.segment.extend([seg] * len(ids))
        for lst in (r.span, r.image, r.slot):
            lst.extend([0 if lst is r.span else -1] * len(ids))
        r.understanding.extend([False] * len(ids))

    def _new(self) -> Record:
        return Record([], [], [], [], [], 0, [])

    def caption(self, index: int, words: list[str]) -> Record:
        r = self._new()
        self._tokens(r, [self.v.bos, self.v.cap], SEG_STRUCTURE)
        self._image(r, index, 1, understanding=True)
        r.prefix_len = len(r.ids)  # the image is the condition
        self._tokens(r, self.v.word_ids(words), SEG_TEXT)
        self._tokens(r, [self.v.eos], SEG_STRUCTURE)
        return r

    def generation(self, index: int, words: list[str]) -> Record:
        r = self._new()
        self._tokens(r, [self.v.bos, self.v.gen], SEG_STRUCTURE)
        self._tokens(r, self.v.word_ids(words), SEG_TEXT)
        self._tokens(r, [self.v.boi], SEG_STRUCTURE)
        r.prefix_len = len(r.ids)  # the text (and <boi>) is the condition
        (
            r.ids.pop(),
            r.segment.pop(),
            r.span.pop(),
            r.image.pop(),
            r.slot.pop(),
            r.understanding.pop(),
        )
        self._image(r, index, 1, understanding=False)
        self._tokens(r, [self.v.eos], SEG_STRUCTURE)
        return r

    def interleaved(self, first: int, second: int) -> Record:
        r = self._new()
        self._tokens(r, [self.v.bos], SEG_STRUCTURE)
        self._image(r, first, 1, understanding=True)
        r.prefix_len = len(r.ids)
        self._tokens(r, self.v.word_ids(["then"]), SEG_TEXT)
        self._image(r, second, 2, understanding=False)
        self._tokens(r, [self.v.eos], SEG_STRUCTURE)
        return r

    def icl(self, demos: list[tuple[int, str]], query: int, answer: str | None) -> Record:
        """k-shot episode; ``answer=None`` stops after the query's "is" (a probe prompt)."""
        r = self._new()
        self._tokens(r, [self.v.bos], SEG_STRUCTURE)
        for n, (index, word) in enumerate(demos, start=1):
            self._image(r, index, n, understanding=True)
            self._tokens(r, self.v.word_ids(["is", word]), SEG_TEXT)
        self._image(r, query, len(demos) + 1, understanding=True)
        self._tokens(r, self.v.word_ids(["is"]), SEG_TEXT)
        r.prefix_len = len(r.ids)
        if answer is not None:
            self._tokens(r, self.v.word_ids([answer]), SEG_TEXT)
            self._tokens(r, [self.v.eos], SEG_STRUCTURE)
        return r


def icl_episode(
    labels: np.ndarray, ways: int, shots: int, words, rng
) -> tuple[list, int, str, list]:
    """Pick ``ways`` classes, ``shots`` images of each (shuffled) + one query; each class gets a
    made-up word. Returns (demos [(index, word)], query index, answer word, the episode's words)."""
    classes = rng.choice(10, ways, replace=False)
    names = list(rng.choice(words, ways, replace=False))
    demos = []
    for c, w in zip(classes, names):
        pool = np.flatnonzero(labels == c)
        demos += [(int(i), w) for i in rng.choice(pool, shots, replace=False)]
    rng.shuffle(demos)
    q = int(rng.integers(ways))
    used = {i for i, _ in demos}
    pool = [i for i in np.flatnonzero(labels == classes[q]) if i not in used]
    return demos, int(rng.choice(pool)), names[q], names


def training_records(
    builder: SequenceBuilder,
    labels,
    attributes,
    tasks,
    paraphrase: bool,
    rng,
    icl_ways: int = 2,
    icl_shots: int = 2,
    condition_dropout: float = 0.0,
):
    """Records of a task mix over a pool: one caption and one generation sequence per image, and
    as many interleaved / ICL sequences as images when those tasks are on. A fraction
    ``condition_dropout`` of generation sequences has no text (the unconditional branch of CFG)."""
    records: dict[str, list[Record]] = {t: [] for t in tasks}
    n = len(labels)
    for i in range(n):
        if "caption" in tasks:
            t = int(rng.choice(CAPTION_TEMPLATES)) if paraphrase else EVAL_CAPTION_TEMPLATE
            records["caption"].append(
                builder.caption(i, caption_words(t, labels[i], attributes[i]))
            )
        if "generation" in tasks:
            t = int(rng.choice(GENERATION_TEMPLATES)) if paraphrase else EVAL_GENERATION_TEMPLATE
            words = caption_words(t, labels[i], attributes[i])
            if condition_dropout and rng.random() < condition_dropout:
                words = []
            records["generation"].append(builder.generation(i, words))
    if "interleaved" in tasks:
        by_class = [np.flatnonzero(labels == c) for c in range(10)]
        for i in range(n):
            j = int(rng.choice(by_class[(labels[i] + 1) % 10]))
            records["interleaved"].append(builder.interleaved(i, j))
    if "icl" in tasks:
        for _ in range(n):
            demos, q, ans, _ = icl_episode(labels, icl_ways, icl_shots, NOVEL_TRAIN_WORDS, rng)
            records["icl"].append(builder.icl(demos, q, ans))
    return records


@dataclass
class SequenceSet:
    """Padded arrays of N records, shape (N, T); ``loss_mask`` marks tokens that are targets."""

    ids: np.ndarray
    segment: np.ndarray
    span: np.ndarray
    image: np.ndarray
    slot: np.ndarray
    understanding: np.ndarray
    length: np.ndarray
    prefix_len: np.ndarray

    @classmethod
    def from_records(cls, records: list[Record], pad_id: int = 0) -> SequenceSet:
        n, t = len(records), max(len(r.ids) for r in records)

        def arr(name, fill, dtype):
            out = np.full((n, t), fill, dtype=dtype)
            for i, r in enumerate(records):
                vals = getattr(r, name)
                out[i, : len(vals)] = vals
            return out

        return cls(
            ids=arr("ids", pad_id, np.int64),
            segment=arr("segment", SEG_STRUCTURE, np.int64),
            span=arr("span", 0, np.int64),
            image=arr("image", -1, np.int64),
            slot=arr("slot", -1, np.int64),
            understanding=arr("understanding", False, bool),
            length=np.array([len(r.ids) for r in records]),
            prefix_len=np.array([r.prefix_len for r in records]),
        )

    def __len__(self) -> int:
        return len(self.ids)


def collate(
    s: SequenceSet,
    idx: np.ndarray,
    continuous_inputs: bool = False,
    features: torch.Tensor | None = None,
    latent_targets: bool = False,
    latents: torch.Tensor | None = None,
) -> dict:
    """Tensors for sequences ``idx``, trimmed to their longest length.

    ``continuous_inputs``: image positions of understanding spans get ``features`` (P, L_in, d)
    of their pool image instead of code embeddings and are not targets. ``latent_targets``:
    image positions of generation spans get ``latents`` (P, L, D) as inputs and as regression
    targets (predicted from the previous position), not as CE targets.
    """
    t = int(s.length[idx].max())
    ids = torch.as_tensor(s.ids[idx, :t])
    valid = torch.as_tensor(np.arange(t)[None] < s.length[idx, None])
    segment = torch.as_tensor(s.segment[idx, :t])
    image = torch.as_tensor(s.image[idx, :t])
    slot = torch.as_tensor(s.slot[idx, :t])
    understanding = torch.as_tensor(s.understanding[idx, :t])
    target = valid.clone()
    out = {
        "input_ids": ids,
        "segment": segment,
        "span": torch.as_tensor(s.span[idx, :t]),
        "prefix_len": torch.as_tensor(s.prefix_len[idx]),
    }
    if continuous_inputs:
        use = understanding
        target &= ~use
        uniq, inverse = torch.unique(image[use], return_inverse=True)
        out["image_features"] = features[uniq]  # (M, L_in, d)
        index = torch.full_like(ids, -1)
        index[use] = inverse * features.shape[1] + slot[use]
        out["feature_index"] = index
    if latent_targets:
        gen = (segment == SEG_IMAGE) & ~understanding & valid
        target &= ~gen
        uniq, inverse = torch.unique(image[gen], return_inverse=True)
        out["latent_inputs"] = latents[uniq]
        index = torch.full_like(ids, -1)
        index[gen] = inverse * latents.shape[1] + slot[gen]
        out["latent_index"] = index
        # position p regresses the latent shown at p+1
        nxt = torch.cat([index[:, 1:], torch.full_like(index[:, :1], -1)], 1)
        out["latent_target_index"] = nxt
    labels = ids.clone()
    labels[~target] = -100
    out["labels"] = labels
    return out
