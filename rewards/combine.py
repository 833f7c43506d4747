"""Weighted combination of several rewards, with TRL's semantics for ``None`` (skipped, like NaN)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from unmask.rewards.registry import build_rewards


@dataclass
class RewardBreakdown:
    """Per-reward values and the weighted total for a batch of completions."""

    total: list[float]  #: sum over rewards of weight * value, skipping None (TRL's nansum)
    per_reward: dict[str, list[float | None]]  #: raw values of each reward, by name
    weights: dict[str, float]
    notes: dict[str, list] = field(default_factory=dict)  #: what a reward said besides its values (``last_answers``)


def weighted_rewards(specs: Iterable[str | dict], prompts, completions, **columns) -> RewardBreakdown:
    """Evaluate recipe reward ``specs`` (see :func:`rewards.registry.build_rewards`) and combine them.

    Every keyword argument reaches every reward: the dataset columns, and the ``completion_ids`` and
    ``trainer_state`` a trainer passes (TRL's call). A reward listed twice under the same name is kept
    under ``name#2``, ``name#3``, ...
    """
    built = build_rewards(specs)
    n = len(completions)
    total = [0.0] * n
    per_reward: dict[str, list[float | None]] = {}
    weights: dict[str, float] = {}
    notes: dict[str, list] = {}
    for name, fn, weight in built:
        key, k = name, 1
        while key in per_reward:
            k += 1
            key = f"{name}#{k}"
        values = list(fn(prompts=prompts, completions=completions, **columns))  # by keyword, as TRL calls them
        if len(values) != n:
            raise ValueError(f"reward {name!r} returned {len(values)} values for {n} completions")
        per_reward[key], weights[key] = values, weight
        if getattr(fn, "last_answers", None) is not None:  # e.g. an LLM judge's raw answers, logged with the samples
            notes[key] = list(fn.last_answers)
        for i, v in enumerate(values):
            if v is not None and not math.isnan(v):
                total[i] += weight * v
    return RewardBreakdown(total=total, per_reward=per_reward, weights=weights, notes=notes)
