"""Policy losses (a registry), the KL penalty and TRL's loss aggregation modes.

Inputs are per (row, unit, token): the estimator's log-probs under the current policy ``logp``, the
old policy's ``old`` and the reference's ``ref`` (same units, same masks), one advantage per
(row, unit) — or per token, [B, U, L] (a value model's) — the positions in the loss and optional per-token
weights. A policy loss returns the per-token loss; ``beta`` × KL is added per token; :func:`aggregate` reduces
to a scalar:

- ``grpo``: mean over a unit's tokens, mean over the row's non-empty units, mean over rows;
- ``bnpo``: sum over the micro-batch's tokens / their number (then / number of micro-batches);
- ``dr_grpo``: sum / (rows × max_completion_length);
- ``dapo``: sum / tokens in the whole (accumulated) batch;
- ``sum`` (wd1's code): sum over the micro-batch's tokens and rows (then / number of micro-batches);
- ``step_bnpo`` (CJ-GRPO's code): for each unit u, sum over the micro-batch's tokens of u / their number; mean
  over the units that hold any (then / number of micro-batches). One unit: ``bnpo``;
- ``step_sum`` (MDPO's code): each unit's sum / (its tokens + 1e-4), summed over the row's units, mean over rows;
- ``unit_mean`` (TraceRL's code): each unit's token mean, averaged over every non-empty unit of the batch, whatever
  its row (a row with more units weighs more).

Denominators that span the whole batch come from :class:`Norms`, so accumulating micro-batches gives
the full batch's gradient for every mode but ``bnpo``, whose denominator is local by definition.

Importance ratios (``importance_sampling_level``): ``token`` — exp(logp − old) per token;
``sequence`` — exp of the unit's mean log-ratio (GSPO; with ELBO units and EOS padding scored, GDPO's code:
exp(ΔELBO / L)); ``sequence_sum`` — exp of the summed log-ratio (the ELBO ratio of GDPO's paper), with the loss
divided by the number of tokens (the paper's 1/|y|).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .objective import register_policy_loss

STEP_SUM_EPS = 1e-4  # MDPO's code adds it to the token count of a step


@dataclass(frozen=True)
class Norms:
    rows: int             # rows in the loss, over the whole batch
    tokens: int           # positions in the loss, over the whole batch
    length: int           # max_completion_length
    micro_batches: int
    units: int = 0        # (row, unit) pairs with a position in the loss, over the whole batch (unit_mean)


def per_token(adv: torch.Tensor) -> torch.Tensor:
    """Advantages broadcastable over [B, U, L]: one per (row, unit) [B, U] or one per token [B, U, L]."""
    return adv if adv.dim() == 3 else adv.unsqueeze(-1)


def log_ratio(logp: torch.Tensor, old: torch.Tensor, scored: torch.Tensor, level: str) -> torch.Tensor:
    """[B, U, L] log importance ratio at each token (sequence levels broadcast one value per unit)."""
    delta = (logp - old) * scored
    if level == "token":
        return delta
    total = delta.sum(-1, keepdim=True)
    if level == "sequence":
        total = total / scored.sum(-1, keepdim=True).clamp(min=1)
    elif level != "sequence_sum":
        raise ValueError(f"unknown importance_sampling_level {level!r}")
    return total.expand_as(delta)


@register_policy_loss("clipped")
def clipped_loss(logp, old, adv, scored, settings) -> tuple[torch.Tensor, dict]:
    """−min(ρ A, clip(ρ, 1 − ε, 1 + ε_high) A), and the fractions of tokens clipped low / high."""
    ratio = torch.exp(log_ratio(logp, old, scored, settings.importance_sampling_level))
    a = per_token(adv)
    clipped = ratio.clamp(1 - settings.epsilon, 1 + settings.clip_high)
    loss = -torch.min(ratio * a, clipped * a)
    if settings.importance_sampling_level == "sequence_sum":
        loss = loss / scored.sum(-1, keepdim=True).clamp(min=1)
    with torch.no_grad():
        low = (ratio < 1 - settings.epsilon) & (a < 0)
        high = (ratio > 1 + settings.clip_high) & (a > 0)
        # TRL's names (GRPOTrainer): the update logs their token means over the batch
        info = {"clip_ratio/low_mean": low, "clip_ratio/high_mean": high, "clip_ratio/region_mean": low | high}
    return loss, info


@register_policy_loss("bgpo")
def bgpo_loss(logp, old, adv, scored, settings) -> tuple[torch.Tensor, dict]:
    """BGPO's lower bound of the sequence-ratio objective, one term per Monte Carlo sample (unit) u with
    d_u = ℓ_u − ℓ_u^old its log-ratio: −(1 + d_u)·A for A ≥ 0 (tangent), −exp(d_u)·A for A < 0 (Jensen). Equal
    to GRPO's value and gradient on-policy; a sum over samples, so each can be backpropagated alone (flat memory)."""
    d = log_ratio(logp, old, scored, "sequence_sum")
    a = per_token(adv)
    return -torch.where(a >= 0, (1 + d) * a, torch.exp(d) * a), {}


