"""The model's save/load round trip, a few steps lowering the loss, and the end-to-end smoke run
(tokenizer + LM + every metric) with the CLI writing and re-reading a run directory."""

import json
import time

import numpy as np
import torch
from repro_mmntp.config import load_run_config
from repro_mmntp.evaluate import main as eval_main
from repro_mmntp.modeling import MMNTPForCausalLM
from repro_mmntp.pipeline import build_model, forward, model_inputs, prepare, sequences, train_lm
from repro_mmntp.train import main as train_main
from transformers import AutoModelForCausalLM


def test_save_pretrained_round_trip_through_automodel(tmp_path, tiny_model):
    _, model = tiny_model
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MMNTPForCausalLM)
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_a_few_steps_lower_the_held_out_loss_for_every_input_and_target_kind(tmp_path):
    for extra in (
        [],
        [
            "model.image_input=patches",
            "model.generation_target=latents",
            "model.attention=prefix_lm",
        ],
    ):
        cfg = load_run_config("debug", ["train.max_steps=40", *extra])
        ctx = prepare(cfg, tmp_path, log=lambda *_: None)
        s = sequences(ctx, "train", ["caption", "generation"], 0)
        b = model_inputs(ctx, s, np.random.default_rng(0).permutation(len(s))[:64], "train")
        before = float(forward(build_model(ctx, 0).eval(), b).loss)
        model, info = train_lm(ctx, s, 0, log=lambda *_: None)
        with torch.no_grad():
            after = float(forward(model, b).loss)
        assert after < before - 0.3, (extra, before, after)


def test_end_to_end_smoke_run_under_a_minute_and_eval_reproduces_it(tmp_path, capsys):
    start = time.perf_counter()
    train_main(
        [
            "--preset",
            "debug",
            "--run-dir",
            str(tmp_path / "run"),
            "--cache-dir",
            str(tmp_path / "tok"),
        ]
    )
    assert time.perf_counter() - start < 60
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    for key in (
        "recon_psnr",
        "caption_class_acc",
        "gen_agreement",
        "gen_frechet",
        "heldout_image_ce",
        "icl_acc",
    ):
        assert np.isfinite(saved[key]), key
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    capsys.readouterr()
    eval_main(["--run-dir", str(tmp_path / "run")])
    again = json.loads(capsys.readouterr().out)
    for key in ("recon_psnr", "caption_class_acc", "heldout_text_ce", "gen_agreement"):
        assert again[key] == saved[key], key
    # a finished run directory is never overwritten: one error line, status 2, before training
    assert train_main(["--preset", "debug", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a finished run" in err[0], err
