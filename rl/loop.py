"""One RL step, readable top to bottom: prompts → rollouts → rewards → advantages → policy update.

    traj     = engine.rollout(prompts, num_generations=G, seed)      # rollouts/: the trajectory record
    rewards  = score(prompt rows, completion ids)                     # rewards/ (or any scorer)
    batch    = RolloutBatch(traj, rewards, G, mask_seeds)
    compute_advantages(batch)                                         # group-relative or MDPO step-wise
    update.run(batch, optimizer_step)                                 # num_iterations optimizer steps

The scorer sees token ids, so the same step serves tokenizer-free toy tasks and text rewards (the
trainer's scorer decodes them and calls the recipe's reward functions). For MDPO it also scores every recorded step's full
prediction (the step's committed tokens plus its predictions for the masked positions).
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from rollouts.engine import RolloutEngine
from rollouts.trajectory import Trajectory

from .advantages import compute_advantages
from .batch import RolloutBatch
from .update import PolicyUpdate

# (prompt ids of each completion [N], completion ids [N, L], the trajectory row of each completion [N])
#   -> rewards [N]; the row index lets a scorer look up that row's dataset columns
Scorer = Callable[[list[list[int]], torch.Tensor, list[int]], torch.Tensor]


def step_prediction_ids(traj: Trajectory) -> torch.Tensor:
    """[B, S', L] the full prediction of every recorded step: its predictions where it made them,
    the state's tokens (committed, or mask) elsewhere."""
    preds = traj.extras["step_predictions"].long()
    steps = traj.extras["prediction_steps"].long()
    plen = traj.prompt_ids.shape[1]
    states = torch.stack([traj.state(steps[:, j])[:, plen:] for j in range(steps.shape[1])], 1)
    return torch.where(preds >= 0, preds, states)


def prompt_rows(traj: Trajectory) -> list[list[int]]:
    return [row[mask.bool()].tolist() for row, mask in zip(traj.prompt_ids, traj.prompt_mask)]


class RLStep:
    """Rollout, score and update for one batch of prompts (see the module docstring)."""

    def __init__(self, engine: RolloutEngine, update: PolicyUpdate, score: Scorer, num_generations: int):
        self.engine, self.update, self.score, self.num_generations = engine, update, score, num_generations

    def __call__(self, prompts: Sequence, optimizer_step: Callable[[], None], seed: int) -> dict[str, float]:
        settings = self.update.settings
        self.engine.adapter.model.eval()
        with self.update.backend.full_parameters():  # ZeRO-3: one gather for the whole rollout
            traj = self.engine.rollout(prompts, num_generations=self.num_generations, seed=seed)
        rows = prompt_rows(traj)
        rewards = self.score(rows, traj.completion_ids, list(range(traj.batch_size))).float().nan_to_num(0.0)
        step_rewards = None
        if settings.advantage == "mdpo_stepwise":
            preds = step_prediction_ids(traj)
            b, s, length = preds.shape
            index = [i for i in range(b) for _ in range(s)]
            step_rewards = self.score([rows[i] for i in index], preds.reshape(b * s, length), index)
            step_rewards = step_rewards.float().nan_to_num(0.0).reshape(b, s)
        rng = random.Random(seed)
        batch = RolloutBatch(traj, rewards, self.num_generations,
                             mask_seeds=[rng.randrange(2 ** 31) for _ in range(settings.num_iterations)],
                             step_rewards=step_rewards)
        compute_advantages(batch, settings)
        metrics = self.update.run(batch, optimizer_step)
        stats = RolloutEngine.stats(traj)
        metrics.update(batch.metrics)
        metrics.update({"rollout/nfe": float(stats.nfe), "rollout/seconds": stats.seconds,
                        "rollout/tokens_per_second": stats.tokens_per_second,
                        "completions/mean_length": stats.mean_completion_length})
        return metrics
