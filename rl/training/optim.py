"""The optimizer and learning-rate schedule every trainer uses (RL and SFT): AdamW from the recipe's
``training`` section, and the schedule from ``transformers.get_scheduler`` itself, so each
``lr_scheduler_type`` means exactly what it means in transformers and TRL (``constant`` has no warm-up;
``constant_with_warmup``, ``linear`` and ``cosine`` warm up linearly from 0 over ``warmup_steps``)."""
from __future__ import annotations

import torch


def make_optimizer(params, t) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay,
                             betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon)


def make_schedule(optimizer, t, max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``transformers.get_scheduler(t.lr_scheduler_type)`` over ``max_steps`` optimizer steps."""
    from transformers import get_scheduler
    return get_scheduler(t.lr_scheduler_type, optimizer, num_warmup_steps=t.warmup_steps,
                         num_training_steps=max_steps)
