"""Policy updates for DiffusionGemma (block diffusion with uniform noise; ``rollouts/diffusion_gemma.py``): one unit per
recorded decoding step, scored as the log-probability of the samples the step accepted.

For row b, canvas c and step k, with x_k the recorded decoder input, s_k the rollout policy's self-conditioning
(its previous step's logits, replayed before the update), T_k the step's temperature and A_k its accepted set:

    ℓ_k(θ) = Σ_{i ∈ A_k} log softmax(f_θ(x_k, s_k) / T_k)[y_k,i]          (``accepted_logprobs``)
    ρ_k = exp(ℓ_k(θ) − ℓ_k(θ_old))                                      one importance ratio per step
    loss = (1 / rows) Σ_b (1 / |U_b|) Σ_{k ∈ U_b} [L(ρ_k, A_b) + β KL_k]   L: the registered loss (``clipped``:
                                                                        −min(ρA, clip(ρ, 1 − ε, 1 + ε_high) A))
    KL_k = the mean over A_k of the per-token estimate (``kl_estimator``, k3 by default) between the policy and the
           reference at the same inputs (x_k, s_k)

U_b: the selected steps (``step_selection`` ``all``, or ``random`` / ``every_k`` with ``step_k`` per canvas) at which
row b was still refining and accepted something; A_b: its group advantage (``rl/algorithms/advantages.py``). The
old log-probs and the self-conditioning of every iteration are computed before the first update.

What the objective ignores: the gradient through self-conditioning (s_k is an input, not differentiated), the
acceptance rule (A_k is taken as recorded; it depends on θ only through entropies, as a set), the re-noising
(independent of θ), the stopping rule, and that the kept canvas is its last step's argmax rather than a sample. It is
the trajectory estimator's per-step policy gradient carried over: the likelihood of the choices the sampler made,
at the states it visited. Memory: each canvas's selected steps are backpropagated together (the encoder cache of the
prompt and earlier canvases with them), one canvas and one micro-batch of rows (``micro_batch_size``) at a time; the
loss is a weighted sum of per-row, per-step terms, so this is exact. Only the selected steps' self-conditioning is
kept (``replay_logits(keep=...)``); ``checkpoint`` recomputes each step's decoder pass in the backward. The reference
(``beta`` > 0) is a context giving the reference model: the LoRA model with its adapters disabled, or a frozen copy;
with ``num_minibatches`` > 1 each iteration takes one optimizer step per consecutive share of the rows in the loss,
each normalised on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ContextManager

import torch

from unmask.rl.algorithms.losses import kl_penalty
from unmask.rl.algorithms.objective import POLICY_LOSSES
from unmask.rollouts.diffusion_gemma import BlockDiffusionRecord, accepted_logprobs, replay_logits


@dataclass
class BlockDiffusionBatch:
    """What one update consumes: the rollout record, rewards [B] and groups of ``group_size`` consecutive rows."""

    record: BlockDiffusionRecord
    rewards: torch.Tensor
    group_size: int
    mask_seeds: list[int]                     # one per inner iteration (the random step selection)
    advantages: torch.Tensor | None = None    # [B], set by an advantage estimator (``compute_advantages``)
    keep: torch.Tensor | None = None          # [B] bool: rows in the loss
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.rewards.shape[0]


@dataclass
class StepPlan:
    steps: list[list[int]]                    # per canvas: the step indices scored
    replayed: list[dict[int, torch.Tensor]]   # per canvas: {k − 1: [B, L, V]} the rollout policy's logits (s_k)
    old: list[torch.Tensor]                   # per canvas: [B, len(steps)] ℓ_k(θ_old)
    scored: list[torch.Tensor]                # per canvas: [B, len(steps)] bool: the step is in U_b
    ref: list[torch.Tensor] | None = None     # per canvas: [B, len(steps), L] the reference's per-token log-probs


def select_steps(refining: torch.Tensor, settings, generator: torch.Generator) -> list[int]:
    """Indices of the steps of one canvas to score (shared by the rows): ``refining`` [B, N]."""
    active = [j for j in range(refining.shape[1]) if bool(refining[:, j].any())]
    rule, k = settings.step_selection, settings.step_k
    if rule == "all":
        return active
    if rule == "every_k":
        return active[::k]
    if rule == "random":
        order = torch.randperm(len(active), generator=generator)[:k].sort().values
        return [active[i] for i in order.tolist()]
    raise ValueError(f"algorithm.step_selection {rule!r} is not available for DiffusionGemma; use all, every_k or "
                     f"random")


class BlockDiffusionUpdate:
    """``num_iterations`` × ``num_minibatches`` optimizer steps on one batch of DiffusionGemma rollouts (see the module
    docstring). ``reference``: a function returning a context manager that yields the reference model (None: the
    policy's own module, e.g. inside ``peft_model.disable_adapter()``), needed when ``beta`` > 0."""

    def __init__(self, model, settings, reference: Callable[[], ContextManager] | None = None,
                 micro_batch_size: int | None = None, checkpoint: bool = False):
        if settings.beta > 0 and reference is None:
            raise ValueError("algorithm.beta > 0 needs a reference for DiffusionGemma: pass reference= (e.g. "
                             "peft_model.disable_adapter), or set algorithm.beta: 0")
        self.model, self.settings, self.reference = model, settings, reference
        self.micro_batch_size, self.checkpoint = micro_batch_size, checkpoint
        self.loss = POLICY_LOSSES.get(settings.loss, "algorithm.loss")

    @torch.no_grad()
    def plan(self, batch: BlockDiffusionBatch) -> list[StepPlan]:
        """Every iteration's steps, self-conditioning, old and reference log-probs, before any update."""
        rec, model = batch.record, self.model
        was_training = model.training
        model.eval()
        selections = []
        for j in range(self.settings.num_iterations):
            g = torch.Generator().manual_seed(int(batch.mask_seeds[j]))
            selections.append([select_steps(rec.refining[:, c], self.settings, g) for c in range(rec.canvases)])
        # the self-conditioning of the selected steps only: their previous steps' logits
        replayed = [replay_logits(model, rec, c, keep={k - 1 for steps in selections for k in steps[c] if k > 0})
                    for c in range(rec.canvases)]
        plans = []
        for steps in selections:
            every = torch.arange(batch.size)
            old = [self._logprobs(model, rec, c, s, replayed[c], every) if s else None for c, s in enumerate(steps)]
            scored = [(rec.refining[:, c, s] & rec.accepted[:, c, s].any(-1)) for c, s in enumerate(steps)]
            ref = None
            if self.settings.beta > 0:
                with self.reference() as ref_model:
                    ref = [self._logprobs(ref_model or model, rec, c, s, replayed[c], every, per_token=True)
                           if s else None for c, s in enumerate(steps)]
            plans.append(StepPlan(steps, replayed, old, scored, ref))
        model.train(was_training)
        return plans

    def _micro_batches(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return index.split(self.micro_batch_size or max(len(index), 1))

    def _logprobs(self, model, record, canvas: int, steps: list[int], replayed: dict[int, torch.Tensor],
                  index: torch.Tensor, per_token: bool = False) -> torch.Tensor:
        """``accepted_logprobs`` of the rows ``index``, a micro-batch at a time (no gradients: the plan's)."""
        return torch.cat([accepted_logprobs(model, record.rows(part), canvas, steps,
                                            {k: v[part] for k, v in replayed.items()}, per_token=per_token)
                          for part in self._micro_batches(index)])

    def run(self, batch: BlockDiffusionBatch, optimizer_step: Callable[[], None]) -> dict[str, float]:
        if batch.advantages is None or batch.advantages.dim() != 1:
            raise ValueError("compute per-row advantages first (rl.algorithms.advantages.compute_advantages)")
        plans = self.plan(batch)
        self.model.train()
        keep = batch.keep if batch.keep is not None else torch.ones(batch.size, dtype=torch.bool)
        kept = keep.nonzero().flatten()
        parts = [kept[part] for part in torch.tensor_split(torch.arange(len(kept)), self.settings.num_minibatches)]
        history = []
        for plan in plans:
            for part in parts:
                rows = torch.zeros_like(keep).index_fill(0, part, True) if len(part) else torch.zeros_like(keep)
                history.append(self._step(batch, plan, rows))
                optimizer_step()
        return {k: sum(h[k] for h in history) / len(history) for k in history[0]}

    def _step(self, batch: BlockDiffusionBatch, plan: StepPlan, rows: torch.Tensor) -> dict[str, float]:
        """Backpropagate the loss of ``rows`` [B] bool (one optimizer step's share), canvas by canvas."""
        s = self.settings
        units = sum(sc.sum(1) for sc in plan.scored)
        weight = rows.float() / units.clamp(min=1) / max(int((rows & (units > 0)).sum()), 1)   # 1 / (|U_b| · rows)
        total = clipped = count = kl_sum = 0.0
        for c, steps in enumerate(plan.steps):
            for part in self._micro_batches(rows.nonzero().flatten()) if steps else ():
                sub = batch.record.rows(part)
                tokens = accepted_logprobs(self.model, sub, c, steps, {k: v[part] for k, v in plan.replayed[c].items()},
                                           per_token=True, checkpoint=self.checkpoint)
                new, mask = tokens.sum(-1), plan.scored[c][part]
                adv = batch.advantages[part].float().unsqueeze(1).expand_as(new)
                per_step, info = self.loss(new.unsqueeze(-1), plan.old[c][part].unsqueeze(-1), adv, mask.unsqueeze(-1),
                                           s)
                per_step = per_step.squeeze(-1)
                if s.beta > 0:
                    live = sub.accepted[:, c, steps] & sub.refining[:, c, steps, None]
                    kl = ((kl_penalty(tokens, plan.ref[c][part], s.kl_estimator) * live).sum(-1)
                          / live.sum(-1).clamp(min=1))
                    per_step = per_step + s.beta * kl
                    kl_sum += float((kl.detach() * mask).sum())
                loss = (per_step * mask * weight[part][:, None]).sum()
                loss.backward()
                total += float(loss.detach())
                region = info.get("clip_ratio/region_mean")
                if region is not None:
                    clipped += float((region.squeeze(-1) & mask).sum())
                count += float(mask.sum())
        out = {"loss": total, "clip_ratio/region_mean": clipped / max(count, 1.0), "units": count}
        if s.beta > 0:
            out["kl"] = kl_sum / max(count, 1.0)
        return out
