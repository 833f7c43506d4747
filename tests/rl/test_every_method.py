"""Every registered method trains the tiny CPU recipe end to end and resumes exactly: a run stopped at its
checkpoint and resumed ends with the weights and metrics of the uninterrupted run."""
from __future__ import annotations

import pytest

from unmask.rl.algorithms.methods import METHODS
from unmask.rl.trainer import Trainer

from .test_trainer import metrics, recipe, weights

# what a method's sampler needs on the tiny recipe (32-token completions in 16-token blocks, 16 steps)
ROLLOUT = {"cj_grpo": ["rollout.diffusion_steps=5"],                               # ASS: floor(log2 32) steps
           "just_grpo": ["rollout.block_length=1", "rollout.diffusion_steps=32"],  # left to right
           "d2": ["algorithm.step_k=4"],
           "tracerl": ["algorithm.num_minibatches=2"]}                              # 2 optimizer steps per batch


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_the_tiny_recipe_and_resumes_exactly(tmp_path, name):
    common = [f"algorithm.name={name}", "algorithm.num_iterations=1", "training.max_steps=4", "training.save_steps=2",
              "training.save_total_limit=null", *ROLLOUT.get(name, [])]
    Trainer(recipe(tmp_path / "whole", *common)).setup().train()
    Trainer(recipe(tmp_path / "cut", *common, "training.max_steps=2")).setup().train()
    Trainer(recipe(tmp_path / "cut", *common, "training.resume_from=latest")).setup().train()
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    per_batch = 2 if name == "tracerl" else 1
    assert [r["step"] for r in whole] == [r["step"] for r in cut] == list(range(per_batch, 5, per_batch))
    for w, c in zip(whole, cut):
        assert c["loss"] == pytest.approx(w["loss"], abs=1e-6) and c["reward"] == w["reward"]
    a, b, start = weights(tmp_path / "whole"), weights(tmp_path / "cut"), weights(tmp_path / "whole" / "checkpoint-2")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 0  # the second half trained
