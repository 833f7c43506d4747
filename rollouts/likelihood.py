"""Log-likelihood of a continuation under a masked diffusion LM: LLaDA's Monte Carlo ELBO estimator.

A dLLM has no left-to-right factorisation, so log p(y | x) is estimated through the ELBO

    log p(y | x) >= E_t E_{y_t} [ (1/t) Σ_{i: y_t^i = M} log p_θ(y^i | x, y_t) ],

written with the number of masked tokens instead of t, as LLaDA's evaluation code does
(``eval_llada.py``, ``LLaDAEvalHarness.get_loglikelihood`` / ``_forward_process``; paper arXiv:2502.09992,
Eq. 6): for a continuation of L tokens, each Monte Carlo sample masks m ∈ {1..L} of them and scores

    -(L / m) · Σ_{masked i} CE(logits_i, y^i)

(cross-entropy over the model's full vocabulary, prompt never masked), and the estimate is the mean
over ``mc_num`` samples. The counts are drawn by LLaDA's low-discrepancy scheme: for each batch of n
samples, one k ~ U{1..L} and m_j = ((round(k + j·L/n) − 1) mod L) + 1 for j = 0..n−1, so the counts
spread evenly over 1..L (a batch of n = L samples uses every count once); each sample then masks m_j
positions chosen uniformly at random. LLaDA's defaults: ``mc_num=128`` in batches of 32, no guidance
(``cfg=0``); with ``cfg_scale > 0`` the unconditional rows mask the prompt (its ``get_logits``).

:func:`greedy_suffix` is LLaDA's ``suffix_greedy_prediction``: decode the L continuation positions
from all-masked, one token per step, most confident first (low-confidence remasking, temperature 0),
which is this package's sampler with ``schedule=llada``, ``remasking=low_confidence`` and L steps
(the sampler never proposes the mask token, which LLaDA's raw argmax could).

All randomness comes from a CPU ``torch.Generator``, so a seed gives the same masks on every device.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .adapter import ModelAdapter
from .sampler_config import SamplerConfig
from .sampling import generate

MC_NUM = 128       # LLaDA eval_llada.py: mc_num=128
MC_BATCH_SIZE = 32  # LLaDA eval_llada.py: batch_size=32 (mc_num must be a multiple)


def mask_counts(length: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[n] numbers of masked tokens in 1..length, LLaDA's low-discrepancy draw for one batch of n samples."""
    if length < 1 or n < 1:
        raise ValueError(f"need length >= 1 and n >= 1, got {length} and {n}")
    k = int(torch.randint(1, length + 1, (), generator=generator))
    x = torch.round(torch.linspace(float(k), k + (n - 1) * (length / n), steps=n, dtype=torch.float64)).long()
    return (x - 1) % length + 1


def random_masks(length: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[n, length] bool: row j masks ``mask_counts(...)[j]`` positions chosen uniformly at random."""
    counts = mask_counts(length, n, generator)
    ordered = torch.arange(length).expand(n, -1) < counts[:, None]
    return torch.stack([row[torch.randperm(length, generator=generator)] for row in ordered])


def _as_ids(ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    return (ids if isinstance(ids, torch.Tensor) else torch.tensor(list(ids), dtype=torch.long)).long().flatten()


@torch.no_grad()
def elbo_terms(adapter: ModelAdapter, prefix: Sequence[int] | torch.Tensor, target: Sequence[int] | torch.Tensor,
               masks: torch.Tensor, cfg_scale: float = 0.0) -> torch.Tensor:
    """[n] per-sample ELBO values -(L/m) Σ_masked CE for the given [n, L] continuation masks (one forward
    pass of n rows; 2n with guidance). Deterministic: all randomness is in ``masks``."""
    prefix, target = _as_ids(prefix), _as_ids(target)
    n, length = masks.shape
    if length != target.numel():
        raise ValueError(f"masks cover {length} positions, the continuation has {target.numel()}")
    if not bool(masks.any(1).all()):
        raise ValueError("every sample must mask at least one continuation token")
    device, plen = adapter.device, prefix.numel()
    seq = torch.cat([prefix, target]).to(device).expand(n, -1)
    is_mask = torch.cat([torch.zeros(n, plen, dtype=torch.bool), masks.bool().cpu()], dim=1).to(device)
    noisy = seq.masked_fill(is_mask, adapter.mask_id)
    if cfg_scale > 0:  # LLaDA's unsupervised guidance: the unconditional half masks the prompt as well
        uncond = noisy.clone()
        uncond[:, :plen] = adapter.mask_id
        both = adapter.logits(torch.cat([noisy, uncond]), torch.ones(2 * n, seq.shape[1], dtype=torch.long,
                                                                     device=device)).float()
        cond, un = both[:n], both[n:]
        logits = un + (cfg_scale + 1) * (cond - un)
    else:
        logits = adapter.logits(noisy, torch.ones_like(noisy)).float()
    logp = torch.log_softmax(logits[:, plen:], dim=-1).gather(-1, target.to(device).expand(n, -1)[..., None])[..., 0]
    counts = masks.sum(1).to(device)
    return ((logp * masks.to(device)).sum(1) * (length / counts)).cpu().double()


def elbo_samples(adapter: ModelAdapter, prefix: Sequence[int] | torch.Tensor, target: Sequence[int] | torch.Tensor,
                 *, mc_num: int = MC_NUM, batch_size: int = MC_BATCH_SIZE, cfg_scale: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """[mc_num] per-sample ELBO values, drawn in batches of ``batch_size`` (the low-discrepancy strata)."""
    if mc_num < 1 or batch_size < 1 or mc_num % batch_size:
        raise ValueError(f"mc_num ({mc_num}) must be a positive multiple of the Monte Carlo batch size "
                         f"({batch_size}), as in LLaDA's evaluation code")
    length = _as_ids(target).numel()
    if length == 0:
        return torch.zeros(mc_num, dtype=torch.float64)
    return torch.cat([elbo_terms(adapter, prefix, target, random_masks(length, batch_size, generator), cfg_scale)
                      for _ in range(mc_num // batch_size)])


def elbo_loglikelihood(adapter: ModelAdapter, prefix: Sequence[int] | torch.Tensor,
                       target: Sequence[int] | torch.Tensor, *, mc_num: int = MC_NUM,
                       batch_size: int = MC_BATCH_SIZE, cfg_scale: float = 0.0,
                       generator: torch.Generator | None = None) -> float:
    """LLaDA's Monte Carlo estimate of log p(target | prefix) (a lower bound in expectation): the mean of
    :func:`elbo_samples`. An empty target scores 0."""
    return float(elbo_samples(adapter, prefix, target, mc_num=mc_num, batch_size=batch_size, cfg_scale=cfg_scale,
                              generator=generator).mean())


def greedy_suffix(adapter: ModelAdapter, prefix: Sequence[int] | torch.Tensor, length: int,
                  cfg_scale: float = 0.0) -> list[int]:
    """The ``length`` tokens greedy one-per-step low-confidence decoding gives after ``prefix`` (LLaDA's
    ``suffix_greedy_prediction``); ``is_greedy`` is whether this equals the continuation."""
    if length == 0:
        return []
    prefix = _as_ids(prefix)
    cfg = SamplerConfig(max_completion_length=length, diffusion_steps=length, block_length=None, temperature=0.0,
                        remasking="low_confidence", schedule="llada", top_k=0, top_p=None, cfg_scale=cfg_scale,
                        stop_at_eos=False)
    out = generate(adapter, prefix[None].to(adapter.device), None, cfg, record=False)
    return out[0, prefix.numel():].tolist()
