"""One rollout batch → ``num_iterations`` × ``num_minibatches`` optimizer steps of the configured objective.

For each inner iteration j the estimator builds its units for the whole batch from ``mask_seeds[j]``
(so micro-batching never changes the masks), and — before any update — the old policy's and the
reference's log-probs on them are computed without gradients (with ``kl_target: old`` the old policy's serve as
the reference). Each iteration then takes one optimizer step per mini-batch — with ``num_minibatches`` > 1 the rows in
the loss cut into that many consecutive parts, each normalised on its own (see :func:`minibatches`) — accumulating
its gradient over micro-batches of rows and calling ``optimizer_step``.

Memory: with ``backward_chunk`` = c, a micro-batch's U units are backpropagated c at a time, so peak
activation memory is that of c units' forward, not U. For losses that are sums of per-token terms
(token-level ratios, no combining) each chunk's loss is exact on its own. Otherwise (sequence-level
ratios, ELBO combining) one gradient-free pass first fixes every unit's log-prob; each chunk then
recomputes its own units with gradients and the loss is evaluated on the detached rest, which gives
exactly the full gradient split over chunks — at the cost of that extra gradient-free forward.

With a value model (``critic``: TraceRL's, rl/training/critic.py), after planning it sets each iteration's per-token
advantages from its old values and takes its own optimizer steps, before the policy's.

IGPO (``hint_entropy_keep`` < 1, rows with inpainted hints): before the old log-probs, one gradient-free forward
ranks each unit's hint positions by the policy's entropy and keeps only the top share in the loss.

Metrics: the loss (mean over micro-batches and iterations), the loss's per-token diagnostics (``kl``, clip
fractions), and ``entropy``: the mean entropy of the distribution the log-probs are taken under (``logp_policy``,
at the scoring temperature) at the positions each unit scores, taken from the logits of the forward that has the
gradient — an elementwise pass over them, no extra forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.algorithms.estimators import (
    Estimator,
    Units,
    build_estimator,
    sampler_of,
    scoring_temperature,
    unit_logprobs,
)
from unmask.rl.algorithms.losses import Norms, policy_objective
from unmask.rollouts.adapter import ModelAdapter

from .distributed import SingleProcess
from .reference import ReferencePolicy


def independent_seed(seed: int) -> int:
    """old_masks: independent — the old estimate's seed, another 32-bit seed derived from the iteration's."""
    return (seed * 1_000_003 + 12_345) % 2 ** 32


@dataclass
class IterationPlan:
    units: Units
    old: torch.Tensor | None   # [B, U', L] after combining; None = the current policy (ratio 1)
    ref: torch.Tensor | None
    adv: torch.Tensor | None = None  # [B, U', L] per-token advantages (the value model's); None = the batch's


class PolicyUpdate:
    """Runs the inner iterations of one rollout batch (see the module docstring)."""

    def __init__(self, adapter: ModelAdapter, settings, *, micro_batch_size: int | None = None,
                 reference: ReferencePolicy | None = None, backend=None, critic=None):
        self.adapter, self.settings, self.critic = adapter, settings, critic
        self.estimator: Estimator = build_estimator(settings)
        self.micro_batch_size, self.reference = micro_batch_size, reference
        self.backend = backend if backend is not None else SingleProcess()
        # DeepSpeed averages gradients over ranks; losses normalised by batch-wide (all-rank) counts are
        # scaled back to a sum. Local normalisers (bnpo, step_bnpo, sum) are averaged over ranks, as in TRL.
        self.loss_scale = 1 if settings.loss_type in ("bnpo", "step_bnpo", "sum") else self.backend.world_size
        if settings.reference_beta > 0 and reference is None:
            raise ValueError("algorithm.beta > 0 needs a reference policy; set beta: 0 or pass reference=")

    # ---- scoring -------------------------------------------------------------------------------
    def _logprobs(self, adapter: ModelAdapter, batch: RolloutBatch, units: Units, lo: int, hi: int,
                  rows: slice = slice(None), entropy: list | None = None) -> torch.Tensor:
        """Log-probs [B, hi − lo, L] of units lo..hi (``units`` already restricted to ``rows``); with ``entropy``,
        also appends (sum, count) of the policy's entropy over the units' scored positions of kept rows."""
        s = self.settings
        args = self._scoring_args(adapter, batch, units, lo, hi, rows)
        if entropy is None:
            return unit_logprobs(*args, policy=s.logp_policy).float()
        logp, h = unit_logprobs(*args, policy=s.logp_policy, with_entropy=True)
        counted = units.select[:, lo:hi] & batch.keep[rows].view(-1, 1, 1)
        entropy.append((float((h * counted).sum()), float(counted.sum())))
        return logp.float()

    def _scoring_args(self, adapter: ModelAdapter, batch: RolloutBatch, units: Units, lo: int, hi: int,
                      rows: slice = slice(None)) -> tuple:
        """``unit_logprobs``' positional arguments for units lo..hi (``units`` already restricted to ``rows``)."""
        traj, s = batch.traj, self.settings
        return (adapter, units.inputs[:, lo:hi], None if s.attend_prompt_padding else traj.attention_mask()[rows],
                units.targets[:, lo:hi], sampler_of(traj), scoring_temperature(traj, s))

    def _chunks(self, units: Units) -> list[tuple[int, int]]:
        n = units.num_units
        size = self.settings.backward_chunk or n
        return [(lo, min(lo + size, n)) for lo in range(0, n, size)]

    @torch.no_grad()
    def _score_combined(self, adapter: ModelAdapter, batch: RolloutBatch, units: Units) -> torch.Tensor:
        logp = torch.cat([self._logprobs(adapter, batch, units, lo, hi) for lo, hi in self._chunks(units)], 1)
        return self.estimator.combine(logp, units)

    def plan(self, batch: RolloutBatch) -> list[IterationPlan]:
        """Units, old and reference log-probs of every inner iteration, before any update."""
        s = self.settings
        if len(batch.mask_seeds) < s.num_iterations:
            raise ValueError(f"the batch carries {len(batch.mask_seeds)} mask seeds for {s.num_iterations} iterations")
        plans = []
        for j in range(s.num_iterations):
            units = self.estimator.units(batch, torch.Generator().manual_seed(int(batch.mask_seeds[j])))
            if s.hint_entropy_keep < 1 and "hint_mask" in batch.traj.extras:
                units = self._high_entropy_hints(batch, units)
            old = ref = None
            if s.updates_per_batch > 1:
                if s.old_logp == "rollout":
                    old = batch.traj.rollout_logp.unsqueeze(1).expand_as(units.select).float()
                elif s.old_masks == "independent":  # GDPO's code: the old estimate on draws of its own
                    seed = independent_seed(int(batch.mask_seeds[j]))
                    old = self._score_combined(self.adapter, batch,
                                               self.estimator.units(batch, torch.Generator().manual_seed(seed)))
                else:
                    old = self._score_combined(self.adapter, batch, units)
            if s.beta > 0 and s.kl_target == "old":
                ref = old
            elif s.beta > 0:
                with self.reference.use() as ref_adapter:
                    ref = self._score_combined(ref_adapter, batch, units)
            plans.append(IterationPlan(units, old, ref))
        return plans

    @torch.no_grad()
    def _high_entropy_hints(self, batch: RolloutBatch, units: Units) -> Units:
        """IGPO's filter: of each unit's hint (inpainted) positions, only the max(1, floor(share · n)) of highest
        entropy under the current (old) policy stay in the loss; generated positions all stay."""
        hint = batch.traj.extras["hint_mask"].bool().unsqueeze(1)
        if not bool(hint.any()):
            return units
        s = self.settings
        entropy = torch.cat([unit_logprobs(*self._scoring_args(self.adapter, batch, units, lo, hi),
                                           policy=s.logp_policy, with_entropy=True)[1].float()
                             for lo, hi in self._chunks(units)], 1)
        candidates = units.select & hint
        count = candidates.sum(-1, keepdim=True)
        keep = (count.double() * s.hint_entropy_keep).floor().long().clamp(min=1)
        rank = entropy.masked_fill(~candidates, float("-inf")).argsort(dim=-1, descending=True, stable=True).argsort(-1)
        allowed = ~hint | (candidates & (rank < keep))
        units.select = units.select & allowed
        if units.loss_select is not None:
            units.loss_select = units.loss_select & allowed
        return units

    # ---- one micro-batch -------------------------------------------------------------------------
    def _advantages(self, batch: RolloutBatch, rows: slice, units: Units) -> torch.Tensor:
        adv = batch.advantages[rows]
        if adv.dim() == 2:  # per recorded step: gather the units' steps
            adv = adv.gather(1, units.adv_index)
        else:
            adv = adv.unsqueeze(1).expand(-1, units.scored.shape[1])
        if units.adv_scale is not None:
            adv = adv * units.adv_scale
        return adv.float()

    def _micro_step(self, batch: RolloutBatch, plan: IterationPlan, rows: slice, norms: Norms) -> dict:
        s = self.settings
        units = plan.units.rows(rows)
        keep = batch.keep[rows].view(-1, 1, 1)
        scored = units.scored & keep
        adv = self._advantages(batch, rows, units) if plan.adv is None else plan.adv[rows]
        old = None if plan.old is None else plan.old[rows]
        ref = None if plan.ref is None else plan.ref[rows]

        def objective(logp):
            return policy_objective(self.estimator.combine(logp, units), old, ref, adv, scored, units.loss_weight, s,
                                    norms)

        entropy: list[tuple[float, float]] = []

        def score(lo, hi, measure=True):
            return self._logprobs(self.adapter, batch, units, lo, hi, rows, entropy if measure else None)

        chunks = self._chunks(units)
        if len(chunks) == 1:
            loss, info = objective(score(*chunks[0]))
            self.backend.backward(loss * self.loss_scale)
            return _summary(loss, info, scored, entropy)
        separable = not self.estimator.combines and s.importance_sampling_level == "token"
        if separable:  # each token's loss depends on its own unit only: the other units' values are not needed
            base = torch.zeros(units.select.shape, device=units.select.device)
        else:
            with torch.no_grad():
                base = torch.cat([score(lo, hi, measure=False) for lo, hi in chunks], 1)
        for lo, hi in chunks:
            live = score(lo, hi)
            loss, _ = objective(torch.cat([base[:, :lo], live, base[:, hi:]], 1))
            self.backend.backward(loss * self.loss_scale)
            base[:, lo:hi] = live.detach()
        with torch.no_grad():
            loss, info = objective(base)
        return _summary(loss, info, scored, entropy)

    # ---- the iterations ----------------------------------------------------------------------------
    def _minibatches(self, batch: RolloutBatch) -> list[slice | torch.Tensor]:
        parts = self.settings.num_minibatches
        any_kept = parts == 1 or round(self.backend.sum(int(batch.keep.sum()))) > 0
        return minibatches(batch.keep, parts, any_kept)

    def run(self, batch: RolloutBatch, optimizer_step: Callable[[], None]) -> dict[str, float]:
        """All inner iterations; ``optimizer_step`` applies (clips, steps, zeroes) the accumulated gradient.
        Backward passes, cross-rank sums and parameter gathering go through ``backend`` (rl.distributed)."""
        if batch.advantages is None or batch.keep is None:
            raise ValueError("compute advantages first (rl.advantages.compute_advantages)")
        with self.backend.full_parameters():
            plans = self.plan(batch)
        advised = {} if self.critic is None else self.critic.advise(batch, plans)  # value model: per-token A
        model = self.adapter.model
        was_training = model.training
        model.train()
        size = self.micro_batch_size or batch.size
        history: list[dict] = []
        try:
            for plan in plans:
                for part in self._minibatches(batch):
                    micro = ([slice(i, min(i + size, part.stop)) for i in range(part.start, part.stop, size)]
                             if isinstance(part, slice) else list(part.split(size)))
                    scored = plan.units.scored[part] & batch.keep[part].view(-1, 1, 1)
                    norms = Norms(rows=round(self.backend.sum(int(batch.keep[part].sum()))),
                                  tokens=round(self.backend.sum(int(scored.sum()))),
                                  length=batch.traj.completion_length, micro_batches=len(micro),
                                  units=round(self.backend.sum(int((scored.sum(-1) > 0).sum()))))
                    with self.backend.accumulate():
                        merged = _merge([self._micro_step(batch, plan, rows, norms) for rows in micro])
                    merged["loss"] = (merged["loss"][0], 1.0)  # a step's loss is the sum over its micro-batches
                    optimizer_step()
                    history.append(merged)
        finally:
            model.train(was_training)
        return {**finalize_metrics(_merge(history)), **advised}


