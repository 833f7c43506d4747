"""The demo pipeline (rl/demo.py): SFT a tiny LLaDA from scratch, RL it, evaluate — the README's first command.

Training is chaotic and float rounding differs between CPUs and thread counts, so no test here pins where
SFT ends up. The pipeline test checks what a run writes; the learning tests start RL from a checked-in SFT
model (``tests/fixtures/demo-sft``: the demo's SFT stage, seed 0, 2,500 steps — the same bytes on every
machine) and assert only what held, with room to spare, for every seed and thread count measured
(README, "How much these numbers vary"): RL on the right reward raises held-out accuracy, and RL on the
negated reward lowers it, so a sign error or a dead update fails.
"""
from __future__ import annotations

import json

import pytest
import torch

from tests.paths import FIXTURES
from unmask.rl.demo import run_demo

DEMO_SFT = FIXTURES / "demo-sft"
RL_50 = ["training.max_steps=50", "training.eval_steps=25", "training.save_steps=50"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    summary = run_demo(out, ["training.max_steps=4", "training.eval_steps=2", "training.save_steps=4",
                             "logging.logging_steps=1"], sft_steps=40, seed=0, log=lines.append)
    return out, summary, lines


def test_demo_writes_summary_curve_and_a_loadable_checkpoint(pipeline):
    out, s, lines = pipeline
    assert s["accuracy_random"] == 0.0, lines  # a random model never writes a well-formed right sum
    assert 0.0 <= s["accuracy_sft"] <= 1.0 and 0.0 <= s["accuracy_rl"] <= 1.0
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    md = (out / "summary.md").read_text()
    assert "after SFT (40 steps)" in md and f"{s['accuracy_rl']:.3f}" in md
    header, *rows = (out / "curve.csv").read_text().splitlines()
    assert header == "step,train_reward,heldout_accuracy" and [r.split(",")[0] for r in rows] == list("01234")
    png = (out / "curve.png").read_bytes()  # matplotlib is in the dev extra
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[16:24] == (640).to_bytes(4, "big") + (400).to_bytes(4, "big")
    assert [step for step, _ in s["accuracy_curve"]] == [0, 2, 4]
    # one grader: the demo's accuracies are the trainer's evaluation (the RL reward, answer_tag_exact) of the model
    assert s["accuracy_curve"][-1][1] == s["accuracy_rl"], s
    assert [step for step, _ in s["reward_curve"]] == [1, 2, 3, 4]
    from unmask.rollouts.adapter import load_model
    for model in (out / "sft", out / "rl", out / "rl" / "checkpoint-4"):  # each run's final model, a checkpoint's
        assert load_model(model, device="cpu").model.num_parameters() > 0
    assert (out / "sft" / "checkpoint-40").is_dir() and (out / "sft" / "init" / "config.json").is_file()
    final, last = (out / "rl" / "model.safetensors", out / "rl" / "checkpoint-4" / "model.safetensors")
    assert final.read_bytes() == last.read_bytes()


def test_demo_refuses_to_overwrite_a_run(pipeline):
    out, _, _ = pipeline
    with pytest.raises(ValueError, match="already holds a run"):
        run_demo(out, sft_steps=1)


def test_demo_refuses_an_sft_model_folder_without_a_config(tmp_path):
    with pytest.raises(ValueError, match="no config.json there"):
        run_demo(tmp_path / "out", sft_model=tmp_path)


def rl_from_checked_in_sft(out, seed: int, threads: int | None, overrides=()) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return run_demo(out, [*RL_50, *overrides], seed=seed, sft_model=DEMO_SFT, log=lambda line: None)
    finally:
        torch.set_num_threads(before)


def check_rl_raises_accuracy(s: dict) -> None:
    assert s["sft_model"] == str(DEMO_SFT) and s["sft_steps"] is None
    assert 0.2 <= s["accuracy_sft"] <= 0.6, s  # the checked-in model is a weak start on every seed's questions
    assert s["accuracy_rl"] >= s["accuracy_sft"] + 0.07, s
    assert tuple(s["accuracy_curve"][-1]) == (50, s["accuracy_rl"]), s  # one grader, as in the pipeline test


def test_rl_raises_held_out_accuracy_of_the_checked_in_sft_model(tmp_path):
    check_rl_raises_accuracy(rl_from_checked_in_sft(tmp_path, seed=0, threads=None))


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rl_raises_held_out_accuracy_for_every_seed_and_thread_count(tmp_path, seed, threads):
    check_rl_raises_accuracy(rl_from_checked_in_sft(tmp_path, seed=seed, threads=threads))


def test_rl_on_the_negated_reward_lowers_held_out_accuracy(tmp_path):
    s = rl_from_checked_in_sft(tmp_path, seed=0, threads=None,
                               overrides=["algorithm.rewards=[{name: answer_tag_exact, weight: -1.0}]"])
    assert s["accuracy_rl"] <= s["accuracy_sft"] - 0.1, s
