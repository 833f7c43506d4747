"""DiffusionGemma inside the commands: ``unmask train`` on the DiffusionGemma recipe runs end to end and resumes
exactly (full and LoRA), ``unmask sft`` trains one from scratch and resumes exactly, ``unmask eval`` scores a
checkpoint (and a LoRA run's adapter, merged once), and what a DiffusionGemma run does not support fails before any
weights load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("transformers.models.diffusion_gemma")

from unmask.rewards import completion_texts, register_reward  # noqa: E402
from unmask.rl import cli  # noqa: E402
from unmask.rl.block_diffusion_sft import random_block_diffusion  # noqa: E402
from unmask.rl.recipes import load_recipe, load_sft_recipe  # noqa: E402
from unmask.rl.sft import sft, sft_trainer  # noqa: E402
from unmask.rl.trainer import Trainer  # noqa: E402

from ..paths import REPO  # noqa: E402

RL_RECIPE = REPO / "recipes" / "demo" / "diffusion-gemma-rl.yaml"
SFT_RECIPE = REPO / "recipes" / "demo" / "diffusion-gemma-sft.yaml"
SHAPE = {"model_type": "diffusion_gemma", "canvas_length": 8, "hidden_size": 32, "intermediate_size": 64,
         "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "moe_intermediate_size": 16}
SMALL = ["rollout.num_generations=4", "rollout.max_completion_length=16",
         "rollout.block_diffusion.max_denoising_steps=4", "training.per_device_train_batch_size=8",
         "data.eval_limit=4", "logging.logging_steps=1",
         "algorithm.rewards=[{name: digit_share_for_dg_tests}]", "training.learning_rate=0.01"]


@register_reward("digit_share_for_dg_tests")
def digit_share(prompts, completions, **columns):
    """The share of digits in a completion: varies for a random model, so groups carry signal."""
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in completion_texts(completions)]


@pytest.fixture(scope="module")
def tiny_dg(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dg") / "model"
    return random_block_diffusion(SHAPE, seed=0).save_pretrained(out)


def rl_recipe(model: Path, out: Path, *overrides: str):
    return load_recipe(RL_RECIPE, [f"model.name_or_path={model}", f"training.output_dir={out}", *SMALL, *overrides])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (folder / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(folder / name))


def test_the_recipes_parse_and_name_the_composition():
    cfg = load_recipe(RL_RECIPE)
    assert (cfg.algorithm.estimator, cfg.algorithm.advantage, cfg.algorithm.loss) == ("trajectory", "group", "clipped")
    assert cfg.rollout.block_diffusion_settings()["max_new_tokens"] == 48
    assert load_sft_recipe(SFT_RECIPE).sft.init_model["model_type"] == "diffusion_gemma"


def test_unmask_train_runs_end_to_end_and_the_result_evaluates(tiny_dg, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", str(RL_RECIPE), f"model.name_or_path={tiny_dg}", f"training.output_dir={out}", *SMALL,
                     "training.max_steps=2", "training.eval_steps=2", "training.save_steps=2",
                     "model.gradient_checkpointing=true"]) == 0  # torch.utils.checkpoint around each decoder step
    assert "done:" in capsys.readouterr().out
    rows = metrics(out)
    train_row = next(r for r in rows if "reward" in r)
    for name in ("reward", "reward_std", "loss", "grad_norm", "clip_ratio/region_mean", "rollout/nfe",
                 "completions/mean_length", "rewards/digit_share_for_dg_tests/mean", "learning_rate"):
        assert name in train_row, name
    assert any("eval/reward" in r for r in rows)
    start, end = weights(tiny_dg), weights(out)
    assert end.keys() == start.keys() and any(not torch.equal(start[k], end[k]) for k in start)  # it trained

    data = REPO / "tests" / "fixtures" / "data" / "gsm8k" / "test.jsonl"
    evaluated = tmp_path / "eval"
    assert cli.main(["eval", "--model", str(out), "--benchmark", "gsm8k", "--data-files", str(data), "--limit", "2",
                     "--max-completion-length", "16", "--max-denoising-steps", "4", "--device", "cpu",
                     "--out", str(evaluated)]) == 0
    lines = [json.loads(x) for x in (evaluated / "gsm8k.samples.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(line["sampler"]["max_denoising_steps"] == 4 for line in lines)


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("lora", [False, True])
def test_resume_after_a_crash_continues_exactly(tiny_dg, tmp_path, monkeypatch, lora):
    common = ["training.max_steps=4", "training.save_steps=2", "training.save_total_limit=null",
              "training.eval_steps=100", f"model.use_peft={str(lora).lower()}", "model.lora_r=4", "model.lora_alpha=8",
              "model.lora_dropout=0.0", "algorithm.beta=0.02"]  # the KL term: a frozen copy, or adapters off
    whole = tmp_path / "whole"
    Trainer(rl_recipe(tiny_dg, whole, *common)).setup().train()

    crashed = tmp_path / "crashed"
    real_step = Trainer._optimizer_step

    def crash_at_3(self):
        if self.global_step == 2:
            raise Crash("simulated failure mid-step")
        real_step(self)

    monkeypatch.setattr(Trainer, "_optimizer_step", crash_at_3)
    with pytest.raises(Crash):
        Trainer(rl_recipe(tiny_dg, crashed, *common)).setup().train()
    monkeypatch.setattr(Trainer, "_optimizer_step", real_step)
    assert [p.name for p in sorted(crashed.glob("checkpoint-*"))] == ["checkpoint-2"]
    Trainer(rl_recipe(tiny_dg, crashed, *common, "training.resume_from=latest")).setup().train()

    a, b = metrics(whole), metrics(crashed)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert rb["reward"] == ra["reward"] and rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["kl"] == pytest.approx(ra["kl"], abs=1e-6)
    wa, wb = weights(whole / "checkpoint-4"), weights(crashed / "checkpoint-4")
    assert wa.keys() == wb.keys() and max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    w2 = weights(whole / "checkpoint-2")
    assert max(float((wa[k] - w2[k]).abs().max()) for k in wa) > 1e-4  # it trained

    if lora:  # the run's adapter evaluates through unmask eval, merged once into the shared weights
        from unmask.rollouts.diffusion_gemma import BlockDiffusionConfig
        from unmask.rollouts.diffusion_gemma_engine import BlockDiffusionEngine, load_block_diffusion
        merged, tokenizer = load_block_diffusion(tiny_dg, device="cpu", adapter=crashed)
        last = crashed / "checkpoint-4"
        trainer = Trainer(rl_recipe(tiny_dg, tmp_path / "again", *common, f"training.resume_from={last}"))
        trainer.setup()  # the policy as the run left it: base + adapter, unmerged
        config = BlockDiffusionConfig(max_new_tokens=16, max_denoising_steps=4)
        live = BlockDiffusionEngine(trainer.policy.adapter.model, tokenizer, config).rollout(["12+34="], 2, seed=3)
        loaded = BlockDiffusionEngine(merged, tokenizer, config).rollout(["12+34="], 2, seed=3)
        assert torch.equal(live.sequences, loaded.sequences)


def test_unmask_sft_trains_a_random_diffusion_gemma_and_resumes_exactly(tmp_path):
    common = [f"sft.init_model={json.dumps(SHAPE)}", "sft.completion_length=40", "training.max_steps=4",
              "training.save_steps=2", "training.save_total_limit=null", "training.per_device_train_batch_size=4",
              "logging.logging_steps=1"]
    whole = load_sft_recipe(SFT_RECIPE, [f"training.output_dir={tmp_path / 'whole'}", *common])
    assert sft_trainer(whole).__name__ == "BlockDiffusionSftTrainer"
    sft(whole, log=lambda *a: None)
    losses = [r["loss"] for r in metrics(tmp_path / "whole")]
    assert losses[-1] < losses[0]
    cut = load_sft_recipe(SFT_RECIPE, [f"training.output_dir={tmp_path / 'cut'}", *common, "training.max_steps=2"])
    sft(cut, log=lambda *a: None)
    resumed = load_sft_recipe(SFT_RECIPE, [f"training.output_dir={tmp_path / 'cut'}", *common,
                                           "training.resume_from=latest"])
    sft(resumed, log=lambda *a: None)
    assert [r["loss"] for r in metrics(tmp_path / "cut")] == pytest.approx(losses, abs=1e-6)
    wa, wb = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    from unmask.rollouts.diffusion_gemma_engine import load_block_diffusion
    model, tokenizer = load_block_diffusion(tmp_path / "whole", device="cpu")  # its tokenizer and "raw" template
    assert tokenizer.apply_chat_template([{"role": "user", "content": "1+2="}], tokenize=False) == "1+2="
    checkpointed = load_sft_recipe(SFT_RECIPE, [f"training.output_dir={tmp_path / 'gc'}", *common,
                                                "model.gradient_checkpointing=true"])
    with pytest.raises(ValueError, match="gradient_checkpointing is not available for DiffusionGemma SFT"):
        sft_trainer(checkpointed)(checkpointed)


@pytest.mark.parametrize("override, message", [
    ("algorithm.estimator=one_step", "algorithm.estimator is 'one_step'"),
    ("algorithm.step_selection=merge", "algorithm.step_selection is 'merge'"),
    ("algorithm.value_model=policy algorithm.step_selection=all", "algorithm.value_model is not available"),
    ("training.deepspeed=recipes/deepspeed/zero2.json", "training.deepspeed is not available for DiffusionGemma"),
    ("model.lora_target_modules=[q_proj,qkv]", r"LoRA targets \['qkv'\] match no linear layer"),
])
def test_unsupported_settings_fail_before_weights_load(tiny_dg, tmp_path, monkeypatch, override, message):
    import unmask.rl.training.block_diffusion_policy as policy
    monkeypatch.setattr(policy, "load_block_diffusion", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(ValueError, match=message):
        Trainer(rl_recipe(tiny_dg, tmp_path, "model.use_peft=true", *override.split()))


def test_the_python_api_trains_a_diffusion_gemma_given_in_memory(tmp_path):
    from unmask.rl.api import RLTrainer
    start = random_block_diffusion(SHAPE, seed=1)
    before = {k: v.clone() for k, v in start.model.state_dict().items()}
    rows = [{"question": f"{a}+{a}=", "answer": str(2 * a)} for a in range(4)]
    trainer = RLTrainer(start.model, digit_share, args=rl_recipe(tmp_path, tmp_path, "training.max_steps=1",
                                                                  "data.prompt_template=plain"),
                        train_dataset=rows, processing_class=start.tokenizer, log=lambda *a: None)
    metrics = trainer.train()
    assert "reward" in metrics and trainer.block_diffusion
    after = start.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the model given was trained in place