def minibatches(keep: torch.Tensor, parts: int, any_kept: bool) -> list[slice | torch.Tensor]:
    """The rows of each optimizer step. One part: the whole batch (a slice). Several: the rows in the loss (``keep``)
    cut into ``parts`` consecutive near-equal index sets — filtered groups take no share, as in TraceRL's code, whose
    filter removes them before batching. A rank with fewer kept rows than parts fills an empty part with a dropped row
    (zero gradient), so every rank steps alike; when no rank keeps a row, each step sees the whole batch, as with one
    part (zero gradient: the run still advances)."""
    rows = keep.shape[0]
    if parts > rows:
        raise ValueError(f"algorithm.num_minibatches ({parts}) exceeds the batch's {rows} rows; lower it")
    if parts == 1 or not any_kept:
        return [slice(0, rows)] * parts
    kept, dropped = keep.nonzero().flatten(), (~keep).nonzero().flatten()
    return [part if len(part) else dropped[:1] for part in torch.tensor_split(kept, parts)]


def _summary(loss: torch.Tensor, info: dict[str, torch.Tensor], scored: torch.Tensor,
             entropy: list[tuple[float, float]]) -> dict:
    """Token-weighted sums of the diagnostics (merged across micro-batches and iterations)."""
    n = float(scored.sum())
    out = {"loss": (float(loss.detach()), 1.0)}
    for key, value in info.items():
        out[key] = (float((value.float() * scored).sum()), n)
    if entropy:
        out["entropy"] = (sum(s for s, _ in entropy), sum(c for _, c in entropy))
    return out


def _merge(parts: list[dict]) -> dict:
    keys = {k for p in parts for k in p}
    merged = {}
    for k in keys:
        total = sum(p[k][0] for p in parts if k in p)
        count = sum(p[k][1] for p in parts if k in p)
        merged[k] = (total, count)
    return merged


def finalize_metrics(merged: dict) -> dict[str, float]:
    """Means of the merged diagnostics (loss: mean over micro-batches and iterations)."""
    return {k: (t / c if c else 0.0) for k, (t, c) in sorted(merged.items())}
