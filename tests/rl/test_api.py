"""The TRL-shaped Python API builds the trainer a recipe builds: the same run from Python objects (a reward
function, a ``datasets.Dataset``) and from a recipe naming them by import path gives the same metrics."""
from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest
import torch
import yaml

from unmask import RLConfig, RLTrainer
from unmask.rl.recipes import load_recipe
from unmask.rl.trainer import train

from ..paths import LLADA_TINY, REPO
from ..rewards.user_rewards import length_bonus
from ..tasks.user_data import ROWS

RECIPE = REPO / "recipes" / "tiny-cpu.yaml"
TIMING = ("second", "time")  # wall-clock metrics differ between any two runs


def steps(out) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k.replace("tests.rewards.user_rewards:", ""): v for k, v in r.items() if not any(t in k for t in TIMING)}
            for r in rows]


def test_python_api_and_recipe_give_the_same_run(tmp_path):
    train(load_recipe(RECIPE, [f"model.name_or_path={LLADA_TINY}", f"training.output_dir={tmp_path / 'recipe'}",
                               "training.max_steps=2", "data.dataset=tests.tasks.user_data:ROWS",
                               "data.dataset_config=null",
                               "algorithm.rewards=[{name: 'tests.rewards.user_rewards:length_bonus'}]"]))
    args = yaml.safe_load(RECIPE.read_text())
    args["training"].update(output_dir=str(tmp_path / "api"), max_steps=2)
    trainer = RLTrainer(model=LLADA_TINY, reward_funcs=[length_bonus], args=args,
                        train_dataset=datasets.Dataset.from_list(ROWS))
    last = trainer.train()
    run = steps(tmp_path / "api")
    assert run == steps(tmp_path / "recipe") and run[-1]["step"] == 2 and last["reward"] == run[-1]["reward"]
    saved = load_recipe(tmp_path / "api" / "recipe.yaml")  # the saved recipe names the function by import path
    assert [r.name for r in saved.algorithm.rewards] == ["tests.rewards.user_rewards:length_bonus"]
    assert isinstance(trainer.cfg, RLConfig) and trainer.cfg.model.name_or_path == str(LLADA_TINY)


def test_api_refuses_what_it_cannot_use_before_loading_weights(tmp_path):
    args = RLConfig()
    with pytest.raises(TypeError, match=r"model must be a native dream or llada model .* got object"):
        RLTrainer(model=object(), reward_funcs=[length_bonus], args=args)
    with pytest.raises(ValueError, match=r"reward_funcs is empty"):
        RLTrainer(model=LLADA_TINY, reward_funcs=[], args=args)
    with pytest.raises(ValueError, match=r"train_dataset has no column question\|prompt\|problem"):
        RLTrainer(model=LLADA_TINY, reward_funcs=[length_bonus], args={"data": {"prompt_template": "plain"}},
                  train_dataset=[{"text": "no question here"}])
    with pytest.raises(TypeError, match=r"args must be an RLConfig, a recipe dict or a recipe path, got int"):
        RLTrainer(model=LLADA_TINY, reward_funcs=[length_bonus], args=3)


def api_args(out, **settings) -> dict:
    args = yaml.safe_load(RECIPE.read_text())
    args["training"].update(output_dir=str(out), max_steps=2)
    args["model"].update(settings)
    return args


def test_a_model_object_trains_as_its_directory_does(tmp_path):
    from transformers import AutoModel

    from unmask.rollouts.adapter import load_model
    RLTrainer(model=LLADA_TINY, reward_funcs=[length_bonus], args=api_args(tmp_path / "path"),
              train_dataset=ROWS).train()
    model = AutoModel.from_pretrained(LLADA_TINY)  # a transformers model, after import unmask
    tokenizer = load_model(LLADA_TINY, device="cpu", tokenizer="bytes").tokenizer
    trainer = RLTrainer(model=model, reward_funcs=[length_bonus], args=api_args(tmp_path / "object"),
                        train_dataset=ROWS, processing_class=tokenizer)
    trainer.train()
    assert steps(tmp_path / "object") == steps(tmp_path / "path")
    assert trainer.policy.adapter.model is model  # trained in place, as TRL does
    assert load_recipe(tmp_path / "object" / "recipe.yaml").model.name_or_path == str(LLADA_TINY)


def test_a_peft_model_trains_its_adapter_only(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file

    from unmask.rollouts.adapter import load_model
    lm = load_model(LLADA_TINY, device="cpu", tokenizer="bytes")
    frozen = {k: v.clone() for k, v in lm.model.state_dict().items()}
    peft = get_peft_model(lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainer = RLTrainer(model=peft, reward_funcs=[length_bonus], args=api_args(tmp_path),
                        train_dataset=ROWS, processing_class=lm.tokenizer)
    trainer.train()
    saved = load_recipe(tmp_path / "recipe.yaml").model
    assert (saved.use_peft, saved.lora_r, saved.lora_target_modules) == (True, 4, ["q_proj", "v_proj"])
    base = peft.get_base_model().state_dict()
    assert all(torch.equal(base[k.replace(".weight", ".base_layer.weight")] if k not in base else base[k], v)
               for k, v in frozen.items())  # the base weights never moved
    adapter = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert isinstance(peft, PeftModel)


def test_rlconfig_is_trls_flat_config_with_the_methods_defaults():
    import dataclasses

    from unmask.rl.config import ConfigError, RecipeConfig, recipe_from_dict
    from unmask.rl.config.flat import SECTION_OF
    fields = [g.name for f in dataclasses.fields(RecipeConfig) for g in dataclasses.fields(f.default_factory())]
    assert len(set(fields)) == len(fields) == len(SECTION_OF) + 1  # every name in one section (name: method=)
    args = RLConfig(method="gdpo", learning_rate=3e-6, num_generations=4, per_device_train_batch_size=4,
                    max_completion_length=64, output_dir="out/x")
    nested = recipe_from_dict({"algorithm": {"name": "gdpo"}, "training": {"learning_rate": 3e-6, "output_dir": "out/x",
                               "per_device_train_batch_size": 4}, "rollout": {"num_generations": 4,
                                                                              "max_completion_length": 64}})
    assert vars(args) == vars(nested)  # the same recipe a YAML file with these keys gives
    assert (args.elbo_nodes, args.beta, args.num_iterations, args.importance_sampling_level) == (3, 0.0, 1, "sequence")
    assert (args.learning_rate, args.method, args.num_generations) == (3e-6, "gdpo", 4)
    args.beta, args.method = 0.01, "mdpo"
    assert (args.algorithm.beta, args.algorithm.name) == (0.01, "mdpo")
    assert isinstance(RLConfig(), type(nested)) and RLConfig().algorithm.name == "diffu_grpo"
    with pytest.raises(ConfigError, match=r"unknown setting 'learnig_rate'; did you mean 'learning_rate'\?"):
        RLConfig(learnig_rate=1e-6)
    with pytest.raises(ConfigError, match=r"algorithm.beta: expected float, got str"):
        RLConfig(beta="high")
    with pytest.raises(AttributeError, match=r"RLConfig has no setting 'nothing'"):
        _ = args.nothing
    trainer_args = RLTrainer.__init__.__code__.co_varnames
    assert "processing_class" in trainer_args  # TRL's name for the tokenizer


def test_importing_the_api_name_is_lazy():
    code = ("import sys, unmask; assert 'torch' not in sys.modules; "
            "from unmask import RLConfig; assert 'torch' not in sys.modules; "
            "from unmask import RLTrainer; assert 'torch' in sys.modules; print(RLTrainer.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "unmask.rl.api"
