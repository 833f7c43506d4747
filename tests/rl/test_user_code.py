"""A user's own reward and dataset, named by import path in a recipe, train the tiny model end to end with no
change to unmask; the reward is called as TRL calls one."""
from __future__ import annotations

import json

from unmask.rl.recipes import load_recipe
from unmask.rl.trainer import train

from ..paths import LLADA_TINY, REPO
from ..rewards import user_rewards


def test_recipe_names_reward_and_dataset_by_import_path(tmp_path):
    user_rewards.CALLS.clear()
    cfg = load_recipe(REPO / "recipes" / "tiny-cpu.yaml", [
        f"model.name_or_path={LLADA_TINY}", f"training.output_dir={tmp_path}", "training.max_steps=2",
        "data.dataset=tests.tasks.user_data:make_rows", "data.dataset_config=null",
        "algorithm.rewards=[{name: 'tests.rewards.user_rewards:records_its_call'}, "
        "{name: 'tests.rewards.user_rewards:length_bonus', weight: 0.5, args: {scale: 0.01}}]"])
    train(cfg)
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps and steps[-1]["step"] == 2
    call = user_rewards.CALLS[0]
    assert {"prompts", "completions", "completion_ids", "trainer_state", "question", "answer"} <= set(call)
    assert len(call["completions"]) == len(call["completion_ids"]) == len(call["answer"]) == 8  # 2 prompts x 4
    assert set(call["question"]) <= {"1+1?", "2+2?"}
