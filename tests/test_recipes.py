"""Every shipped recipe loads and validates, says how to launch it on its first line, and names
DeepSpeed configs that exist; the tiny CPU recipes also pass the trainer's preflight (no weights).
Hub recipes are only parsed: constructing their Trainer would download datasets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from unmask.rl.recipes import load_recipe
from unmask.rl.trainer import Trainer

from .paths import REPO

RECIPES_DIR = REPO / "recipes"
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))
TINY = [p for p in RECIPES if p.name.startswith("tiny-cpu")]
ALGORITHM_RECIPES = {  # file-name prefix -> algorithm.name
    "d1-": "diffu_grpo", "diffu-grpo-": "diffu_grpo", "gdpo-": "gdpo", "mdpo-": "mdpo", "cj-grpo-": "cj_grpo",
}


def ids(paths):
    return [p.name for p in paths]


def header(path: Path) -> list[str]:
    """The leading comment block."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def launch_overrides(line: str, path: Path) -> list[str] | None:
    """The KEY=VALUE words after the recipe path in a header line that launches it, else None."""
    target, words = f"recipes/{path.name}", line.lstrip("#").split()
    if target not in words:
        return None
    return [w for w in words[words.index(target) + 1:] if "=" in w]


def test_recipes_are_found():
    names = {p.name for p in RECIPES}
    assert {"tiny-cpu.yaml", "tiny-cpu-lora.yaml", "tiny-cpu-cj-grpo.yaml", "d1-llada-gsm8k.yaml",
            "gdpo-llada-gsm8k.yaml", "mdpo-llada-math.yaml", "cj-grpo-llada-gsm8k.yaml",
            "diffu-grpo-llada-math.yaml", "llada-gsm8k-lora-24gb.yaml", "llada-gsm8k-zero3-8gpu.yaml",
            "dream-gsm8k.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=ids(RECIPES))
def test_recipe_loads_and_its_first_line_launches_it(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# "), f"{path.name}: the first line must be a comment with the launch command"
    target = f"recipes/{path.name}"
    assert (f"unmask train {target}" in first
            or ("deepspeed" in first and f"--module unmask.rl.train {target}" in first)), \
        f"{path.name}: first line {first!r} does not launch this file"
    cfg = load_recipe(path)
    cfg.validate()
    if "deepspeed" in first:
        assert cfg.training.deepspeed is not None, \
            f"{path.name} is launched with deepspeed but sets no training.deepspeed"


# tiny-cpu.yaml (not ours to edit) suggests `algorithm.name=cj_grpo`, but it sets diffusion_steps: 16 and
# ASS needs floor(log2 32) = 5, so that override alone fails validation.


@pytest.mark.parametrize("path", RECIPES, ids=ids(RECIPES))
def test_header_launch_lines_give_valid_recipes(path):
    """Every launch line in the header (the override example, alternatives) loads with its overrides."""
    found = 0
    for line in header(path)[1:]:
        overrides = launch_overrides(line, path)
        if overrides is not None:
            load_recipe(path, overrides)
            found += 1
    assert found, f"{path.name}: no override example in the header"


@pytest.mark.parametrize("path", RECIPES, ids=ids(RECIPES))
def test_deepspeed_configs_exist_and_are_json(path):
    cfg = load_recipe(path)
    configs = [cfg.training.deepspeed] if cfg.training.deepspeed else []
    for line in header(path):  # alternative launch lines may name a config too
        overrides = launch_overrides(line, path) or []
        configs += [o.split("=", 1)[1] for o in overrides if o.startswith("training.deepspeed=") and
                    o.split("=", 1)[1] not in ("null", "")]
    for name in configs:
        ds = REPO / name
        assert ds.is_file(), f"{path.name}: training.deepspeed {name} does not exist"
        json.loads(ds.read_text(encoding="utf-8"))


def test_deepspeed_configs_leave_batch_sizes_and_clipping_to_the_recipe():
    configs = sorted((RECIPES_DIR / "deepspeed").glob("*.json"))
    assert {p.name for p in configs} >= {"zero2.json", "zero3.json", "zero3-offload.json"}
    stages = {}
    for p in configs:
        ds = json.loads(p.read_text(encoding="utf-8"))
        assert ds["bf16"]["enabled"] is True
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                    "gradient_clipping", "optimizer", "scheduler"):
            assert key not in ds, f"{p.name}: {key} comes from the recipe, not the DeepSpeed config"
        assert "auto" not in json.dumps(ds), f"{p.name}: DeepSpeed itself does not resolve 'auto'"
        stages[p.name] = ds["zero_optimization"]
    assert stages["zero2.json"]["stage"] == 2
    assert stages["zero3.json"]["stage"] == 3 and stages["zero3.json"]["stage3_gather_16bit_weights_on_model_save"]
    offload = stages["zero3-offload.json"]
    assert offload["offload_optimizer"]["device"] == offload["offload_param"]["device"] == "cpu"


def test_each_algorithm_recipe_runs_the_method_its_name_says():
    checked = 0
    for path in RECIPES:
        for prefix, method in ALGORITHM_RECIPES.items():
            if path.name.startswith(prefix):
                assert load_recipe(path).algorithm.name == method, path.name
                checked += 1
    assert checked >= 5
    assert load_recipe(RECIPES_DIR / "tiny-cpu-cj-grpo.yaml").algorithm.name == "cj_grpo"


def test_recipes_write_to_distinct_output_dirs():
    dirs = [load_recipe(p).training.output_dir for p in RECIPES]
    assert len(set(dirs)) == len(dirs), dirs


def test_d1_recipe_has_d1_values():
    cfg = load_recipe(RECIPES_DIR / "d1-llada-gsm8k.yaml")
    m, d, r, a, t = cfg.model, cfg.data, cfg.rollout, cfg.algorithm, cfg.training
    assert (m.name_or_path, m.use_peft, m.lora_r, m.lora_alpha, m.lora_dropout) == \
        ("GSAI-ML/LLaDA-8B-Instruct", True, 128, 64, 0.05)
    assert (d.dataset, d.dataset_config, d.split, d.prompt_template) == ("openai/gsm8k", "main", "train", "d1")
    assert (d.eval_dataset, d.eval_dataset_config, d.eval_split) == ("openai/gsm8k", "main", "test")
    assert d.eval_limit and t.eval_steps
    assert (r.max_completion_length, r.block_length, r.diffusion_steps, r.num_generations, r.temperature) == \
        (256, 32, 128, 6, 0.9)
    assert (a.name, a.epsilon, a.beta, a.num_iterations, a.p_mask_prompt) == ("diffu_grpo", 0.5, 0.04, 4, 0.15)
    assert {s.name: s.weight for s in a.rewards} == {
        "gsm8k_correct": 2.0, "answer_is_int": 0.5, "xml_format_strict": 0.5, "xml_format": 0.5, "xml_count": 1.0}
    assert (t.learning_rate, t.lr_scheduler_type, t.adam_beta2, t.weight_decay, t.max_grad_norm) == \
        (3e-6, "constant_with_warmup", 0.99, 0.1, 0.2)
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.save_steps) == (6, 2, 100)
    first_lines = "\n".join(header(RECIPES_DIR / "d1-llada-gsm8k.yaml"))
    assert "deepspeed --num_gpus" in first_lines and "recipes/deepspeed/zero2.json" in first_lines


