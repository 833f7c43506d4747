"""The optimizer and learning-rate schedule every trainer uses (RL and SFT): AdamW from the recipe's
``training`` section, linear warm-up, then constant, cosine or linear decay to ``max_steps``."""
from __future__ import annotations

import math

import torch


def make_optimizer(params, t) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay,
                             betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon)


def lr_factor(step: int, t, max_steps: int) -> float:
    """Multiplier of ``t.learning_rate`` at optimizer step ``step`` (a ``LambdaLR`` lambda)."""
    if step < t.warmup_steps:
        return (step + 1) / (t.warmup_steps + 1)
    progress = (step - t.warmup_steps) / max(1, max_steps - t.warmup_steps)
    if t.lr_scheduler_type == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if t.lr_scheduler_type == "linear":
        return max(0.0, 1 - progress)
    return 1.0


def make_schedule(optimizer, t, max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, t, max_steps))
