"""The trainer end to end on the tiny CPU recipe: runs from the command line, resumes exactly after a
crash, is invariant to gradient accumulation, and rejects bad recipes before loading any weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unmask.rewards import completion_texts, register_reward
from unmask.rl import cli
from unmask.rl.config import ConfigError
from unmask.rl.recipes import load_recipe
from unmask.rl.trainer import Trainer

from ..paths import LLADA_TINY, REPO

RECIPE = REPO / "recipes" / "tiny-cpu.yaml"
FIXTURE = str(LLADA_TINY)


@register_reward("digit_fraction_for_tests")
def digit_fraction(prompts, completions, **columns):
    """Fraction of digits in the completion: varies even for a random model, so every group has signal."""
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in completion_texts(completions)]


CALLS: list[tuple[list[str], list[list[int]], object]] = []


@register_reward("records_its_arguments_for_tests")
def record_arguments(prompts, completions, completion_ids=None, trainer_state=None, **columns):
    """Scores 0 and keeps what it was called with."""
    CALLS.append((list(completions), completion_ids, trainer_state))
    return [0.0] * len(completions)


def recipe(tmp_path: Path, *overrides: str):
    return load_recipe(RECIPE, [f"model.name_or_path={FIXTURE}", f"training.output_dir={tmp_path}",
                                "algorithm.rewards=[{name: digit_fraction_for_tests}]", *overrides])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The policy's weights in a checkpoint folder or a run's output_dir: at its root (Hugging Face layout)."""
    lora = (checkpoint / "adapter_model.safetensors").exists()
    return load_file(str(checkpoint / ("adapter_model.safetensors" if lora else "model.safetensors")))