def test_method_specific_values():
    cj = load_recipe(RECIPES_DIR / "cj-grpo-llada-gsm8k.yaml")
    assert (cj.rollout.schedule, cj.rollout.eoser, cj.rollout.diffusion_steps) == ("ass", True, 8)  # floor(log2 256)
    mdpo = load_recipe(RECIPES_DIR / "mdpo-llada-math.yaml")
    assert (mdpo.rollout.block_length, mdpo.rollout.temperature, mdpo.algorithm.beta, mdpo.training.learning_rate,
            mdpo.data.prompt_template, mdpo.algorithm.rewards[0].name) == (
        None, 0.4, 0.02, 7e-7, "boxed", "math_correct")
    dream = load_recipe(RECIPES_DIR / "dream-gsm8k.yaml")
    assert (dream.model.lora_target_modules, dream.rollout.remasking, dream.rollout.temperature,
            dream.rollout.top_p) == (None, None, 0.2, 0.95)
    small = load_recipe(RECIPES_DIR / "llada-gsm8k-lora-24gb.yaml")
    assert small.model.gradient_checkpointing and small.model.use_peft and small.model.dtype == "bfloat16"
    zero3 = load_recipe(RECIPES_DIR / "llada-gsm8k-zero3-8gpu.yaml")
    assert not zero3.model.use_peft and zero3.training.deepspeed == "recipes/deepspeed/zero3.json"
    assert any("--hostfile" in line for line in header(RECIPES_DIR / "llada-gsm8k-zero3-8gpu.yaml"))


@pytest.mark.parametrize("path", TINY, ids=ids(TINY))
def test_tiny_recipes_pass_the_trainer_preflight(path, monkeypatch):
    monkeypatch.chdir(REPO)  # their model path is relative to the repository root

    def refuse(*args, **kwargs):
        raise AssertionError("preflight loaded a model")
    monkeypatch.setattr("unmask.rl.training.policy.load_model", refuse)
    cfg = load_recipe(path)
    trainer = Trainer(cfg, log=lambda *a: None)
    assert trainer.rows and trainer.max_steps == cfg.training.max_steps
    if cfg.model.use_peft:
        assert trainer.lora_targets
    if cfg.algorithm.name == "cj_grpo":
        L = cfg.rollout.max_completion_length
        assert cfg.rollout.diffusion_steps == L.bit_length() - 1  # ASS: floor(log2 L)
