"""``unmask sft RECIPE``: the tiny SFT recipe end to end (loss values to 4 decimals), exact resume, LoRA
SFT, and bad recipes refused before any weights load; every SFT recipe (recipes/sft/, the bench's and the demo's)
validates."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from unmask.rl import cli
from unmask.rl.config import ConfigError
from unmask.rl.recipes import load_sft_recipe
from unmask.rl.sft import SftTrainer

from ..paths import LLADA_TINY, REPO

RECIPE = REPO / "recipes" / "sft" / "tiny-cpu-sft.yaml"
SFT_RECIPES = sorted((REPO / "recipes" / "sft").glob("*.yaml")) + [REPO / "recipes" / d / "sft.yaml"
                                                                   for d in ("bench", "demo")]


def recipe(out, *overrides):
    return load_sft_recipe(RECIPE, [f"model.name_or_path={LLADA_TINY}", f"training.output_dir={out}", *overrides])


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_unmask_sft_runs_the_tiny_recipe(tmp_path, capsys):
    assert cli.main(["sft", str(RECIPE), f"model.name_or_path={LLADA_TINY}", f"training.output_dir={tmp_path}"]) == 0
    assert "done:" in capsys.readouterr().out
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [round(r["loss"], 4) for r in rows] == [7.6719, 7.2413, 7.108, 4.4735, 4.907, 5.1015]
    assert [round(r["eval/loss"], 4) for r in rows if "eval/loss" in r] == [6.266, 5.0249]
    # transformers' constant_with_warmup: step s of the 2-step warm-up runs at s / 2 of the rate, then constant
    assert [r["learning_rate"] for r in rows[:3]] == pytest.approx([0.0, 1.5e-3, 3e-3])
    assert all(r["grad_norm"] > 0 for r in rows)
    from unmask.rollouts.adapter import load_model
    model = load_model(tmp_path / "checkpoint-6", tokenizer="bytes", device="cpu")  # the model at its root
    start = load_file(str(LLADA_TINY / "model.safetensors"))
    assert max(float((model.model.state_dict()[k] - start[k]).abs().max()) for k in start) > 1e-3  # it trained
    final = load_model(tmp_path, tokenizer="bytes", device="cpu").model.state_dict()  # the final model: output_dir
    assert all(torch.equal(final[k], v) for k, v in model.model.state_dict().items())


def test_resume_continues_exactly(tmp_path):
    SftTrainer(recipe(tmp_path / "whole")).setup().train()
    shutil.copytree(tmp_path / "whole" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    SftTrainer(recipe(tmp_path / "resumed", "training.resume_from=latest")).setup().train()
    a, b = metrics(tmp_path / "whole"), metrics(tmp_path / "resumed")
    assert [r["step"] for r in b] == [4, 5, 6]
    for ra, rb in zip(a[3:], b):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6) and rb["epoch"] == ra["epoch"]
    wa = load_file(str(tmp_path / "whole" / "checkpoint-6" / "model.safetensors"))
    wb = load_file(str(tmp_path / "resumed" / "checkpoint-6" / "model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6


def test_lora_sft_trains_an_adapter_that_evaluates_unmerged(tmp_path):
    SftTrainer(recipe(tmp_path, "model.use_peft=true", "model.lora_r=4", "model.lora_alpha=8",
                      "training.max_steps=2", "training.save_steps=2", "training.eval_steps=null")).setup().train()
    adapter_dir = tmp_path / "checkpoint-2"  # the adapter at the checkpoint's root, and the final one in output_dir
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    assert load_file(str(tmp_path / "adapter_model.safetensors")).keys() == weights.keys()
    assert weights and all("lora_" in k for k in weights)
    assert any(float(v.abs().max()) > 0 for k, v in weights.items() if "lora_B" in k)  # B starts at 0: it moved
    from unmask.rollouts.adapter import load_model
    merged = load_model(LLADA_TINY, tokenizer="bytes", device="cpu", adapter=adapter_dir)
    kept = load_model(LLADA_TINY, tokenizer="bytes", device="cpu", adapter=adapter_dir, merge_adapter=False)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(merged.model(ids), kept.model(ids), atol=1e-5)


def test_bad_sft_recipes_fail_before_any_weights_load(tmp_path, monkeypatch):
    import unmask.rl.training.policy as policy
    monkeypatch.setattr(policy, "load_model", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(ValueError, match=r"has no column solution .*sft\.completion_column"):
        SftTrainer(recipe(tmp_path, "sft.completion_column=solution"))
    with pytest.raises(ValueError, match=r"model\.load_in_4bit: .*Set model\.load_in_4bit: false"):
        SftTrainer(recipe(tmp_path, "model.use_peft=true", "model.load_in_4bit=true"))
    with pytest.raises(ConfigError, match=r"training\.deepspeed: sft\.init_model writes its random start model"):
        recipe(tmp_path, "training.deepspeed=recipes/deepspeed/zero2.json", "sft.init_model={d_model: 32}")
    with pytest.raises(ConfigError, match=r"sft\.completion_lenght.*completion_length"):
        recipe(tmp_path, "sft.completion_lenght=8")
    with pytest.raises(ConfigError, match=r"sft\.completion_length"):
        recipe(tmp_path, "sft.completion_length=0")


@pytest.mark.parametrize("path", SFT_RECIPES, ids=[str(p.relative_to(REPO / "recipes")) for p in SFT_RECIPES])
def test_sft_recipes_validate_and_their_first_line_launches_them(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# unmask sft {path.relative_to(REPO).as_posix()}")
    load_sft_recipe(path)
