"""The TRL-shaped Python API builds the trainer a recipe builds: the same run from Python objects (a reward
function, a ``datasets.Dataset``) and from a recipe naming them by import path gives the same metrics."""
from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest
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
    with pytest.raises(TypeError, match=r"model must be a Hub id or a local directory, got object; save a model"):
        RLTrainer(model=object(), reward_funcs=[length_bonus], args=args)
    with pytest.raises(ValueError, match=r"reward_funcs is empty"):
        RLTrainer(model=LLADA_TINY, reward_funcs=[], args=args)
    with pytest.raises(ValueError, match=r"train_dataset has no column question\|prompt\|problem"):
        RLTrainer(model=LLADA_TINY, reward_funcs=[length_bonus], args={"data": {"prompt_template": "plain"}},
                  train_dataset=[{"text": "no question here"}])
    with pytest.raises(TypeError, match=r"args must be an RLConfig, a recipe dict or a recipe path, got int"):
        RLTrainer(model=LLADA_TINY, reward_funcs=[length_bonus], args=3)


def test_importing_the_api_name_is_lazy():
    code = ("import sys, unmask; assert 'torch' not in sys.modules; "
            "from unmask import RLTrainer; assert 'torch' in sys.modules; print(RLTrainer.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "unmask.rl.api"
