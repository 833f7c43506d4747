"""Greedy and temperature decoding for masked diffusion LMs (the reference samplers, reproduced).

A completion of ``max_completion_length`` masks is appended to each (left-padded) prompt and filled
block by block, left to right; inside a block each step predicts every masked position and commits
the most confident ones. Two schedules decide how many per step:

- ``llada`` (LLaDA's ``generate.py``): steps split evenly over blocks; within a block the masked
  tokens are split evenly over its steps, earlier steps taking the remainder.
- ``dream`` (Dream's ``diffusion_generate``): with t_i = linspace(1, eps, steps + 1), step i commits
  int(m · (1 − t_{i+1}/t_i)) tokens, m being the mean number of masked positions over the batch;
  the last step commits all that remain.

Confidence (``remasking``): ``low_confidence`` — LLaDA's softmax probability of the chosen token;
``top1_prob`` / ``margin`` / ``neg_entropy`` — Dream's confidences, on temperature-scaled
probabilities; ``random`` — LLaDA's random remasking. ``top_k`` / ``top_p`` filter the logits before
both the choice and the confidence, as Dream's ``sample_tokens`` does. With ``temperature > 0``
tokens are drawn by Gumbel-max in float64. Settings left as None take the model family's reference
values (``Family.sampler_defaults``): Dream's published code, for instance, ranks with top_k=50 even
when greedy. The rollout engine builds on these pieces (trajectory recording, caches and the other
published samplers come with it).
"""
from __future__ import annotations

import torch

from .adapter import ModelAdapter
from .sampler_config import REMASKING, SCHEDULES, SamplerConfig  # noqa: F401  (re-exported)

DREAM_EPS = 1e-3


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


def gumbel_argmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """argmax(logits / T + Gumbel noise), in float64; plain argmax when T = 0."""
    if temperature == 0:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return (logits.double() / temperature - torch.log(-torch.log(u))).argmax(-1)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-p (nucleus: the smallest set whose probability exceeds p) then top-k, as Dream applies them;
    removed entries get the dtype's lowest value."""
    low = torch.finfo(logits.dtype).min
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        beyond = sorted_logits.softmax(-1).cumsum(-1) > top_p
        beyond[..., 1:] = beyond[..., :-1].clone()
        beyond[..., 0] = False
        logits = logits.masked_fill(beyond.scatter(-1, order, beyond), low)
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, low)
    return logits


def propose(logits: torch.Tensor, cfg: SamplerConfig, mask_id: int,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate tokens x0 and their confidences for logits [B, N, V] (``cfg`` resolved).

    The mask token is never chosen (it would leave the position masked), but confidences are read
    from the unmodified distribution, as the reference samplers do.
    """
    logits = filter_logits(logits.float(), cfg.top_k, cfg.top_p)
    remasking, temperature = cfg.remasking, cfg.temperature
    choice = logits.clone()
    choice[..., mask_id] = float("-inf")
    x0 = gumbel_argmax(choice, temperature, generator)
    if remasking == "random":
        return x0, torch.rand(x0.shape, device=x0.device, generator=generator)
    if remasking == "low_confidence":
        return x0, torch.softmax(logits, -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    probs = torch.softmax(logits / temperature if temperature > 0 else logits, -1)
    if remasking == "top1_prob":
        return x0, probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    if remasking == "margin":
        top2 = probs.topk(2, dim=-1).values
        return x0, top2[..., 0] - top2[..., 1]
    return x0, (probs * torch.log(probs + 1e-10)).sum(-1)  # neg_entropy


def select_most_confident(confidence: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean [B, N]: the k[b] candidate positions of row b with the highest confidence."""
    conf = confidence.masked_fill(~candidates, float("-inf"))
    order = conf.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return (rank < k.unsqueeze(-1)) & candidates


@torch.no_grad()
def generate(adapter: ModelAdapter, prompt_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             config: SamplerConfig | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Decode ``config.max_completion_length`` tokens after each prompt; returns [B, P + L] ids."""
    cfg = (config or SamplerConfig()).resolve(adapter.family.sampler_defaults)
    batch, plen = prompt_ids.shape
    length = cfg.max_completion_length
    block = cfg.block_length or length
    n_blocks = length // block
    steps = cfg.diffusion_steps // n_blocks
    mask_id = adapter.mask_id
    x = torch.cat([prompt_ids, prompt_ids.new_full((batch, length), mask_id)], dim=1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, length))], dim=1)
    for b in range(n_blocks):
        lo, hi = plen + b * block, plen + (b + 1) * block
        counts = llada_commit_counts((x[:, lo:hi] == mask_id).sum(1), steps) if cfg.schedule == "llada" else None
        for s in range(steps):
            candidates = x[:, lo:hi] == mask_id
            if counts is not None:
                k = counts[:, s]
            else:
                mean_masked = candidates.sum() / batch
                k = torch.full((batch,), dream_commit_count(s, steps, mean_masked), device=x.device)
            if not bool((k > 0).any()):
                continue  # Dream's schedule may commit nothing on early steps: no forward pass needed
            logits = adapter.logits(x, attention_mask)[:, lo:hi]
            x0, confidence = propose(logits, cfg, mask_id, generator)
            commit = select_most_confident(confidence, candidates, k)
            x[:, lo:hi] = torch.where(commit, x0, x[:, lo:hi])
    return x
