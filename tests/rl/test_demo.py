"""The demo pipeline (rl/demo.py) shortened: SFT a tiny LLaDA from scratch, RL it, and check that RL
raises held-out accuracy above the SFT model's — the claim the README's first command makes."""
from __future__ import annotations

import json

import pytest

from rl.demo import run_demo
from rl.plot import read_png_rgb


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    summary = run_demo(out, ["training.max_steps=50", "training.eval_steps=25", "training.save_steps=50"],
                       sft_steps=2500, seed=0, log=lines.append)
    return out, summary, lines


def test_rl_raises_held_out_accuracy_above_sft(demo):
    _, s, lines = demo
    assert s["accuracy_random"] == 0.0
    assert 0.05 <= s["accuracy_sft"] <= 0.9, lines  # a weak start, not a finished model
    assert s["accuracy_rl"] >= s["accuracy_sft"] + 0.1, lines


def test_demo_writes_summary_curve_and_a_loadable_checkpoint(demo):
    out, s, _ = demo
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    md = (out / "summary.md").read_text()
    assert "after SFT (2500 steps)" in md and f"{s['accuracy_rl']:.3f}" in md
    width, height, _ = read_png_rgb(out / "curve.png")
    assert (width, height) == (640, 400)
    assert [step for step, _ in s["accuracy_curve"]] == [0, 25, 50]
    assert len(s["reward_curve"]) == 50 // 5
    from rollouts.adapter import load_model
    assert load_model(out / "rl" / "checkpoint-50" / "model", device="cpu").model.num_parameters() > 0


def test_demo_refuses_to_overwrite_a_run(demo, tmp_path):
    out, _, _ = demo
    with pytest.raises(ValueError, match="already holds a run"):
        run_demo(out, sft_steps=1)
