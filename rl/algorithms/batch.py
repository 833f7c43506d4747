"""What one policy update consumes: a rollout's trajectory record plus its rewards and advantages.

Rows are GRPO groups of ``group_size`` consecutive completions of one prompt (the engine's layout).
``mask_seeds`` holds one seed per inner iteration: every random mask an estimator draws in
iteration j comes from ``mask_seeds[j]``, so the "old" and "new" evaluations of an iteration see the
same masks, and a resumed run draws the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unmask.rollouts.trajectory import Trajectory


@dataclass
class RolloutBatch:
    traj: Trajectory
    rewards: torch.Tensor                     # [B] summed, weighted reward of each completion
    group_size: int
    mask_seeds: list[int]                     # one per inner iteration
    step_rewards: torch.Tensor | None = None  # [B, S'] reward of each recorded step's full prediction (MDPO)
    advantages: torch.Tensor | None = None    # [B] or [B, S'] (per recorded step), set by an advantage estimator
    keep: torch.Tensor | None = None          # [B] bool: rows that enter the loss (zero-std filtering)
    eos_id: int | None = None                 # the model's EOS (score_eos: false leaves it out of the loss)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.traj.batch_size

    def __post_init__(self):
        # scorers return CPU tensors; advantages and masks must live with the trajectory (GPU rollouts)
        device = self.traj.completion_ids.device
        self.rewards = self.rewards.to(device)
        if self.step_rewards is not None:
            self.step_rewards = self.step_rewards.to(device)
        if self.size % self.group_size:
            raise ValueError(f"the batch has {self.size} rows, not a multiple of the group size {self.group_size}")
        if self.rewards.shape != (self.size,):
            raise ValueError(f"rewards must have shape [{self.size}], got {tuple(self.rewards.shape)}")
