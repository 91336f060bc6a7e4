"""Constrained decoding: image spans hold only image codes, exactly L of them; word choices
equal a brute-force argmax; HF generate() works on the model."""

import torch
from repro_mmntp.decoding import choose_next, generate_image_codes
from repro_mmntp.vocab import CLASS_WORDS


def test_constrained_decoding_never_leaves_the_image_range_inside_an_image_span(tiny_model):
    v, model = tiny_model
    lo, hi = v.code_range
    with torch.no_grad():  # push the unconstrained argmax onto text words
        model.lm_head.weight[: v.code_start] += 5.0 * model.lm_head.weight[: v.code_start].sign()
        model.lm_head.weight[lo:hi] *= 0.01
    prompt = torch.tensor([[v.bos, v.gen, *v.encode_text("a digit seven"), v.boi]] * 12)
    free = model(input_ids=prompt).logits[:, -1].argmax(-1)
    assert not ((free >= lo) & (free < hi)).any()  # unconstrained would leave the image range
    g = torch.Generator().manual_seed(0)
    for cfg_scale, top_k in ((1.0, 0), (3.0, 4)):
        uncond = torch.tensor([[v.bos, v.gen, v.boi]] * 12)
        codes = generate_image_codes(model, prompt, (lo, hi), 16, 1.0, top_k, g, uncond, cfg_scale)
        assert codes.shape == (12, 16)
        assert ((codes >= lo) & (codes < hi)).all()
    codes = generate_image_codes(model, prompt, (lo, hi), 16, 1.0, 0, g, mask_kind="prefix_lm")
    assert codes.shape == (12, 16) and ((codes >= lo) & (codes < hi)).all()


def test_cached_sampling_equals_full_forward_sampling(tiny_model):
    """Codes sampled with the KV cache equal a loop that re-runs the whole sequence each step."""
    v, model = tiny_model
    lo, hi = v.code_range
    prompt = torch.tensor([[v.bos, v.gen, *v.encode_text("a digit two"), v.boi]] * 3)
    got = generate_image_codes(
        model, prompt, (lo, hi), 16, 1.0, 0, torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    seq = prompt
    with torch.no_grad():
        for _ in range(16):
            logits = model(input_ids=seq).logits[:, -1, lo:hi]
            pick = torch.multinomial(torch.softmax(logits, -1), 1, generator=g) + lo
            seq = torch.cat([seq, pick], 1)
    assert torch.equal(got, seq[:, prompt.shape[1] :])


def test_choose_next_is_the_argmax_over_the_candidates(tiny_model):
    v, model = tiny_model
    ids = torch.randint(0, len(v), (5, 9), generator=torch.Generator().manual_seed(1))
    batch = {
        "input_ids": ids,
        "prefix_len": torch.zeros(5, dtype=torch.long),
        "span": torch.zeros_like(ids),
    }
    pos = torch.tensor([2, 3, 4, 5, 8])
    cand = torch.tensor(v.word_ids(CLASS_WORDS))
    got = choose_next(model, batch, pos, cand)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    for i in range(5):
        scores = {int(c): float(logits[i, pos[i], c]) for c in cand}
        assert int(got[i]) == max(scores, key=scores.get)


def test_hf_generate_runs_and_matches_greedy_loop(tiny_model):
    v, model = tiny_model
    prompt = torch.tensor([[v.bos, v.gen, *v.encode_text("a digit one")]])
    out = model.generate(
        prompt,
        max_new_tokens=6,
        do_sample=False,
        attention_mask=torch.ones_like(prompt),
        pad_token_id=v.pad,
        eos_token_id=None,
    )
    seq = prompt
    with torch.no_grad():
        for _ in range(6):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(out, seq)