def test_unmask_train_runs_the_tiny_recipe_end_to_end(tmp_path, capsys):
    assert cli.main(["train", str(RECIPE), f"model.name_or_path={FIXTURE}", f"training.output_dir={tmp_path}"]) == 0
    assert "done:" in capsys.readouterr().out
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [2, 4]
    for name in ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "clip_ratio/region_mean",
                 "kl", "entropy", "loss", "grad_norm", "rollout/nfe", "rollout/tokens_per_second", "rollout/seconds",
                 "rewards/gsm8k_correct/mean", "rewards/xml_format/std", "learning_rate", "epoch"):
        assert name in rows[-1], name
    assert [p.name for p in sorted(tmp_path.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-4"]
    from unmask.rollouts.adapter import load_model
    for folder in (tmp_path / "checkpoint-4", tmp_path):  # the last checkpoint, and the final model in output_dir
        reloaded = load_model(folder, tokenizer="bytes", device="cpu")  # the model at the folder's root
        assert torch.equal(reloaded.model.state_dict()["model.transformer.ff_out.weight"],
                           weights(tmp_path / "checkpoint-4")["model.transformer.ff_out.weight"])
    assert (tmp_path / "recipe.yaml").read_text() == (tmp_path / "checkpoint-4" / "recipe.yaml").read_text()
    assert not (tmp_path / "trainer_state.json").exists()  # output_dir holds the model, not a checkpoint


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("lora", [False, True])
def test_resume_after_a_crash_continues_exactly(tmp_path, monkeypatch, lora):
    common = ["training.max_steps=6", "training.save_steps=2", "training.save_total_limit=null",
              f"model.use_peft={str(lora).lower()}", "model.lora_r=4", "model.lora_alpha=8"]
    whole = tmp_path / "whole"
    Trainer(recipe(whole, *common)).setup().train()

    crashed = tmp_path / "crashed"
    real_step = Trainer._optimizer_step

    def crash_at_3(self):
        if self.global_step == 2:  # the first update of the second rollout batch, after checkpoint-2
            raise Crash("simulated failure mid-step")
        real_step(self)

    monkeypatch.setattr(Trainer, "_optimizer_step", crash_at_3)
    with pytest.raises(Crash):
        Trainer(recipe(crashed, *common)).setup().train()
    monkeypatch.setattr(Trainer, "_optimizer_step", real_step)
    assert [p.name for p in sorted(crashed.glob("checkpoint-*"))] == ["checkpoint-2"]
    Trainer(recipe(crashed, *common, "training.resume_from=latest")).setup().train()

    if lora:  # the adapter checkpoint decodes through `unmask generate --adapter`
        assert cli.main(["generate", "--model", FIXTURE, "--tokenizer", "bytes", "--device", "cpu", "--adapter",
                         str(crashed / "checkpoint-6"), "--prompt", "1+1=",
                         "--max-completion-length", "8", "--diffusion-steps", "8"]) == 0
    a, b = metrics(whole), metrics(crashed)
    assert [r["step"] for r in b] == [2, 4, 6]
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6) and rb["reward"] == ra["reward"]
        for key in ("grad_norm", "entropy"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5), key
    wa, wb = weights(whole / "checkpoint-6"), weights(crashed / "checkpoint-6")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    wf = weights(crashed)  # the final model (or adapter) in output_dir is the last checkpoint's
    assert wf.keys() == wb.keys() and all(torch.equal(wf[k], wb[k]) for k in wf)
    assert max(float((wa[k] - weights(whole / "checkpoint-2")[k]).abs().max()) for k in wa) > 1e-4  # it trained


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_gradient_accumulation_invariance(tmp_path, loss_type):
    """One optimizer step on 8 completions: 8 x 1, 4 x 2 and 2 x 4 (micro-batch x accumulation) agree."""
    results = []
    for per_device, accumulation in ((8, 1), (4, 2), (2, 4)):
        out = tmp_path / f"{per_device}x{accumulation}"
        cfg = recipe(out, "training.max_steps=1", "training.save_steps=1", "algorithm.num_iterations=1",
                     f"algorithm.loss_type={loss_type}", "rollout.num_generations=2",
                     f"training.per_device_train_batch_size={per_device}",
                     f"training.gradient_accumulation_steps={accumulation}", "training.max_grad_norm=0",
                     "training.adam_epsilon=1e-6")
        Trainer(cfg).setup().train()
        results.append(weights(out / "checkpoint-1"))
    # the gradients agree to float rounding; Adam's g / (sqrt(v) + eps) turns a rounding difference in a
    # gradient near eps into a difference of a whole step (measured: a 4e-9 gradient, 5e-10 apart, moved a
    # weight 2.8e-5 apart at eps 1e-8), so eps is raised to 1e-6 and the weights are compared to 1% of one
    # step's size (lr = 1e-3)
    for other in results[1:]:
        assert max(float((results[0][k] - other[k]).abs().max()) for k in other) < 1e-5


def _no_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the recipe was checked")
    monkeypatch.setattr("unmask.rl.training.policy.load_model", refuse)


def test_bad_recipes_fail_before_any_model_is_loaded(tmp_path, monkeypatch):
    _no_weights(monkeypatch)
    with pytest.raises(ValueError, match=r"model\.lora_target_modules \['o_proj'\] match no linear layer.*attn_out"):
        Trainer(recipe(tmp_path, "model.use_peft=true", "model.lora_target_modules=[q_proj, o_proj]"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "What is 1 + 1?", "gold": "2"}\n')
    with pytest.raises(ValueError,
                       match=r"data\.dataset 'json' has no column question\|prompt\|problem, answer\|solution"):
        Trainer(recipe(tmp_path, "data.dataset=json", f"data.data_files={bad}",
                       "algorithm.rewards=[{name: gsm8k_correct}]"))
    bad.write_text('{"question": "What is 1 + 1?", "answer": "2"}\n')
    with pytest.raises(ValueError, match=r"has no column solution \(needed by .*algorithm\.inpaint_column\)"):
        Trainer(recipe(tmp_path, "data.dataset=json", f"data.data_files={bad}", "algorithm.name=igpo",
                       "algorithm.inpaint_column=solution", "algorithm.rewards=[{name: gsm8k_correct}]"))
    with pytest.raises(ValueError,
                       match=r"model\.load_in_4bit: .*(CUDA GPU|bitsandbytes|CPU).* Set model\.load_in_4bit: false"):
        Trainer(recipe(tmp_path, "model.use_peft=true", "model.load_in_4bit=true", "model.device=cpu"))
    with pytest.raises(ConfigError, match=r"rollout\.num_generations \(3\) must divide .* = 8"):
        recipe(tmp_path, "rollout.num_generations=3")
    with pytest.raises(ConfigError, match=r"algorithm\.name 'grpo_d1' is not a registered RL method"):
        recipe(tmp_path, "algorithm.name=grpo_d1")
    with pytest.raises(ValueError, match=r"algorithm\.rewards\[0\]: 'gsm8k' is not a registered reward; "
                                         r"did you mean 'gsm8k_correct"):
        Trainer(recipe(tmp_path, "algorithm.rewards=[{name: gsm8k}]"))
    with pytest.raises(ValueError, match=r"algorithm\.rewards\[1\]: reward 'length_penalty' has no argument 'max_len' "
                                         r"\(did you mean 'max_completion_length'\?\); its arguments are "
                                         r"max_completion_length, penalty, closing, eos, unit"):
        Trainer(recipe(tmp_path,
                       "algorithm.rewards=[{name: xml_format}, {name: length_penalty, args: {max_len: 32}}]"))
    with pytest.raises(ValueError, match=r"algorithm\.rewards\[0\]: reward 'length_penalty' needs the argument "
                                         r"max_completion_length in its args"):
        Trainer(recipe(tmp_path, "algorithm.rewards=[{name: length_penalty}]"))
    with pytest.raises(ValueError,
                       match=r"algorithm\.rewards\[0\]: reward 'xml_format' takes no arguments, got penalty"):
        Trainer(recipe(tmp_path, "algorithm.rewards=[{name: xml_format, args: {penalty: 1}}]"))
    with pytest.raises(ValueError,
                       match=r"data\.prompt_template 'd2' is not a registered prompt template; did you mean 'd1'"):
        Trainer(recipe(tmp_path, "data.prompt_template=d2"))


def test_rewards_get_completion_ids_and_trainer_state_as_trl_passes_them(tmp_path):
    from transformers import TrainerState
    CALLS.clear()
    cfg = recipe(tmp_path, "algorithm.rewards=[{name: records_its_arguments_for_tests}, "
                           "{name: length_penalty, args: {max_completion_length: 32, closing: null}}]")
    trainer = Trainer(cfg).setup()
    trainer.train()
    adapter, eos = trainer.policy.adapter, trainer.policy.adapter.eos_id
    assert len(CALLS) == 2  # two rollout batches of 8 completions, 2 optimizer steps each
    for texts, ids, _ in CALLS:  # TRL's conversational completions; ids up to and including the first EOS
        assert len(ids) == len(texts) == 8
        for text, row in zip(texts, ids):
            assert (row[-1] == eos or len(row) == 32) and eos not in row[:-1]
            assert text == [{"role": "assistant", "content": trainer.template.cut(adapter.decode_completion(row))}]
    states = [state for _, _, state in CALLS]
    assert all(isinstance(s, TrainerState) for s in states)
    n = len(trainer.rows)  # 2 prompts per rollout batch, taken before it is scored
    assert [(s.global_step, s.max_steps, s.epoch) for s in states] == [(0, 4, 2 / n), (2, 4, 4 / n)]
    truncated = [-sum(len(row) == 32 for row in ids) / 8 for _, ids, _ in CALLS]
    assert min(truncated) < 0  # the random model runs past the canvas: length_penalty is not always 0
    assert [r["rewards/length_penalty/mean"] for r in metrics(tmp_path)] == pytest.approx(truncated)


def test_eval_keeps_the_best_checkpoint_and_stops_early(tmp_path):
    cfg = recipe(tmp_path, "data.eval_dataset=synthetic_addition", "data.eval_dataset_config='2'", "data.eval_limit=4",
                 "training.eval_steps=2", "training.max_steps=12", "training.save_steps=100",
                 "training.save_total_limit=1", "training.early_stopping_patience=1", "training.learning_rate=0.05")
    trainer = Trainer(cfg).setup()
    trainer.train()
    evals = [r for r in metrics(tmp_path) if "eval/reward" in r]
    assert len(evals) >= 2 and trainer.global_step < 12          # stopped before max_steps
    assert evals[-1]["eval/reward"] <= max(r["eval/reward"] for r in evals[:-1])  # no improvement, then stop
    best = max(evals, key=lambda r: (r["eval/reward"], -r["step"]))
    kept = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert f"checkpoint-{best['step']}" in kept and f"checkpoint-{trainer.global_step}" in kept
    state = json.loads((tmp_path / f"checkpoint-{trainer.global_step}" / "trainer_state.json").read_text())
    assert state["best_checkpoint"].endswith(f"checkpoint-{best['step']}")


def test_lora_wraps_every_family_target_but_not_the_output_head(tmp_path):
    from unmask.rl.training.policy import build_policy
    cfg = recipe(tmp_path, "model.use_peft=true", "model.lora_r=4")
    trainer = Trainer(cfg)
    lines = []
    policy = build_policy(cfg.model, cfg.training, 0.0, trainer.lora_targets, lines.append)
    wrapped = {n for n, m in policy.adapter.model.named_modules() if hasattr(m, "lora_A")}
    assert len(wrapped) == 14 and not any(n.endswith("transformer.ff_out") for n in wrapped)  # 7 per block
    assert "14 linear layers wrapped" in lines[0]
    assert all(p.requires_grad == ("lora_" in n) for n, p in policy.adapter.model.named_parameters())


def test_wandb_offline_run_and_missing_wandb(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed: JSONL only, and it says so
    Trainer(recipe(tmp_path / "a", "training.max_steps=2", "logging.report_to=[jsonl, wandb]")).setup().train()
    assert "wandb is not installed" in capsys.readouterr().out and (tmp_path / "a" / "metrics.jsonl").is_file()
    monkeypatch.delitem(sys.modules, "wandb")
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "b"
    Trainer(recipe(out, "training.max_steps=2", "logging.report_to=[jsonl, wandb]")).setup().train()
    run_id = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["run_id"]
    assert list((out / "wandb").glob(f"offline-run-*-{run_id}"))  # the run id is kept for resuming


def test_periodic_benchmark_evaluation_goes_through_the_eval_harness(tmp_path):
    gsm8k = REPO / "tests" / "fixtures" / "data" / "gsm8k" / "test.jsonl"
    cfg = recipe(tmp_path, "data.eval_benchmark=gsm8k", f"data.eval_data_files={gsm8k}", "data.eval_limit=3",
                 "training.eval_steps=2", "training.max_steps=2")
    Trainer(cfg).setup().train()
    assert any("eval/gsm8k/gsm8k_correct" in r for r in metrics(tmp_path))
    lines = (tmp_path / "eval" / "step-2" / "gsm8k.samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["id"] == "gsm8k/0"
    assert json.loads((tmp_path / "eval" / "step-2" / "gsm8k.summary.json").read_text())["scored"] == 3
