"""Advantage estimators: rewards of a batch of GRPO groups → advantages, plus the group statistics
TRL logs (``reward``, ``reward_std``, ``frac_reward_zero_std``).

- ``group``: A = r − mean(group) (``baseline: leave_one_out``: r − the mean of the group's other rewards,
  = G/(G−1)·(r − mean)), divided by the std of the group (``scale_rewards: group``), of the batch (``batch``)
  or not at all (``none``, d1's default); the std is the unbiased one (TRL) or the population's (``reward_std``).
- ``mdpo_stepwise`` (MDPO): from the reward of every recorded step's full prediction r_{g,t},
  a_{g,t} = (r_{g,t} − r_{g,t−1}) + 1 + mean(r_{g,t+1..T−1}) (the last step: + r_{g,T−1}), normalised per
  step over the group: (a − mean_g) / (std_g + 1e-4).

- ``softmax_weights`` (wd1): from A = r − mean(group), the signed weight softmax_g(A) − softmax_g(−A) over the
  group: the loss −Σ weight·log p rewards good completions and pushes bad ones down, with no ratio.

Groups whose rewards are all equal carry no signal; their fraction is logged and, with
``filter_zero_std_groups``, their rows are dropped from the loss. With ``difficulty_filter: [lo, hi]`` (TraceRL) only
groups whose accuracy — the share of completions with reward ≥ ``correct_reward`` — lies in [lo, hi] stay.
"""
from __future__ import annotations

import torch

from .batch import RolloutBatch
from .objective import register_advantage

STD_EPS = 1e-4


def group_view(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B, ...] → [B / G, G, ...]."""
    return x.reshape(-1, group_size, *x.shape[1:])


def group_stats(rewards: torch.Tensor, group_size: int, population: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row group mean and group std (unbiased, as TRL; or the population std), each [B]."""
    g = group_view(rewards.float(), group_size)
    mean = g.mean(1, keepdim=True).expand_as(g).reshape(-1)
    std = (g.std(1, keepdim=True, correction=0 if population else 1) if group_size > 1
           else torch.zeros_like(g[:, :1])).expand_as(g).reshape(-1)
    return mean, std


def in_difficulty_range(rewards: torch.Tensor, group_size: int, settings) -> torch.Tensor:
    """[B] bool: rows whose group's accuracy lies in ``difficulty_filter`` (all True without one)."""
    if settings.difficulty_filter is None:
        return torch.ones(rewards.shape[0], dtype=torch.bool, device=rewards.device)
    lo, hi = settings.difficulty_filter
    accuracy = group_view((rewards >= settings.correct_reward).float(), group_size).mean(1)
    return ((accuracy >= lo) & (accuracy <= hi)).repeat_interleave(group_size)


def _finish(batch: RolloutBatch, advantages: torch.Tensor, zero_std_rows: torch.Tensor, settings) -> RolloutBatch:
    batch.advantages = advantages
    batch.keep = ~zero_std_rows if settings.filter_zero_std_groups else torch.ones_like(zero_std_rows)
    if settings.difficulty_filter is not None:
        in_range = in_difficulty_range(batch.rewards, batch.group_size, settings)
        batch.keep = batch.keep & in_range
        batch.metrics["frac_groups_in_difficulty_range"] = float(in_range.float().mean())
    r = batch.rewards.float()
    batch.metrics.update({
        "reward": float(r.mean()), "reward_std": float(r.std()) if r.numel() > 1 else 0.0,
        "frac_reward_zero_std": float(zero_std_rows.float().mean()),
        "frac_rows_kept": float(batch.keep.float().mean()),
    })
    return batch


@register_advantage("group")
def group_advantages(batch: RolloutBatch, settings) -> RolloutBatch:
    mean, std = group_stats(batch.rewards, batch.group_size, population=settings.reward_std == "population")
    adv = batch.rewards.float() - mean
    if settings.baseline == "leave_one_out":
        if batch.group_size < 2:
            raise ValueError("a leave-one-out baseline needs groups of at least 2 completions "
                             "(rollout.num_generations >= 2)")
        adv = adv * batch.group_size / (batch.group_size - 1)
    if settings.scale_rewards == "group":
        # population std (TraceRL's code): no epsilon, a group whose std is 0 has advantage 0 already
        adv = adv / (std.where(std > 0, torch.ones_like(std)) if settings.reward_std == "population" else std + STD_EPS)
    elif settings.scale_rewards == "batch":
        adv = adv / (batch.rewards.float().std(correction=0 if settings.reward_std == "population" else 1) + STD_EPS)
    return _finish(batch, adv, std == 0, settings)


@register_advantage("softmax_weights")
def softmax_weight_advantages(batch: RolloutBatch, settings) -> RolloutBatch:
    mean, std = group_stats(batch.rewards, batch.group_size)
    a = group_view(batch.rewards.float() - mean, batch.group_size)
    weights = torch.softmax(a, 1) - torch.softmax(-a, 1)
    return _finish(batch, weights.reshape(-1), std == 0, settings)


def mdpo_step_scores(step_rewards: torch.Tensor) -> torch.Tensor:
    """MDPO's raw per-step score a_{g,t} [B, S] (improvement + 1 + mean of the future steps' rewards)."""
    r = step_rewards.float()
    previous = torch.cat([torch.zeros_like(r[:, :1]), r[:, :-1]], 1)
    s = r.shape[1]
    later_sum = r.flip(1).cumsum(1).flip(1) - r                 # sum of r_{t+1..S-1}
    later_count = torch.arange(s - 1, -1, -1, device=r.device).float()
    future = torch.where(later_count > 0, later_sum / later_count.clamp(min=1), r)
    return (r - previous) + 1 + future


@register_advantage("mdpo_stepwise")
def mdpo_stepwise_advantages(batch: RolloutBatch, settings) -> RolloutBatch:
    if batch.step_rewards is None:
        raise ValueError("mdpo_stepwise advantages need the reward of every step's prediction (step_rewards); "
                         "roll out with record_predictions and score each step")
    a = group_view(mdpo_step_scores(batch.step_rewards), batch.group_size)   # [groups, G, S]
    adv = (a - a.mean(1, keepdim=True)) / ((a.std(1, keepdim=True) if batch.group_size > 1 else 0) + STD_EPS)
    _, std = group_stats(batch.rewards, batch.group_size)
    flat_std = group_view(batch.step_rewards.float(), batch.group_size).std(1).amax(-1) if batch.group_size > 1 \
        else torch.zeros(a.shape[0])
    zero = (flat_std == 0).repeat_interleave(batch.group_size) & (std == 0)
    return _finish(batch, adv.reshape(batch.size, -1), zero, settings)


def compute_advantages(batch: RolloutBatch, settings) -> RolloutBatch:
    from .objective import ADVANTAGES
    return ADVANTAGES.get(settings.advantage, "algorithm.advantage")(batch, settings)
