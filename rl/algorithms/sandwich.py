"""SPG's estimator (Sandwiched Policy Gradient, facebookresearch/SPG ``spg/spg_trainer.py``): block-wise masks, and
a lower bound (ELBO) of the sequence log-likelihood for completions with a positive advantage, an upper bound
(EUBO, or a mixture with the ELBO) for the others — so that a REINFORCE step pushes each bound the safe way.

Units: ``elbo_samples`` draws per row. Draw j picks a block k_j among the blocks holding completion tokens (distinct
blocks as the code, which requires ``elbo_samples`` ≤ blocks; with more draws than blocks, with replacement), masks
exactly m of its tokens (m uniform on 1..its token count), every later block, and each earlier position — prompt
and earlier completion blocks — with probability ``p_mask_prompt``; positions after the first EOS are masked
too. M_j is the set of masked completion tokens up to the first EOS, t_j = |M_j| / L_i (L_i: tokens up to and
including the first EOS). Per row, with p = exp(log p) of the targets:

    ELBO = mean_j  Σ_{k∈M_j} log p_k / |M_j|
    EUBO = (1/β) · mean_{k: u_k>0} log u_k,   u_k = mean_j 1[k∈M_j] p_k^β / t_j     (β = ``eubo_beta``)
    v = ELBO if A > 0, else EUBO, ω·EUBO + (1 − ω)·ELBO (``negative_bound: mix``, ω = ``bound_mix_weight``),
        ELBO, or 0

The combined value puts v on each of the row's scored tokens, so ``reinforce`` with ``bnpo`` gives SPG's loss
Σ_i −A_i · v_i · L_i / Σ_i L_i per micro-batch.
"""
from __future__ import annotations

import torch

from .estimators import Estimator, Units, loss_positions
from .objective import register_estimator


def block_masks(traj, settings, generator: torch.Generator) -> torch.Tensor:
    """[B, D, P + L] bool: SPG's ``block_random`` masks of D = ``elbo_samples`` draws per row."""
    b, length = traj.completion_ids.shape
    p_len, draws = traj.prompt_ids.shape[1], settings.elbo_samples
    block = traj.blocks[0][1] - traj.blocks[0][0]
    blocks = length // block
    valid = traj.completion_mask.sum(-1).long()                       # L_i, up to and including the first EOS
    filled = (valid - 1) // block + 1                                  # blocks holding completion tokens
    masked = torch.zeros(b, draws, p_len + length, dtype=torch.bool)
    later_or_this = torch.zeros_like(masked)
    for i in range(b):
        chosen = (torch.randperm(blocks, generator=generator)[:draws] if draws <= blocks  # distinct, as the code
                  else torch.randint(0, blocks, (draws,), generator=generator)) % int(filled[i])
        for j, k in enumerate(chosen.tolist()):
            start = p_len + k * block
            later_or_this[i, j, start:] = True
            masked[i, j, start + block:] = True                       # every later block
            tokens = min(block, int(valid[i]) - block * k)
            m = int(torch.randint(1, tokens + 1, (), generator=generator))
            order = torch.randperm(tokens, generator=generator)
            masked[i, j, start + order[:m]] = True                    # exactly m of the block's tokens
    noise = torch.rand(masked.shape, generator=generator)
    earlier = ~later_or_this & (noise < settings.p_mask_prompt)
    if not settings.attend_prompt_padding:
        earlier[:, :, :p_len] &= traj.prompt_mask.bool().cpu().unsqueeze(1)
    after_eos = torch.cat([torch.zeros(b, p_len, dtype=torch.bool), ~traj.completion_mask.bool().cpu()], 1)
    return masked | earlier | after_eos.unsqueeze(1)


@register_estimator("elbo_block")
class SandwichedBounds(Estimator):
    name = "elbo_block"
    combines = True

    def units(self, batch, generator):
        traj = batch.traj
        if batch.advantages is None or batch.advantages.dim() != 1:
            raise ValueError("the elbo_block estimator (SPG) picks its bound by the sign of each row's advantage: "
                             "compute per-row advantages first (advantage: group)")
        masks = block_masks(traj, self.settings, generator).to(traj.prompt_ids.device)
        ids = torch.cat([traj.prompt_ids, traj.completion_ids], 1).unsqueeze(1).expand_as(masks)
        draws, p_len = masks.shape[1], traj.prompt_ids.shape[1]
        scored = loss_positions(batch, self.settings)
        return Units(inputs=ids.masked_fill(masks, traj.mask_id),
                     targets=traj.completion_ids.unsqueeze(1).expand(-1, draws, -1),
                     select=masks[..., p_len:] & traj.completion_mask.bool().unsqueeze(1),
                     coef=torch.ones(masks[..., p_len:].shape, device=masks.device),
                     loss_select=scored.unsqueeze(1), upper=batch.advantages <= 0)

    def combine(self, logp, units):
        s = self.settings
        in_m = units.select.float()
        count = in_m.sum(-1)                                                       # |M_j|
        elbo = ((logp * in_m).sum(-1) / count.clamp(min=1)).mean(-1)              # [B]
        length = units.scored.sum(-1).float()                                      # [B, 1] L_i
        t = count / length
        u = (torch.exp(s.eubo_beta * logp) * in_m / t.clamp(min=1e-8).unsqueeze(-1)).mean(1)
        keep = u > 0
        eubo = (torch.where(keep, u, torch.ones_like(u)).log() * keep).sum(-1) / keep.sum(-1).clamp(min=1) / s.eubo_beta
        negative = {"eubo": eubo, "mix": s.bound_mix_weight * eubo + (1 - s.bound_mix_weight) * elbo, "elbo": elbo,
                    "zero": torch.zeros_like(elbo)}[s.negative_bound]
        value = torch.where(units.upper, negative, elbo)
        return value.view(-1, 1, 1).expand_as(units.scored).contiguous()
