"""Metrics of a trained MMNTP system (spec B.5); ``repro-mmntp-eval`` (``evaluate.py``) runs
them on a saved run."""

from __future__ import annotations

import numpy as np
import torch

from .decoding import choose_next, generate_image_codes, generate_latents
from .metrics import codebook_stats, frechet_distance, novelty, psnr, unique_rows
from .pipeline import Context, held_out_losses, model_inputs, sequences
from .tasks import (
    EVAL_CAPTION_TEMPLATE,
    TEMPLATES,
    SequenceBuilder,
    SequenceSet,
    caption_words,
    icl_episode,
)
from .vocab import ATTRIBUTE_WORDS, CLASS_WORDS, NOVEL_TEST_WORDS


@torch.no_grad()
def tokenizer_metrics(ctx: Context) -> dict:
    tok, test = ctx.tokenizer, ctx.data.test
    recon = tok.decode(torch.as_tensor(ctx.test_codes)).clamp(0, 1).numpy()
    mse = float(((recon - test.images) ** 2).mean())
    stats = codebook_stats(ctx.test_codes, tok.num_codes)
    return {
        "recon_mse": mse,
        "recon_psnr": psnr(mse),
        "code_usage": stats["code_usage"],
        "code_perplexity": stats["code_perplexity"],
        "classifier_acc_real": ctx.classifier.accuracy(test.images, test.labels),
        "classifier_acc_recon": ctx.classifier.accuracy(recon, test.labels),
        "tokenizer_images_per_second": ctx.tokenizer_info.get("images_per_second", float("nan")),
        "_recon": recon,
    }


@torch.no_grad()
def caption_metrics(ctx: Context, model) -> dict:
    """Class word chosen among the 10 after "a digit"; then each attribute among its 2 words."""
    test, v = ctx.data.test, ctx.vocab
    builder = SequenceBuilder(v, ctx.test_codes)
    records = [
        builder.caption(i, caption_words(EVAL_CAPTION_TEMPLATE, test.labels[i], test.attributes[i]))
        for i in range(len(test.labels))
    ]
    s = SequenceSet.from_records(records)
    b = model_inputs(ctx, s, np.arange(len(s)), "test")
    words = TEMPLATES[EVAL_CAPTION_TEMPLATE].split()
    start = torch.as_tensor(s.prefix_len)
    slots = [("class", words.index("{c}"), CLASS_WORDS)] + [
        (name, words.index("{" + name + "}"), pair) for name, pair in ATTRIBUTE_WORDS.items()
    ]
    correct = {}
    for name, offset, options in slots:
        pos = start + offset  # index of the slot's token; predicted from the position before
        cand = torch.as_tensor(v.word_ids(options))
        pick = choose_next(model, b, pos - 1, cand, ctx.cfg.model.attention)
        rows = torch.arange(len(pos))
        correct[name] = (pick == b["input_ids"][rows, pos]).numpy()
        b["input_ids"][rows, pos] = pick  # later slots condition on the model's own choices
    attrs = np.stack([correct[n] for n in ATTRIBUTE_WORDS], 1)
    return {
        "caption_class_acc": float(correct["class"].mean()),
        "caption_attribute_acc": float(attrs.mean()),
        **{f"caption_{n}_acc": float(correct[n].mean()) for n in ATTRIBUTE_WORDS},
        "caption_exact_match": float((correct["class"] & attrs.all(1)).mean()),
    }


@torch.no_grad()
def generation_metrics(
    ctx: Context, model, seed: int, cfg_scale: float = 1.0, tag: str = ""
) -> dict:
    """Class-conditional generation from "a digit <c>": classifier agreement, unique samples,
    novelty against the training codes, Frechet distance to the real test images."""
    t, v, tok = ctx.cfg.task, ctx.vocab, ctx.tokenizer
    n = t.samples_per_class
    labels = np.repeat(np.arange(10), n)
    prompt = torch.as_tensor(
        [[v.bos, v.gen, *v.encode_text(f"a digit {CLASS_WORDS[c]}"), v.boi] for c in labels]
    )
    uncond = torch.as_tensor([[v.bos, v.gen, v.boi]] * len(labels))
    gen = torch.Generator().manual_seed(seed)
    kind = ctx.cfg.model.attention
    if ctx.latent_targets:
        z = generate_latents(model, prompt, tok.codes_per_image, kind)
        images = tok.decode_latents(z).clamp(0, 1).numpy()
        keys = np.round(images, 3).reshape(len(images), -1)
        uniq, nov = unique_rows(keys), float("nan")
    else:
        ids = generate_image_codes(
            model,
            prompt,
            v.code_range,
            tok.codes_per_image,
            t.temperature,
            t.top_k,
            gen,
            uncond,
            cfg_scale,
            kind,
        )
        codes = ids - v.code_start
        images = tok.decode(codes).clamp(0, 1).numpy()
        uniq, nov = unique_rows(codes.numpy()), novelty(codes.numpy(), ctx.train_codes)
    real = ctx.classifier.features(ctx.data.test.images)
    fake = ctx.classifier.features(images)
    return {
        f"gen_agreement{tag}": ctx.classifier.accuracy(images, labels),
        f"gen_unique{tag}": uniq / len(labels),
        f"gen_novelty{tag}": nov,
        f"gen_frechet{tag}": frechet_distance(fake, real),
        f"_samples{tag}": images,
    }


@torch.no_grad()
def icl_metrics(ctx: Context, model, seed: int) -> dict:
    """k-shot, n-way probe on held-out images with label words never seen in training."""
    t, v, test = ctx.cfg.task, ctx.vocab, ctx.data.test
    rng = np.random.default_rng(seed + 7)
    builder = SequenceBuilder(v, ctx.test_codes)
    records, answers, cands = [], [], []
    for _ in range(t.icl_probes):
        demos, q, ans, words = icl_episode(
            test.labels, t.icl_ways, t.icl_shots, NOVEL_TEST_WORDS, rng
        )
        records.append(builder.icl(demos, q, None))
        answers.append(v.index[ans])
        cands.append(v.word_ids(words))
    s = SequenceSet.from_records(records)
    b = model_inputs(ctx, s, np.arange(len(s)), "test")
    pick = choose_next(
        model, b, torch.as_tensor(s.length - 1), torch.as_tensor(cands), ctx.cfg.model.attention
    )
    return {
        "icl_acc": float((pick.numpy() == np.array(answers)).mean()),
        "icl_chance": 1.0 / t.icl_ways,
    }


def evaluate_system(ctx: Context, caption_model, generation_model, seed: int) -> dict:
    """All metrics; private keys (leading underscore) hold image arrays for the figures."""
    out = tokenizer_metrics(ctx)
    out.update(caption_metrics(ctx, caption_model))
    out.update(generation_metrics(ctx, generation_model, seed))
    if ctx.cfg.task.cfg_scale != 1.0 and not ctx.latent_targets:
        out.update(generation_metrics(ctx, generation_model, seed, ctx.cfg.task.cfg_scale, "_cfg"))
    out.update(icl_metrics(ctx, caption_model, seed))
    for name, model, tasks in (
        ("caption", caption_model, ["caption"]),
        ("generation", generation_model, ["generation"]),
    ):
        losses = held_out_losses(ctx, model, sequences(ctx, "test", tasks, seed=1234))
        out.update({f"{name}_{k}": val for k, val in losses.items()})
    out["heldout_text_ce"] = out["caption_heldout_text_ce"]
    out["heldout_image_ce"] = out["generation_heldout_image_ce"]
    return out
