"""A user's own reward and dataset, named by import path in a recipe, train the tiny model end to end with no
change to unmask; rewards are called as TRL calls them on a conversational dataset, so TRL's own work as they are."""
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
        "{name: 'tests.rewards.user_rewards:length_bonus', weight: 0.5, args: {scale: 0.01}}, "
        "{name: 'trl.rewards:think_format_reward'}]"])
    train(cfg)
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps and steps[-1]["step"] == 2
    call = user_rewards.CALLS[0]
    assert {"prompts", "completions", "completion_ids", "trainer_state", "question", "answer"} <= set(call)
    assert len(call["completions"]) == len(call["completion_ids"]) == len(call["answer"]) == 8  # 2 prompts x 4
    assert set(call["question"]) <= {"1+1?", "2+2?"}
    assert call["prompts"][0][-1] == {"role": "user", "content": call["question"][0]}  # the template's messages
    assert all(c[0]["role"] == "assistant" and isinstance(c[0]["content"], str) for c in call["completions"])
    assert steps[-1]["rewards/trl.rewards:think_format_reward/mean"] == 0.0  # ran; a random model writes no <think>
