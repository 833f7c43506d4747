"""rl/training/optim.py: each ``training.lr_scheduler_type`` means exactly what it means in transformers (and TRL)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unmask.rl.config import ConfigError, recipe_from_dict
from unmask.rl.training.optim import make_optimizer, make_schedule

STEPS, WARMUP = 20, 5


def training(name: str, warmup: int = WARMUP) -> SimpleNamespace:
    return SimpleNamespace(learning_rate=1.0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.99, adam_epsilon=1e-8,
                           lr_scheduler_type=name, warmup_steps=warmup)


def learning_rates(optimizer, schedule) -> list[float]:
    """The learning rate each of STEPS optimizer steps runs at."""
    rates = []
    for _ in range(STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def ours(name: str, warmup: int = WARMUP) -> list[float]:
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], training(name, warmup))
    return learning_rates(optimizer, make_schedule(optimizer, training(name, warmup), STEPS))


@pytest.mark.parametrize("name", ["constant", "constant_with_warmup", "linear", "cosine"])
def test_each_schedule_gives_the_learning_rates_of_transformers_get_scheduler(name):
    from transformers import get_scheduler
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = learning_rates(optimizer, get_scheduler(name, optimizer, num_warmup_steps=WARMUP,
                                                     num_training_steps=STEPS))
    assert ours(name) == pytest.approx(theirs, abs=1e-12)


def test_schedules_by_hand_warm_up_from_zero_then_hold_or_decay_to_zero_at_the_last_step():
    warm = [0.0, 0.2, 0.4, 0.6, 0.8]                 # step s of a 5-step warm-up runs at s / 5
    assert ours("constant_with_warmup") == pytest.approx(warm + [1.0] * 15)
    assert ours("constant", warmup=0) == [1.0] * 20  # no warm-up at all
    assert ours("linear") == pytest.approx(warm + [(20 - s) / 15 for s in range(5, 20)])
    assert ours("cosine") == pytest.approx(warm + [0.5 * (1 + math.cos(math.pi * (s - 5) / 15)) for s in range(5, 20)])


def test_constant_with_warmup_steps_is_refused_naming_the_schedule_that_warms_up():
    with pytest.raises(ConfigError, match=r"training\.lr_scheduler_type 'constant' has no warm-up .* "
                                          r"use 'constant_with_warmup'"):
        recipe_from_dict({"training": {"lr_scheduler_type": "constant", "warmup_steps": 5}})
    assert recipe_from_dict({"training": {"lr_scheduler_type": "constant"}}).training.warmup_steps == 0