@register_policy_loss("reinforce")
def reinforce_loss(logp, old, adv, scored, settings) -> tuple[torch.Tensor, dict]:
    """Plain policy gradient −A·log p (on-policy; no ratio, no clipping)."""
    return -per_token(adv) * logp, {}


def kl_penalty(logp: torch.Tensor, ref: torch.Tensor, estimator: str, scored: torch.Tensor | None = None
               ) -> torch.Tensor:
    """KL(π‖π_ref) estimate per token: k3 = exp(ref − logp) − (ref − logp) − 1, k2 = (logp − ref)² / 2. With
    ``scored`` (sequence level), of each unit's summed difference Σ (ref − logp), divided evenly among its
    scored tokens (so a unit's token mean is the sequence KL / its length: ESPO's (1/L)·½(ΔB)²)."""
    d = ref - logp
    if scored is not None:
        count = scored.sum(-1, keepdim=True).clamp(min=1)
        d = (d * scored).sum(-1, keepdim=True)
    if estimator == "k3":
        kl = torch.exp(d) - d - 1
    elif estimator == "k2":
        kl = 0.5 * d * d
    else:
        raise ValueError(f"unknown kl_estimator {estimator!r}")
    return kl if scored is None else (kl / count).expand_as(logp)


def aggregate(per_token: torch.Tensor, scored: torch.Tensor, loss_type: str, norms: Norms) -> torch.Tensor:
    x = per_token * scored
    if loss_type == "grpo":
        count = scored.sum(-1)
        unit_mean = x.sum(-1) / count.clamp(min=1)
        nonempty = count > 0
        row = (unit_mean * nonempty).sum(-1) / nonempty.sum(-1).clamp(min=1)
        return row.sum() / max(norms.rows, 1)
    if loss_type == "bnpo":
        return x.sum() / scored.sum().clamp(min=1) / norms.micro_batches
    if loss_type == "dr_grpo":
        return x.sum() / max(norms.rows * norms.length, 1)
    if loss_type == "dapo":
        return x.sum() / max(norms.tokens, 1)
    if loss_type == "sum":
        return x.sum() / norms.micro_batches
    if loss_type == "step_bnpo":
        count = scored.sum((0, 2))
        unit_mean = x.sum((0, 2)) / count.clamp(min=1)
        return unit_mean.sum() / (count > 0).sum().clamp(min=1) / norms.micro_batches
    if loss_type == "step_sum":
        return (x.sum(-1) / (scored.sum(-1) + STEP_SUM_EPS)).sum() / max(norms.rows, 1)
    if loss_type == "unit_mean":
        return (x.sum(-1) / scored.sum(-1).clamp(min=1)).sum() / max(norms.units, 1)
    raise ValueError(f"unknown loss_type {loss_type!r}")


def policy_objective(logp: torch.Tensor, old: torch.Tensor | None, ref: torch.Tensor | None, adv: torch.Tensor,
                     scored: torch.Tensor, weight: torch.Tensor | None, settings, norms: Norms
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar loss of one micro-batch and its per-token diagnostics (detached)."""
    from .objective import POLICY_LOSSES
    old = logp.detach() if old is None else old
    per_token, info = POLICY_LOSSES.get(settings.loss, "algorithm.loss")(logp, old, adv, scored, settings)
    if settings.beta > 0:
        if ref is None:
            raise ValueError("beta > 0 needs reference log-probs")
        kl = kl_penalty(logp, ref, settings.kl_estimator, scored if settings.kl_level == "sequence" else None)
        info["kl"] = kl.detach()
        if settings.kl_level == "token_sum":  # summed over the unit where the policy term is averaged (TraceRL)
            kl = kl * scored.sum(-1, keepdim=True)
        per_token = per_token + settings.beta * kl
    if weight is not None:
        per_token = per_token * weight
    return aggregate(per_token, scored, settings.loss_type, norms), info
