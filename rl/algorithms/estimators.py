"""Log-prob estimators: how a masked diffusion LM's log-likelihood of a rollout is estimated.

A dLLM's sequence likelihood is intractable, so every method scores the rollout through a few model
inputs ("units") built from its trajectory record. An estimator returns :class:`Units` for the whole
rollout batch — U inputs per row, the target tokens scored in each, and which positions count — and
optionally combines the per-unit log-probs into the per-token values the loss sees:

- ``one_step`` (d1's diffu-GRPO): one unit — the completion fully masked, each prompt token masked
  with probability ``p_mask_prompt``; log p of every completion token (mean-field surrogate).
- ``elbo_mc``: ``elbo_samples`` units — masking ratio t ~ U(0, 1), each completion token masked with
  probability t, weight 1/t on the masked tokens; with ``elbo_coupled`` the draws come in
  complementary pairs (t, mask) and (1 − t, ¬mask). Combined: the per-token ELBO contribution, whose
  sum over the completion is an unbiased estimate of the sequence ELBO.
- ``elbo_stratified`` (ESPO): exact-count masks stratified across the batch's rows, each with its complement.
- ``coupled`` (coupled-GRPO): the fully masked completion plus one complementary pair at a shared t.
- with ``elbo_per_sample`` (BGPO), the ELBO estimators keep each sample as a unit, valued by its own estimate.
- ``elbo_sdmc`` (GDPO): the t-integral by Gauss–Legendre quadrature on [0, 1] (``elbo_nodes``) with
  ``elbo_masks_per_node`` random masks at each node.
- ``trajectory`` (CJ-GRPO, JustGRPO, d2, TraceRL): one unit per recorded step s — the replayed state x_s,
  scoring the tokens committed at s; steps selected by ``step_selection`` (all, every k-th, k at random, or
  merged groups of k consecutive steps, each scored from the state before its first step); with
  ``p_mask_prompt`` > 0 the prompt is masked as for ``one_step``, once per iteration for all units (d2).
- ``step_prediction`` (MDPO): one unit per recorded step — x_s, scoring the step's full prediction
  on its masked positions, optionally weighted by the rollout confidence and by L/|masked| (folded into
  the unit's advantage); the k steps with the largest |advantage| per row (``step_selection: top_k``).

Scoring (``logp_policy``) uses the rollout's own policy (``sampler``: ``rollouts.sampling.policy_logits``, mask
token excluded, the sampler's filters), so a trajectory unit's log-prob is the value the sampler recorded, or
the model's softmax over its whole vocabulary (``model``, what the reference codes score), at
``logp_temperature`` (default: the rollout temperature, 1 for greedy rollouts). With ``attend_prompt_padding``
the model sees the prompts' left padding (no attention mask) and d1's prompt masking may mask it, as in d1's code.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unmask.rollouts.adapter import ModelAdapter
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import policy_logits, policy_logprobs
from unmask.rollouts.trajectory import Trajectory

from .batch import RolloutBatch
from .objective import register_estimator


@dataclass
class Units:
    """The model inputs an estimator scores for B rows: U units per row."""

    inputs: torch.Tensor        # [B, U, T] prompt ++ completion state
    targets: torch.Tensor       # [B, U, L] completion tokens whose log-prob is taken (any id where not selected)
    select: torch.Tensor        # [B, U, L] bool: positions scored in each unit
    coef: torch.Tensor | None = None          # [B, U, L] combining weights (ELBO), None = no combining
    loss_select: torch.Tensor | None = None   # [B, U', L] positions in the loss after combining (None = select)
    loss_weight: torch.Tensor | None = None   # [B, U', L] per-token loss weight (MDPO confidence), None = 1
    adv_index: torch.Tensor | None = None     # [B, U'] index into per-step advantages [B, S'], None = per-row
    adv_scale: torch.Tensor | None = None     # [B, U'] multiplies the unit's advantage (MDPO's L/|M_t|)
    upper: torch.Tensor | None = None         # [B] bool: rows valued by an upper bound (SPG: advantage <= 0)

    @property
    def num_units(self) -> int:
        return self.inputs.shape[1]

    def rows(self, index: slice) -> "Units":
        return Units(**{k: None if v is None else v[index] for k, v in vars(self).items()})

    def units(self, index: slice) -> "Units":
        """The units ``index`` of every row (for chunked backward; only before combining)."""
        return Units(self.inputs[:, index], self.targets[:, index], self.select[:, index],
                     None if self.coef is None else self.coef[:, index])

    @property
    def scored(self) -> torch.Tensor:
        """[B, U', L] positions in the loss."""
        return self.select if self.loss_select is None else self.loss_select


class Estimator:
    """Base: per-unit log-probs pass through unchanged (one value per scored token and unit)."""

    name = ""
    combines = False  # True when units are summed into one value per token (the loss needs all of them)

    def __init__(self, settings):
        self.settings = settings

    def units(self, batch: RolloutBatch, generator: torch.Generator) -> Units:
        raise NotImplementedError

    def combine(self, logp: torch.Tensor, units: Units) -> torch.Tensor:
        return logp


def loss_positions(batch: RolloutBatch, settings) -> torch.Tensor:
    """[B, L] completion positions that enter the loss: up to and including the first EOS (with
    ``score_eos_padding`` also the EOS padding after it; with ``score_eos: false`` no EOS at all)."""
    traj = batch.traj
    scored = (torch.ones_like(traj.completion_mask, dtype=torch.bool) if getattr(settings, "score_eos_padding", False)
              else traj.completion_mask.bool())
    if not getattr(settings, "score_eos", True):
        if batch.eos_id is None:
            raise ValueError("score_eos: false leaves the EOS tokens out of the loss, so the batch must name the EOS "
                             "id (RolloutBatch(eos_id=...); the trainer sets it)")
        scored = scored & (traj.completion_ids != batch.eos_id)
    return scored


def sampler_of(traj: Trajectory) -> SamplerConfig:
    return SamplerConfig(**traj.sampler)


def scoring_temperature(traj: Trajectory, settings) -> float:
    t = getattr(settings, "logp_temperature", None)
    if t is not None:
        return float(t)
    return float(traj.sampler.get("temperature") or 0.0) or 1.0


def unit_logprobs(adapter: ModelAdapter, inputs: torch.Tensor, attention_mask: torch.Tensor | None,
                  targets: torch.Tensor, sampler: SamplerConfig, temperature: float, *, policy: str = "sampler",
                  with_entropy: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """log p(target) [B, U, L] at every completion position of every unit: one forward of B·U rows (no attention
    mask when ``attention_mask`` is None), under the sampling ``policy`` or the ``model``'s full softmax; with
    ``with_entropy``, also that distribution's entropy [B, U, L] there, from the same forward (no gradient)."""
    b, u, t = inputs.shape
    length = targets.shape[-1]
    attn = None if attention_mask is None else attention_mask.unsqueeze(1).expand(b, u, t).reshape(b * u, t)
    logits = adapter.logits(inputs.reshape(b * u, t), attn)[:, t - length:]
    if policy == "sampler":
        logits = policy_logits(logits, sampler, adapter.mask_id, adapter.eos_id)
    elif policy != "model":
        raise ValueError(f"unknown logp_policy {policy!r}; choose 'sampler' or 'model'")
    logp = policy_logprobs(logits.float(), temperature)
    chosen = logp.gather(-1, targets.reshape(b * u, length, 1).clamp(min=0)).reshape(b, u, length)
    if not with_entropy:
        return chosen
    with torch.no_grad():
        entropy = torch.special.entr(logp.detach().exp()).sum(-1).reshape(b, u, length)
    return chosen, entropy


def _with_completion(traj: Trajectory, completion: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
    """[B, U, T] inputs from completion states [B, U, L] (prompt [B, P] or per unit [B, U, P])."""
    prompt = traj.prompt_ids if prompt is None else prompt
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(1).expand(-1, completion.shape[1], -1)
    return torch.cat([prompt, completion], dim=2)


def masked_prompt(traj: Trajectory, settings, generator: torch.Generator) -> torch.Tensor:
    """[B, P] the prompts with each token masked with probability ``p_mask_prompt`` (d1's random prompt masking;
    the padding too with ``attend_prompt_padding``, as d1's code does)."""
    p = settings.p_mask_prompt
    noise = torch.rand(traj.prompt_ids.shape, generator=generator, device="cpu").to(traj.prompt_ids.device)
    maskable = noise < p if settings.attend_prompt_padding else (noise < p) & traj.prompt_mask.bool()
    return traj.prompt_ids.masked_fill(maskable, traj.mask_id)


@register_estimator("one_step")
class OneStep(Estimator):
    name = "one_step"

    def units(self, batch, generator):
        traj = batch.traj
        prompt = masked_prompt(traj, self.settings, generator)
        masked = torch.full_like(traj.completion_ids, traj.mask_id)
        return Units(inputs=_with_completion(traj, masked.unsqueeze(1), prompt.unsqueeze(1)),
                     targets=traj.completion_ids.unsqueeze(1),
                     select=loss_positions(batch, self.settings).unsqueeze(1))


def weighted_mask_units(batch: RolloutBatch, masked: torch.Tensor, weight: torch.Tensor, settings) -> Units:
    """ELBO units from masks [B, U, L] over the completion: each scores its masked tokens, weighted by
    ``weight`` [B, U] when combined; the loss sees every scored completion position."""
    traj = batch.traj
    b, u, length = masked.shape
    dev = traj.completion_ids.device
    masked = masked.to(dev)
    scored = loss_positions(batch, settings)
    coef = torch.where(masked, weight.float().unsqueeze(-1).to(dev), torch.zeros((), device=dev))
    targets = traj.completion_ids.unsqueeze(1).expand(b, u, length)
    return Units(inputs=_with_completion(traj, targets.masked_fill(masked, traj.mask_id)), targets=targets,
                 select=masked & scored.unsqueeze(1), coef=coef, loss_select=scored.unsqueeze(1))


class _Elbo(Estimator):
    """Units at masking ratios t with combining weights; the combined value per token is its ELBO term. With
    ``elbo_per_sample`` (BGPO) each unit stays its own: its value is that sample's ELBO estimate (weight 1/t)."""

    @property
    def combines(self) -> bool:
        return not self.settings.elbo_per_sample

    def ratios(self, batch_size: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(t [B, U], weight [B, U] multiplying 1/t, complement-of [U] (the unit whose mask unit u inverts, −1 for
        none) or None)."""
        raise NotImplementedError

    def units(self, batch, generator):
        traj = batch.traj
        b, length = traj.completion_ids.shape
        t, w, pair = self.ratios(b, generator)
        u = t.shape[1]
        noise = torch.rand((b, u, length), generator=generator, dtype=torch.float64)
        if self.settings.elbo_masking == "count":  # exactly floor(t L) positions, uniformly: the smallest noises
            masked = noise.argsort(-1).argsort(-1) < torch.floor(t * length).unsqueeze(-1)
        else:
            masked = noise < t.unsqueeze(-1)
        if pair is not None:  # complementary draws: the second of a pair masks exactly what the first left
            second = pair >= 0
            masked[:, second] = ~masked[:, pair[second]]
        if self.settings.elbo_per_sample:
            units = weighted_mask_units(batch, masked, 1 / t, self.settings)
            units.loss_select = None  # each sample scores its own masked tokens
            return units
        return weighted_mask_units(batch, masked, w / t, self.settings)

    def combine(self, logp, units):
        if self.settings.elbo_per_sample:
            return logp * units.coef * units.select
        return (logp * units.coef * units.select).sum(1, keepdim=True)


@register_estimator("elbo_mc")
class ElboMonteCarlo(_Elbo):
    name = "elbo_mc"

    def ratios(self, batch_size, generator):
        k = self.settings.elbo_samples
        t = torch.rand((batch_size, k), generator=generator, dtype=torch.float64)
        pair = None
        if self.settings.elbo_coupled:
            t[:, 1::2] = 1 - t[:, 0::2]
            odd = torch.arange(k) % 2 == 1
            pair = torch.where(odd, torch.arange(k) - 1, -1)  # each odd draw complements the draw before it
        return t, torch.full_like(t, 1.0 / k), pair


@register_estimator("coupled")
class Coupled(_Elbo):
    """DiffuCoder's coupled-GRPO: three units — the completion fully masked, a Bernoulli(t) mask M and its
    complement — with t ~ U(coupled_t_min, coupled_t_max) drawn once per iteration for the whole batch; each
    token's value is ½ (log p(y | all masked) + log p(y | x_M) / t or log p(y | x_M̄) / (1 − t)), whichever of
    the pair masks it."""

    name = "coupled"

    def ratios(self, batch_size, generator):
        lo, hi = self.settings.coupled_t_min, self.settings.coupled_t_max
        t = lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64)
        ratios = torch.stack([torch.ones_like(t), t, 1 - t]).expand(batch_size, 3).clone()
        return ratios, torch.full_like(ratios, 0.5), torch.tensor([-1, -1, 1])


@register_estimator("elbo_stratified")
class ElboStratified(_Elbo):
    """ESPO's ELBO: per draw one k ~ U{0..L} for the batch; row i masks exactly x_i = round(k + i (L+1)/B)
    mod (L+1) positions (counts stratified across rows), weighted (L+1)/x_i, and a second unit masks the
    complement, weighted (L+1)/(L − x_i); each weighted ½, draws averaged (``elbo_samples``)."""

    name = "elbo_stratified"

    def units(self, batch, generator):
        traj = batch.traj
        b, length = traj.completion_ids.shape
        draws = self.settings.elbo_samples
        masks, weights = [], []
        for _ in range(draws):
            k = int(torch.randint(0, length + 1, (), generator=generator))
            counts = torch.round(torch.linspace(k, k + (b - 1) * (length + 1) / b, b)).long() % (length + 1)
            ranks = torch.rand((b, length), generator=generator).argsort(-1).argsort(-1)
            first = ranks < counts.unsqueeze(1)                      # exactly x_i positions, uniformly placed
            masks += [first, ~first]
            x = counts.double()
            weights += [0.5 * (length + 1) / x / draws, 0.5 * (length + 1) / (length - x) / draws]
        return weighted_mask_units(batch, torch.stack(masks, 1), torch.stack(weights, 1), self.settings)


def gauss_legendre_01(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of n-point Gauss–Legendre quadrature on [0, 1] (weights sum to 1)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1) / 2, w / 2


@register_estimator("elbo_sdmc")
class ElboSemiDeterministic(_Elbo):
    name = "elbo_sdmc"

    def ratios(self, batch_size, generator):
        nodes, weights = gauss_legendre_01(self.settings.elbo_nodes)
        k = self.settings.elbo_masks_per_node
        t = torch.tensor(np.repeat(nodes, k), dtype=torch.float64).expand(batch_size, -1).clone()
        w = torch.tensor(np.repeat(weights / k, k), dtype=torch.float64).expand(batch_size, -1).clone()
        return t, w, None


def select_steps(num_steps: int, batch_size: int, settings, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of ``num_steps`` recorded steps become units: indices (first [B, U], last + 1 [B, U]); a
    unit covers [first, end) — one step, or k merged ones. ``scores`` [B, S] rank steps for ``top_k``."""
    k = min(settings.step_k, num_steps)
    rule = settings.step_selection
    steps = torch.arange(num_steps)
    if rule == "all":
        first = steps.expand(batch_size, -1)
        return first, first + 1
    if rule == "every_k":
        first = steps[::settings.step_k].expand(batch_size, -1)
        return first, first + 1
    if rule == "merge":
        first = steps[::settings.step_k].expand(batch_size, -1)
        return first, (first + settings.step_k).clamp(max=num_steps)
    if rule == "random":
        first = torch.rand((batch_size, num_steps), generator=generator).argsort(1)[:, :k].sort(1).values
        return first, first + 1
    if rule == "top_k":
        if scores is None:
            raise ValueError("step_selection 'top_k' ranks steps by |advantage|, which needs per-step advantages "
                             "(advantage: mdpo_stepwise)")
        first = scores.abs().argsort(dim=1, descending=True, stable=True)[:, :k].sort(1).values
        return first, first + 1
    raise ValueError(f"unknown step_selection {rule!r}")


@register_estimator("trajectory")
class TrajectorySteps(Estimator):
    name = "trajectory"

    def units(self, batch, generator):
        traj = batch.traj
        scored = loss_positions(batch, self.settings)
        active = traj.commit_step[traj.commit_step >= 0].unique().long().cpu()  # steps that committed something
        lo, hi = select_steps(len(active), traj.batch_size, self.settings, generator)
        first, end = active[lo].to(traj.commit_step.device), (active[hi - 1] + 1).to(traj.commit_step.device)
        c = traj.commit_step.unsqueeze(1).long()
        select = (c >= first.unsqueeze(-1)) & (c < end.unsqueeze(-1)) & scored.unsqueeze(1)
        states = torch.stack([traj.state(first[:, u]) for u in range(first.shape[1])], 1)
        if self.settings.p_mask_prompt > 0:  # d2: one prompt mask per iteration, shared by the units
            states[..., :traj.prompt_ids.shape[1]] = masked_prompt(traj, self.settings, generator).unsqueeze(1)
        u = first.shape[1]
        return Units(inputs=states, targets=traj.completion_ids.unsqueeze(1).expand(-1, u, -1), select=select)


@register_estimator("step_prediction")
class StepPrediction(Estimator):
    name = "step_prediction"

    def units(self, batch, generator):
        traj = batch.traj
        if "step_predictions" not in traj.extras:
            raise ValueError("the step_prediction estimator (MDPO) needs each step's full prediction: roll out "
                             "with record_predictions=True (rollout.record_predictions: true)")
        preds = traj.extras["step_predictions"].long()        # [B, S', L], -1 where not predicted
        conf = traj.extras["step_confidences"]                # [B, S', L]
        steps = traj.extras["prediction_steps"].long()        # [B, S'] global step of each slice
        adv = batch.advantages if batch.advantages is not None and batch.advantages.dim() == 2 else None
        index, _ = select_steps(preds.shape[1], traj.batch_size, self.settings, generator,
                                None if adv is None else adv.cpu())
        index = index.to(preds.device)
        rows = torch.arange(traj.batch_size, device=preds.device).unsqueeze(1)
        states = torch.stack([traj.state(steps[rows[:, 0], index[:, u]]) for u in range(index.shape[1])], 1)
        plen = traj.prompt_ids.shape[1]
        targets = preds[rows, index]                          # [B, U, L]
        select = (states[..., plen:] == traj.mask_id) & (targets >= 0)
        count = select.sum(-1)
        weight = conf[rows, index].nan_to_num(0.0) if self.settings.confidence_weighting else None
        # MDPO's L / (|M_t| + 1e-4), as its code computes it
        scale = (traj.completion_length / (count + 1e-4)).float() if self.settings.confidence_weighting else None
        return Units(inputs=states, targets=targets, select=select, loss_weight=weight, adv_index=index,
                     adv_scale=scale)


def build_estimator(settings) -> Estimator:
    from .objective import ESTIMATORS
    return ESTIMATORS.get(settings.estimator, "algorithm.estimator")(settings)
