"""Sequence builder, attention masks, leak-free targets and per-segment losses."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from repro_mmntp.masks import build_mask, leak_free_targets
from repro_mmntp.objectives import segment_losses
from repro_mmntp.tasks import (
    SEG_IMAGE,
    SEGMENT_NAMES,
    SequenceBuilder,
    SequenceSet,
    caption_words,
    collate,
    training_records,
)
from repro_mmntp.vocab import CLASS_WORDS, Vocabulary

K, L = 16, 16


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    n = 60
    codes = rng.integers(0, K, (n, L))
    labels = np.arange(n) % 10
    attrs = rng.integers(0, 2, (n, 3))
    return codes, labels, attrs


def all_records(pool):
    codes, labels, attrs = pool
    v = Vocabulary(K)
    tasks = ["caption", "generation", "interleaved", "icl"]
    recs = training_records(
        SequenceBuilder(v, codes),
        labels,
        attrs,
        tasks,
        True,
        np.random.default_rng(1),
        condition_dropout=0.2,
    )
    return v, recs


def test_sequence_ids_in_range_and_image_codes_exactly_between_boi_and_eoi(pool):
    codes = pool[0]
    v, recs = all_records(pool)
    lo, hi = v.code_range
    for task, rs in recs.items():
        for r in rs:
            ids = np.array(r.ids)
            assert ids.min() >= 0 and ids.max() < len(v), task
            boi, eoi = np.flatnonzero(ids == v.boi), np.flatnonzero(ids == v.eoi)
            assert len(boi) == len(eoi) >= 1
            is_code = (ids >= lo) & (ids < hi)
            inside = np.zeros(len(ids), bool)
            for b, e in zip(boi, eoi):
                assert e - b - 1 == L  # exactly the image's number of codes
                inside[b + 1 : e] = True
                image = np.array(r.image)[b + 1]
                assert np.array_equal(ids[b + 1 : e] - lo, codes[image])
            assert np.array_equal(is_code, inside)  # codes only inside spans, nothing else inside
            assert np.array_equal(np.array(r.segment) == SEG_IMAGE, inside)


def test_caption_and_generation_templates_round_trip_through_decode(pool):
    codes = pool[0]
    v = Vocabulary(K)
    b = SequenceBuilder(v, codes)
    words = caption_words(1, 7, np.array([1, 0, 1]))
    assert " ".join(words) == "a digit seven , thick , left , large"
    cap = v.decode(b.caption(3, words).ids)
    img = " ".join(f"v{c}" for c in codes[3])
    assert cap == f"<bos> <cap> <boi> {img} <eoi> a digit seven , thick , left , large <eos>"
    gen = v.decode(b.generation(3, ["a", "digit", CLASS_WORDS[2]]).ids)
    assert gen == f"<bos> <gen> a digit two <boi> {img} <eoi> <eos>"


def test_mask_builder_matrices_are_exact_on_a_six_token_toy():
    # tokens: <bos> <boi> v v <eoi> w ; prefix = 4 tokens; image span = positions 2, 3
    span = torch.tensor([[0, 0, 1, 1, 0, 0]])
    prefix = torch.tensor([4])
    causal = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    prefix_lm = torch.tensor(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    block = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(build_mask("causal", prefix, span)[0, 0], causal)
    assert torch.equal(build_mask("prefix_lm", prefix, span)[0, 0], prefix_lm)
    assert torch.equal(build_mask("block_causal", prefix, span)[0, 0], block)
    with pytest.raises(ValueError, match="allowed"):
        build_mask("bidirectional", prefix, span)


def test_leak_free_targets_drop_every_target_the_mask_reveals():
    span = torch.tensor([[0, 0, 1, 1, 0, 0]])
    prefix = torch.tensor([4])
    assert leak_free_targets(build_mask("causal", prefix, span))[0].tolist() == [1, 1, 1, 1, 1, 0]
    # prefix-LM: positions 0..2 see their next token inside the prefix
    assert leak_free_targets(build_mask("prefix_lm", prefix, span))[0].tolist() == [
        0,
        0,
        0,
        1,
        1,
        0,
    ]
    # block-causal: position 2 sees 3 inside the image span
    assert leak_free_targets(build_mask("block_causal", prefix, span))[0].tolist() == [
        1,
        1,
        0,
        1,
        1,
        0,
    ]


def test_per_segment_losses_sum_to_the_total_and_match_cross_entropy(pool):
    v, recs = all_records(pool)
    s = SequenceSet.from_records(recs["caption"][:8] + recs["generation"][:8])
    b = collate(s, np.arange(16))
    torch.manual_seed(0)
    logits = torch.randn(*b["input_ids"].shape, len(v), dtype=torch.float64)
    out = segment_losses(logits, b["labels"], b["segment"])
    total = sum(out["contribution"][n] for n in SEGMENT_NAMES)
    assert abs(float(total) - float(out["total"])) < 1e-6
    shifted = F.pad(b["labels"][:, 1:], (0, 1), value=-100)
    ref = F.cross_entropy(logits.view(-1, len(v)), shifted.reshape(-1), ignore_index=-100)
    assert abs(float(out["total"]) - float(ref)) < 1e-9
    # the image segment's mean is the CE over the targets that are image codes (a loop)
    ce, n = 0.0, 0
    for i in range(16):
        for t in range(b["input_ids"].shape[1] - 1):
            y = int(b["labels"][i, t + 1])
            if y != -100 and int(b["segment"][i, t + 1]) == SEG_IMAGE:
                ce -= float(torch.log_softmax(logits[i, t], -1)[y])
                n += 1
    assert abs(float(out["mean"]["image"]) - ce / n) < 1e-9


def test_collate_places_continuous_inputs_and_latent_targets_at_their_image_positions(pool):
    v, recs = all_records(pool)
    s = SequenceSet.from_records([recs["caption"][0], recs["generation"][1]])
    features = torch.randn(60, 16, 4)
    latents = torch.randn(60, 16, 5)
    b = collate(s, np.arange(2), True, features, True, latents)
    ids = b["input_ids"]
    cap_img = (ids[0] >= v.code_start).nonzero().flatten()
    gen_img = (ids[1] >= v.code_start).nonzero().flatten()
    # caption image: continuous inputs, not targets
    assert (b["feature_index"][0, cap_img] >= 0).all() and (b["labels"][0, cap_img] == -100).all()
    got = b["image_features"].flatten(0, 1)[b["feature_index"][0, cap_img]]
    torch.testing.assert_close(got, features[0])
    # generation image: latent inputs; the position before each latent regresses it
    got = b["latent_inputs"].flatten(0, 1)[b["latent_index"][1, gen_img]]
    torch.testing.assert_close(got, latents[1])
    tgt = b["latent_target_index"][1, gen_img - 1]
    torch.testing.assert_close(b["latent_inputs"].flatten(0, 1)[tgt], latents[1])
    assert (b["labels"][1, gen_img] == -100).all()
