"""Unmasking schedules: how a completion splits into blocks and how many tokens each step commits.

- ``llada`` (LLaDA's ``generate.py``): equal blocks, steps split evenly over blocks; within a block the
  tokens are split evenly over its steps, earlier steps taking the remainder.
- ``dream`` (Dream's ``diffusion_generate``): with t_i = linspace(1, eps, steps + 1), step i commits
  int(m · (1 − t_{i+1}/t_i)) of the m still-masked tokens; the last step commits all that remain.
- ``ass`` (CJ-GRPO's ascending step size): S = floor(log2 L) steps, step i commits 2^i tokens and the
  last step the remainder; with several blocks, block 0 takes steps 0..S−B and each later block is
  decoded in a single step (L = 128, 4 blocks → block sizes 15, 16, 32, 65).

A plan is a list of :class:`BlockPlan` in decoding order; every row follows the same plan (all rows
start from an all-masked completion of the same length).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampler_config import SamplerConfig

DREAM_EPS = 1e-3


@dataclass(frozen=True)
class BlockPlan:
    lo: int            # completion-relative start
    hi: int            # completion-relative end (exclusive)
    counts: tuple[int, ...]  # tokens committed at each of the block's steps (sums to hi - lo)


def llada_commit_counts(masked: torch.Tensor, steps: int) -> torch.Tensor:
    """[B] masked counts → [B, steps] tokens to commit per step (even split, remainder first)."""
    base, rem = masked // steps, masked % steps
    counts = base.unsqueeze(1).repeat(1, steps)
    counts += (torch.arange(steps, device=masked.device).unsqueeze(0) < rem.unsqueeze(1)).long()
    return counts


def dream_commit_count(step: int, steps: int, mean_masked: torch.Tensor) -> int:
    """Dream's number of tokens to commit at ``step`` (same float32 arithmetic as the reference)."""
    if step == steps - 1:
        return int(mean_masked)
    t = torch.linspace(1, DREAM_EPS, steps + 1, device=mean_masked.device)
    return int(mean_masked * (1 - t[step + 1] / t[step]))


def ass_step_sizes(length: int) -> list[int]:
    """CJ-GRPO's ascending step sizes: 1, 2, 4, ..., then the remainder (S = floor(log2 L) steps)."""
    steps = length.bit_length() - 1
    return [2 ** i for i in range(steps - 1)] + [length - (2 ** (steps - 1) - 1)]


def plan_blocks(cfg: SamplerConfig) -> list[BlockPlan]:
    """The block layout and per-step commit counts of a resolved sampler config."""
    length = cfg.max_completion_length
    if cfg.schedule == "ass":
        sizes = ass_step_sizes(length)
        first = len(sizes) - cfg.num_blocks + 1  # block 0 takes this many steps
        groups = [sizes[:first]] + [[s] for s in sizes[first:]]
        plans, lo = [], 0
        for g in groups:
            plans.append(BlockPlan(lo, lo + sum(g), tuple(g)))
            lo += sum(g)
        return plans
    block = cfg.block_length or length
    steps = cfg.diffusion_steps // cfg.num_blocks
    if cfg.schedule == "llada":
        counts = tuple(llada_commit_counts(torch.tensor([block]), steps)[0].tolist())
    else:
        counts, remaining = [], block
        for s in range(steps):
            counts.append(dream_commit_count(s, steps, torch.tensor(float(remaining))))
            remaining -= counts[-1]
        counts = tuple(counts)
    return [BlockPlan(b * block, (b + 1) * block, counts) for b in range(cfg.num_blocks)]


def eoser_gamma(step: int, total_steps: int, cfg: SamplerConfig) -> float:
    """EOSER's factor on EOS confidence at ``step``: rising from gamma_min to gamma_max (CJ-GRPO);
    under ASS it follows the fraction of tokens decoded after the step, (2^{s+1} − 1) / 2^S."""
    lo, hi = cfg.eoser_gamma_min, cfg.eoser_gamma_max
    if cfg.schedule == "ass":
        return lo + (hi - lo) * (2 ** (step + 1) - 1) / 2 ** total_steps
    return hi if total_steps <= 1 else lo + (hi - lo) * step / (total_steps - 1)
