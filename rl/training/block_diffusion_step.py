"""One RL step for DiffusionGemma, as ``loop.RLStep`` is for the masked-diffusion families:

    record   = engine.rollout(prompts, num_generations=G, seed)       # rollouts/diffusion_gemma_engine.py
    scores   = score(prompt ids, completion ids, dataset rows)        # the same Scorer contract as RLStep's
    batch    = BlockDiffusionBatch(record, scores.total, G, mask_seeds)
    compute_advantages(batch)                                         # group-relative
    update.run(batch, optimizer_step)                                 # block_diffusion_update.py
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rollouts.diffusion_gemma_engine import BlockDiffusionEngine

from .block_diffusion_update import BlockDiffusionBatch, BlockDiffusionUpdate
from .loop import Scorer, StepResult, reward_stats


class BlockDiffusionStep:
    def __init__(self, engine: BlockDiffusionEngine, update: BlockDiffusionUpdate, score: Scorer,
                 num_generations: int):
        self.engine, self.update, self.score, self.num_generations = engine, update, score, num_generations

    def __call__(self, prompts: Sequence, optimizer_step: Callable[[], None], seed: int,
                 rows: Sequence | None = None) -> StepResult:
        settings, g = self.update.settings, self.num_generations
        self.engine.model.eval()
        record = self.engine.rollout(prompts, num_generations=g, seed=seed)
        rows = [(prompts if rows is None else rows)[i // g] for i in range(record.sequences.shape[0])]
        prompt_ids = [r[m].tolist() for r, m in zip(record.prompt_ids, record.prompt_mask.bool())]
        completions = self.engine.completions(record)
        width = max(len(c) for c in completions)
        padded = torch.tensor([c + [self.engine.config.pad_token_id] * (width - len(c)) for c in completions])
        scores = self.score(prompt_ids, padded, rows)
        rewards = torch.as_tensor(scores.total).float().nan_to_num(0.0)
        ended = set(self.engine.config.eos_token_id)
        truncated = torch.tensor([not c or c[-1] not in ended for c in completions])
        if settings.truncated_reward is not None:
            rewards = torch.where(truncated, torch.full_like(rewards, settings.truncated_reward), rewards)
        rng = random.Random(seed)
        seeds = [rng.randrange(2 ** 31) for _ in range(settings.num_iterations)]  # each iteration's step selection
        batch = BlockDiffusionBatch(record, rewards, g, seeds)
        compute_advantages(batch, settings)
        metrics = self.update.run(batch, optimizer_step)
        metrics.update(batch.metrics)
        metrics.update({"rollout/nfe": float(record.nfe), "completions/clipped_ratio": float(truncated.float().mean()),
                        "completions/mean_length": sum(map(len, completions)) / len(completions)})
        return StepResult(metrics, reward_stats(scores.per_reward, "rewards/"), scores)
