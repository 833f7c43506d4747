"""One RL step, readable top to bottom: prompts → rollouts → rewards → advantages → policy update.

    traj     = engine.rollout(prompts, num_generations=G, seed)      # rollouts/: the trajectory record
    scores   = score(prompt ids, completion ids, dataset rows)        # rewards/ (or any scorer; truncated_reward)
    (IGPO)     all-wrong groups: inpainted completions replace some   # training/inpainting.py
    batch    = RolloutBatch(traj, scores.total, G, mask_seeds)
    compute_advantages(batch)                                         # group-relative or MDPO step-wise
    update.run(batch, optimizer_step)                                 # num_iterations optimizer steps

The scorer is given once and sees token ids, so the same step serves tokenizer-free toy tasks and text rewards
(the trainer's scorer decodes them and calls the recipe's reward functions). For MDPO it also scores every recorded
step's full prediction (the step's committed tokens plus its predictions for the masked positions). The step returns
what it measured under TRL's metric names: the update's metrics, each reward's mean and standard deviation, and
the scores of the final completions.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.trajectory import Trajectory

from .inpainting import inpaint_all_wrong
from .update import PolicyUpdate


@dataclass
class Scores:
    """A scorer's verdict on N completions."""

    total: Sequence[float] | torch.Tensor  #: [N] the reward of each completion
    per_reward: dict[str, list[float | None]] = field(default_factory=dict)  #: each named reward's values
    prompts: list[str] | None = None  #: the decoded prompts and completions, for logging samples
    texts: list[str] | None = None
    notes: dict[str, list] = field(default_factory=dict)  #: per reward, what it said of each completion (a judge)


# (prompt ids of each completion [N], completion ids [N, L], the dataset row of each completion [N]) -> Scores
Scorer = Callable[[list[list[int]], torch.Tensor, list[Any]], Scores]


@dataclass
class StepResult:
    """What one RL step measured."""

    metrics: dict[str, float]  #: the update's loss metrics, reward statistics and rollout speed
    reward_stats: dict[str, float]  #: ``rewards/<name>/mean`` and ``/std`` of each reward over the final completions
    scores: Scores  #: the final completions' scores (the samples to log)
    trajectory: Trajectory | None = None  #: the rollouts' record (masked diffusion), for ``logging.log_trajectories``


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


def reward_stats(per_reward: dict[str, list[float | None]], prefix: str) -> dict[str, float]:
    """Mean and standard deviation of each reward over the completions it scored (as TRL, a None — the reward
    does not apply — is left out; NaN when it applied to none), keyed ``prefix + name + "/mean"`` and ``"/std"``."""
    out = {}
    for name, values in per_reward.items():
        x = torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float64)
        x = x[~x.isnan()]
        out[f"{prefix}{name}/mean"] = float(x.mean()) if len(x) else float("nan")
        out[f"{prefix}{name}/std"] = float(x.std()) if len(x) > 1 else (0.0 if len(x) else float("nan"))
    return out


class RLStep:
    """Rollout, score and update for one batch of prompts (see the module docstring)."""

    def __init__(self, engine: RolloutEngine, update: PolicyUpdate, score: Scorer, num_generations: int):
        self.engine, self.update, self.score, self.num_generations = engine, update, score, num_generations

    def __call__(self, prompts: Sequence, optimizer_step: Callable[[], None], seed: int,
                 rows: Sequence | None = None) -> StepResult:
        """``rows``: each prompt's dataset row, handed to the scorer with its completions (default: the prompts)."""
        settings = self.update.settings
        self.engine.adapter.model.eval()
        with self.update.backend.full_parameters():  # ZeRO-3: one gather for the whole rollout
            traj = self.engine.rollout(prompts, num_generations=self.num_generations, seed=seed)
        ids = prompt_rows(traj)
        rows = [(prompts if rows is None else rows)[i // self.num_generations] for i in range(traj.batch_size)]
        scores = self.score(ids, traj.completion_ids, rows)
        inpainted = {}
        if settings.inpaint_column is not None:  # IGPO: all-wrong groups get inpainted completions
            with self.update.backend.full_parameters():  # every rank enters (a collective), whatever it rolls out
                traj, scores, inpainted = inpaint_all_wrong(self.engine, self.score, settings, self.num_generations,
                                                            prompts, rows, traj, scores, seed, prompt_rows)
            ids = prompt_rows(traj)
        rewards = torch.as_tensor(scores.total).float().nan_to_num(0.0)
        eos_id = self.engine.adapter.eos_id
        truncated = ~(traj.completion_ids == eos_id).any(-1).cpu()  # no EOS within max_completion_length
        if settings.truncated_reward is not None:  # TraceRL counts an answer that never ends as wrong
            rewards = torch.where(truncated, torch.full_like(rewards, settings.truncated_reward), rewards)
        step_rewards = None
        if settings.advantage == "mdpo_stepwise":
            preds = step_prediction_ids(traj)
            b, s, length = preds.shape
            index = [i for i in range(b) for _ in range(s)]
            step_scores = self.score([ids[i] for i in index], preds.reshape(b * s, length), [rows[i] for i in index])
            step_rewards = torch.as_tensor(step_scores.total).float().nan_to_num(0.0).reshape(b, s)
        rng = random.Random(seed)
        batch = RolloutBatch(traj, rewards, self.num_generations,
                             mask_seeds=[rng.randrange(2 ** 31) for _ in range(settings.num_iterations)],
                             step_rewards=step_rewards, eos_id=eos_id)
        compute_advantages(batch, settings)
        metrics = self.update.run(batch, optimizer_step)
        stats = RolloutEngine.stats(traj)
        metrics.update(batch.metrics)
        metrics.update(inpainted)
        metrics.update({"rollout/nfe": float(stats.nfe), "rollout/seconds": stats.seconds,
                        "rollout/tokens_per_second": stats.tokens_per_second,
                        "completions/mean_length": stats.mean_completion_length,
                        "completions/clipped_ratio": float(truncated.float().mean())})
        return StepResult(metrics, reward_stats(scores.per_reward, "rewards/"), scores, traj)
