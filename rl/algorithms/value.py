"""TraceRL's diffusion value model, as formulas: step-level GAE to per-token advantages and the clipped value loss.

Reference: Gen-Verse/dLLM-RL ``train/train_sdar_value.py`` (``compute_returns_and_advantages_from_fragments``,
``forward_process``). A row's units are its decoding steps in order (the ``trajectory`` estimator, every step or
merged groups of ``step_k``); V_j is the value of completion token j read on its unit's input. With R the row's
return target (its group advantage: the code's value stage is fed the z-scored rewards), r_j = R on the tokens of
the row's last step and 0 elsewhere, and V*_s, r*_s the means over step s's tokens in the loss (empty steps skipped):

    δ_s = r*_s − V*_s + γ V*_{s+1},     A*_s = δ_s + γλ A*_{s+1},     R*_s = r*_s + γ R*_{s+1}
    A_j = (r_j − V_j) + γ V*_{s+1} + γλ A*_{s+1},     R_j = r_j + γ R*_{s+1}       (token j decoded at step s)

At γ = λ = 1 (the code's setting) A_j = R − V_j and R_j = R. The value loss (``value_clip`` ε_v) is

    ½ max((V_j − R_j)², (V_j^old + clip(V_j − V_j^old, −ε_v, ε_v) − R_j)²)

summed over the tokens and divided by (units × max_completion_length): the code divides each row's sum by L1 and
averages over rows, and a row there is one unit.
"""
from __future__ import annotations

import torch


def step_gae(values: torch.Tensor, scored: torch.Tensor, target: torch.Tensor, gamma: float, lam: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token advantages and returns [B, U, L] (0 off ``scored``) from values [B, U, L], the positions in the loss
    [B, U, L] (units in decoding order) and each row's return target [B] (see the module docstring)."""
    s = scored.float()
    count = s.sum(-1)
    nonempty = count > 0                                                       # [B, U]
    v_star = (values.float() * s).sum(-1) / count.clamp(min=1)                 # [B, U]
    index = torch.arange(s.shape[1], device=s.device)
    last = torch.where(nonempty, index, -1).amax(-1, keepdim=True)             # [B, 1] the row's last step
    r_star = torch.where(index == last, target.float().unsqueeze(1), 0.0)      # [B, U]
    zeros = torch.zeros(s.shape[0], device=s.device)
    a_next, v_next, r_next = zeros, zeros, zeros                               # the next non-empty step's A*, V*, R*
    adv, ret = torch.zeros_like(s), torch.zeros_like(s)
    for u in range(s.shape[1] - 1, -1, -1):
        following = gamma * v_next + gamma * lam * a_next
        adv[:, u] = (r_star[:, u, None] - values[:, u].float()) + following[:, None]
        ret[:, u] = r_star[:, u, None] + gamma * r_next[:, None]
        here = nonempty[:, u]
        delta = r_star[:, u] - v_star[:, u] + gamma * v_next
        a_next = torch.where(here, delta + gamma * lam * a_next, a_next)
        r_next = torch.where(here, r_star[:, u] + gamma * r_next, r_next)
        v_next = torch.where(here, v_star[:, u], v_next)
    return adv * s, ret * s


def clipped_value_loss(values: torch.Tensor, old: torch.Tensor, returns: torch.Tensor, clip: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ½ max((V − R)², (V_clip − R)²) and where the clipped branch is the larger (no gradient there)."""
    clipped = old + (values - old).clamp(-clip, clip)
    plain, bounded = (values - returns) ** 2, (clipped - returns) ** 2
    return 0.5 * torch.maximum(plain, bounded), (bounded > plain).detach()
