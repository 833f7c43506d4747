"""Decoding for masked diffusion LMs — every published sampler in one loop, emitting a Trajectory.

A completion of ``max_completion_length`` masks is appended to each (left-padded) prompt and filled
block by block, left to right (``schedules.plan_blocks``). Each step runs the model
(``forward.StepForward``: exact, or with a KV cache, with optional guidance), proposes a token for
every masked position of the block with a confidence, and commits some of them:

- a fixed number per step from the schedule (LLaDA, Dream, ASS), the most confident first;
- with ``rcr``, every masked position is filled and the least confident (by running confidence) are
  re-masked again to follow the schedule (MDPO's RCR; remasking stays inside the current block);
- with ``threshold``, all positions at least that confident, and at least one (Fast-dLLM);
- with ``early_commit``, everything still masked once the answer has converged (Prophet).

Confidence (``remasking``): ``low_confidence`` — LLaDA's softmax probability of the chosen token;
``top1_prob`` / ``margin`` / ``neg_entropy`` — Dream's confidences on temperature-scaled, top-k/top-p
filtered probabilities; ``random`` — LLaDA's random remasking. EOS handling: ``logits_eos_inf`` never
generates EOS; ``confidence_eos_eot_inf`` commits EOS/EoT predictions last; ``eoser`` scales EOS
confidence by a factor rising over the steps (CJ-GRPO). The mask token itself is never proposed.

The sampling policy whose log-probabilities are recorded is softmax(filtered logits / T) over all
tokens but the mask (and EOS under ``logits_eos_inf``); T = 1 when decoding greedily.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from .adapter import ModelAdapter
from .forward import StepForward
from .sampler_config import REMASKING, SCHEDULES, SamplerConfig  # noqa: F401  (re-exported)
from .schedules import eoser_gamma, llada_commit_counts, plan_blocks
from .trajectory import NOT_COMMITTED, Trajectory

NEG_INF = float("-inf")


def gumbel_argmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """argmax(logits / T + Gumbel noise), in float64; plain argmax when T = 0."""
    if temperature == 0:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return (logits.double() / temperature - torch.log(-torch.log(u))).argmax(-1)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None,
                  temperature: float = 0.0) -> torch.Tensor:
    """Top-p (nucleus: the smallest set whose probability exceeds p) then top-k, as Dream applies them:
    the nucleus is taken on the temperature-scaled distribution softmax(logits / T) (Dream divides by
    T before filtering); removed entries get the dtype's lowest value. The logits are returned unscaled."""
    low = torch.finfo(logits.dtype).min
    if top_p is not None and top_p < 1:
        scaled = logits / temperature if temperature > 0 else logits
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        beyond = sorted_logits.softmax(-1).cumsum(-1) > top_p
        beyond[..., 1:] = beyond[..., :-1].clone()
        beyond[..., 0] = False
        logits = logits.masked_fill(beyond.scatter(-1, order, beyond), low)
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, low)
    return logits


def policy_logits(logits: torch.Tensor, cfg: SamplerConfig, mask_id: int, eos_id: int) -> torch.Tensor:
    """The sampling policy's logits (before temperature): filtered, without the mask token (and EOS
    under ``logits_eos_inf``). ``log_softmax(policy_logits / T)`` is what a rollout records."""
    logits = filter_logits(logits.float(), cfg.top_k, cfg.top_p, cfg.temperature).clone()
    logits[..., mask_id] = NEG_INF
    if cfg.logits_eos_inf:
        logits[..., eos_id] = NEG_INF
    return logits


def policy_logprobs(policy: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(policy / temperature if temperature > 0 else policy, dim=-1)


def committed_logp(policy: torch.Tensor, x0: torch.Tensor, commit: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(x0) under the policy at the committed positions (zeros elsewhere): the record's rollout log-probs.
    Every position is normalised, committed or not, so no step asks the device which are (a host synchronisation
    on a GPU); each position's value is its own row's log-softmax either way."""
    logp = policy_logprobs(policy, temperature).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    return torch.where(commit, logp, 0.0)


def propose(raw: torch.Tensor, policy: torch.Tensor, x0: torch.Tensor, cfg: SamplerConfig,
            generator: torch.Generator | None) -> torch.Tensor:
    """Confidence of each proposed token x0, as the reference samplers compute it: LLaDA's from the
    unfiltered softmax, Dream's from the temperature-scaled filtered distribution."""
    if cfg.remasking == "random":
        return torch.rand(x0.shape, device=x0.device, generator=generator)
    if cfg.remasking == "low_confidence":
        return torch.softmax(raw.float(), -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    filtered = filter_logits(raw.float(), cfg.top_k, cfg.top_p, cfg.temperature)
    probs = torch.softmax(filtered / cfg.temperature if cfg.temperature > 0 else filtered, -1)
    if cfg.remasking == "top1_prob":
        return probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    if cfg.remasking == "margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    return (probs * torch.log(probs + 1e-10)).sum(-1)  # neg_entropy


def rank_by_confidence(confidence: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Rank [B, N] of each candidate by descending confidence (stable: ties keep position order);
    candidates rank before non-candidates even when their confidence is -inf."""
    order = confidence.masked_fill(~candidates, NEG_INF).argsort(dim=-1, descending=True, stable=True)
    order = order.gather(-1, (~candidates.gather(-1, order)).long().argsort(dim=-1, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return rank


def select_most_confident(confidence: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean [B, N]: the k[b] candidate positions of row b with the highest confidence."""
    return (rank_by_confidence(confidence, candidates) < k.unsqueeze(-1)) & candidates


def first_eos_mask(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Boolean [B, L]: positions up to and including the first EOS (everything if there is none)."""
    is_eos = ids == eos_id
    return (is_eos.long().cumsum(1) - is_eos.long()) == 0


class _Recorder:
    """Accumulates the trajectory record while a batch is decoded."""

    def __init__(self, batch: int, length: int, device, cfg: SamplerConfig):
        self.commit_step = torch.full((batch, length), NOT_COMMITTED, dtype=torch.long, device=device)
        self.logp = torch.zeros(batch, length, device=device)
        self.commit_rank = (torch.full((batch, length), -1, dtype=torch.long, device=device) if cfg.record_order
                            else None)
        self.events: list[torch.Tensor] = []
        self.predictions: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
        self.finished_at = torch.full((batch,), -1, dtype=torch.long, device=device)

    def commit(self, commit: torch.Tensor, lo: int, step: int, logp: torch.Tensor, rank: torch.Tensor | None = None):
        """Record the positions ``commit`` [B, n] (completion offset ``lo``) as chosen at ``step``."""
        hi = lo + commit.shape[1]
        self.commit_step[:, lo:hi] = torch.where(commit, step, self.commit_step[:, lo:hi])
        self.logp[:, lo:hi] = torch.where(commit, logp, self.logp[:, lo:hi])
        if self.commit_rank is not None and rank is not None:
            self.commit_rank[:, lo:hi] = torch.where(commit, rank, self.commit_rank[:, lo:hi])

    def remask(self, remask: torch.Tensor, lo: int, step: int, tokens: torch.Tensor):
        """Undo commits (RCR); a token that was visible to some step is kept as an event for replay."""
        hi = lo + remask.shape[1]
        rows, pos = remask.nonzero(as_tuple=True)
        committed = self.commit_step[:, lo:hi][rows, pos]
        seen = committed < step
        if seen.any():
            self.events.append(torch.stack([rows[seen], pos[seen] + lo, tokens[rows, pos][seen], committed[seen],
                                            torch.full_like(committed[seen], step)], 1))
        self.commit_step[:, lo:hi] = torch.where(remask, NOT_COMMITTED, self.commit_step[:, lo:hi])
        self.logp[:, lo:hi] = torch.where(remask, 0.0, self.logp[:, lo:hi])


@torch.no_grad()
def sample(adapter: ModelAdapter, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None = None,
           config: SamplerConfig | None = None, generator: torch.Generator | None = None, seed: int = 0,
           on_step: Callable[[int, torch.Tensor], None] | None = None,
           fixed: torch.Tensor | None = None) -> Trajectory:
    """Decode one batch of left-padded prompts and return its :class:`Trajectory`.

    ``generator`` drives all randomness (default: seeded with ``seed``); ``on_step(step, x)`` sees the
    model input of every step that runs a forward pass (tests compare it with ``Trajectory.state``).
    ``fixed`` [B, L] (inpainting, IGPO): tokens placed in the completion before the first step (−1: free),
    never changed; each block's steps share only its free positions out (LLaDA's even split, per row). They
    are recorded as present from the start (commit step −1, no log-prob) and in ``extras["hint_mask"]``.
    """
    cfg = _resolve(adapter, config)
    start_time = time.perf_counter()
    if generator is None:
        generator = torch.Generator(prompt_ids.device).manual_seed(seed)
    if prompt_mask is None:
        prompt_mask = torch.ones_like(prompt_ids)
    rec = _Recorder(prompt_ids.shape[0], cfg.max_completion_length, prompt_ids.device, cfg)
    completion, nfe, plan = _decode(adapter, prompt_ids, prompt_mask, cfg, generator, on_step, rec, fixed)
    batch, length, device, eos_id = completion.shape[0], completion.shape[1], completion.device, adapter.eos_id
    extras = {}
    if rec.events:
        extras["remask_events"] = torch.cat(rec.events).to(torch.int32)
    elif cfg.rcr:
        extras["remask_events"] = torch.zeros(0, 5, dtype=torch.int32, device=device)
    if cfg.record_predictions:
        extras["step_predictions"], extras["step_confidences"], extras["prediction_steps"] = _stack_predictions(
            rec.predictions, batch, length, device)
    if rec.commit_rank is not None:
        extras["commit_rank"] = rec.commit_rank.to(torch.int16)
    if fixed is not None:
        extras["hint_mask"] = fixed >= 0
    return Trajectory(
        prompt_ids=prompt_ids.clone(), prompt_mask=prompt_mask.clone(), completion_ids=completion,
        completion_mask=first_eos_mask(completion, eos_id), commit_step=rec.commit_step.to(torch.int16),
        rollout_logp=rec.logp, num_steps=rec.finished_at, mask_id=adapter.mask_id, pad_id=adapter.pad_id,
        blocks=[(b.lo, b.hi) for b in plan], sampler=cfg.as_dict(), seed=seed, nfe=nfe,
        seconds=time.perf_counter() - start_time, extras=extras)


def _resolve(adapter: ModelAdapter, config: SamplerConfig | None) -> SamplerConfig:
    cfg = (config or SamplerConfig()).resolve(adapter.family.sampler_defaults)
    if cfg.early_commit and cfg.cache == "dual":
        raise ValueError("early_commit needs predictions for the whole remaining completion; "
                         "use cache 'none' or 'prefix'")
    return cfg


def _decode(adapter: ModelAdapter, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, cfg: SamplerConfig,
            generator: torch.Generator, on_step: Callable[[int, torch.Tensor], None] | None,
            rec: _Recorder | None, fixed: torch.Tensor | None = None) -> tuple[torch.Tensor, int, list]:
    """The decoding loop: the final completion [B, L], the forward passes it ran and the block plan.
    ``rec`` (when given) records the trajectory; without it no record is kept or computed."""
    device = prompt_ids.device
    batch, plen = prompt_ids.shape
    length = cfg.max_completion_length
    mask_id, eos_id = adapter.mask_id, adapter.eos_id
    eos_like = torch.tensor(adapter.stop_token_ids, device=device)
    x = torch.cat([prompt_ids, prompt_ids.new_full((batch, length), mask_id)], dim=1)
    if fixed is not None:
        if cfg.schedule != "llada" or cfg.threshold is not None or cfg.rcr:
            raise ValueError("fixed (inpainted) tokens need the llada schedule without threshold decoding or RCR")
        x[:, plen:] = torch.where(fixed >= 0, fixed.to(x.device), mask_id)
    attention_mask = torch.cat([prompt_mask, prompt_mask.new_ones((batch, length))], dim=1)
    forward = StepForward(adapter, x, attention_mask, plen, cfg.cache, cfg.cfg_scale)
    plan = plan_blocks(cfg)
    total_steps = sum(len(b.counts) for b in plan)
    completion = x[:, plen:]  # a view: writes go to x
    step = 0

    for block in plan:
        if cfg.stop_at_eos and block.lo > 0 and bool(
                ((completion[:, : block.lo] == eos_id).any(1) | ~(completion == mask_id).any(1)).all()):
            fill = completion == mask_id  # every row has finished: the rest is EOS, recorded at this step
            completion.masked_fill_(fill, eos_id)
            if rec is not None:
                rec.commit(fill, 0, step, torch.zeros_like(rec.logp))
            break
        forward.start_block(plen + block.lo, plen + block.hi)
        n_steps = len(block.counts) if cfg.threshold is None else block.hi - block.lo
        if fixed is not None:  # per row: only the block's free positions are scheduled
            row_counts = llada_commit_counts((completion[:, block.lo: block.hi] == mask_id).sum(1), n_steps)
        running_conf = torch.zeros(batch, block.hi - block.lo, device=device)  # RCR's C within the block
        # under a fixed schedule exactly sum(counts[i:]) masks are left at step i, known without asking the device
        # (a host synchronisation per step on a GPU); threshold decoding, early commit and inpainting must ask
        may_run_out = cfg.threshold is not None or cfg.early_commit or fixed is not None
        for i in range(n_steps):
            cur = completion[:, block.lo: block.hi]
            candidates = cur == mask_id
            if (not bool(candidates.any())) if may_run_out else sum(block.counts[i:]) == 0:
                break
            k = block.counts[i] if cfg.threshold is None else 1
            if fixed is not None:
                k = row_counts[:, i:i + 1]
            elif k == 0 and not cfg.rcr:
                step += 1  # Dream's schedule can commit nothing early on: no forward pass needed
                continue
            if on_step is not None:
                on_step(step, x.clone())
            logits = forward(x)  # positions block.lo .. (end of completion, or of the block)
            raw = logits[:, : block.hi - block.lo]
            policy = policy_logits(raw, cfg, mask_id, eos_id)
            x0 = gumbel_argmax(policy, cfg.temperature, generator)
            conf = propose(raw, policy, x0, cfg, generator)
            is_eos = torch.isin(x0, eos_like)
            if cfg.confidence_eos_eot_inf:
                conf = conf.masked_fill(is_eos, NEG_INF)
            if cfg.eoser:
                conf = torch.where(x0 == eos_id, conf * eoser_gamma(step, total_steps, cfg), conf)
            if rec is not None and cfg.record_predictions:
                rec.predictions.append((step, block.lo, torch.where(candidates, x0, cur),
                                        conf.masked_fill(~candidates, float("nan"))))
            rank = rank_by_confidence(conf, candidates)

            if cfg.rcr:
                commit = candidates  # fill every masked position of the block ...
                if rec is not None:
                    rec.commit(commit, block.lo, step, committed_logp(policy, x0, commit, cfg.temperature), rank)
                running_conf = torch.where(commit, conf, running_conf)
                cur.copy_(torch.where(commit, x0, cur))
                keep_masked = sum(block.counts[i + 1:])
                if keep_masked:  # ... then re-mask the least confident to follow the schedule
                    protected = running_conf.masked_fill(running_conf == 0, 1.0)
                    remask = rank_by_confidence(-protected, torch.ones_like(candidates)) < keep_masked
                    if rec is not None:
                        rec.remask(remask, block.lo, step, cur)
                    cur.masked_fill_(remask, mask_id)
            else:
                if cfg.threshold is not None:
                    commit = ((conf >= cfg.threshold) & candidates) | ((rank == 0) & candidates)
                else:
                    commit = (rank < k) & candidates
                if rec is not None:
                    rec.commit(commit, block.lo, step, committed_logp(policy, x0, commit, cfg.temperature), rank)
                cur.copy_(torch.where(commit, x0, cur))
                if cfg.early_commit:
                    _prophet(logits, completion, block.lo, cfg, mask_id, eos_id, generator, rec, step)
            if rec is not None:
                newly_done = ~(completion == mask_id).any(1) & (rec.finished_at < 0)
                rec.finished_at = torch.where(newly_done, step + 1, rec.finished_at)  # no host synchronisation
            step += 1

    if rec is not None:
        rec.finished_at[rec.finished_at < 0] = step
    return completion.clone(), forward.nfe, plan


def _prophet(logits: torch.Tensor, completion: torch.Tensor, lo: int, cfg: SamplerConfig, mask_id: int,
             eos_id: int, generator: torch.Generator | None, rec: _Recorder | None, step: int) -> None:
    """Prophet's early commit: rows whose mean top-1/top-2 logit gap over the answer window passes the
    progress-dependent threshold get every remaining mask filled with the current argmax.

    The answer window (Prophet: 5 tokens) is the ``early_commit_window`` positions just before the first
    EOS of the current prediction (committed tokens, argmax elsewhere): in d1-style formats the answer
    closes the completion. Only positions the forward scored (``lo`` onward) count; a window wholly
    before ``lo`` is committed already and counts as converged. ``early_commit_window: null`` averages
    over every still-masked position instead (then a long EOS tail alone can fire the rule)."""
    width = logits.shape[1]
    region = completion[:, lo: lo + width]
    masked = region == mask_id
    if not bool(masked.any()):
        return
    top2 = logits.topk(2, dim=-1).values
    gap_at = top2[..., 0] - top2[..., 1]  # [B, width]
    if cfg.early_commit_window is None:
        gap = (gap_at * masked).sum(1) / masked.sum(1).clamp(min=1)
    else:
        pred = completion.clone()
        pred[:, lo: lo + width] = torch.where(masked, logits.argmax(-1), region)
        length = completion.shape[1]
        pos = torch.arange(length, device=completion.device)
        is_eos = pred == eos_id
        end = torch.where(is_eos.any(1), is_eos.int().argmax(1), length).clamp(min=1)  # first predicted EOS
        window = (pos >= end[:, None] - cfg.early_commit_window) & (pos < end[:, None])
        scored = window & (pos >= lo) & (pos < lo + width)
        full_gap = gap_at.new_zeros(completion.shape)
        full_gap[:, lo: lo + width] = gap_at
        gap = torch.where(scored.any(1), (full_gap * scored).sum(1) / scored.sum(1).clamp(min=1), float("inf"))
    progress = 1 - (completion == mask_id).float().mean(1)
    g = cfg.early_commit_gaps
    threshold = torch.where(progress < 1 / 3, g[0], torch.where(progress < 2 / 3, g[1], g[2]))
    fire = (gap >= threshold) & masked.any(1)
    if not bool(fire.any()):
        return
    policy = policy_logits(logits, cfg, mask_id, eos_id)
    x0 = policy.argmax(-1)
    commit = masked & fire.unsqueeze(1)
    if rec is not None:
        rec.commit(commit, lo, step, committed_logp(policy, x0, commit, cfg.temperature))
    region.copy_(torch.where(commit, x0, region))


def _stack_predictions(preds, batch: int, length: int, device):
    """Per-step full predictions [B, S, L] (−1 where not predicted), confidences (NaN there), and the
    global step index of each recorded slice [B, S]."""
    tokens = torch.full((batch, len(preds), length), -1, dtype=torch.long, device=device)
    confs = torch.full((batch, len(preds), length), float("nan"), device=device)
    for j, (_, lo, x0, conf) in enumerate(preds):
        tokens[:, j, lo: lo + x0.shape[1]] = x0
        confs[:, j, lo: lo + x0.shape[1]] = conf
    steps = torch.tensor([p[0] for p in preds], dtype=torch.long, device=device).expand(batch, -1).contiguous()
    return tokens.to(torch.int32), confs, steps


@torch.no_grad()
def generate(adapter: ModelAdapter, prompt_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             config: SamplerConfig | None = None, generator: torch.Generator | None = None,
             record: bool = True) -> torch.Tensor:
    """Decode and return the ids [B, P + L] (prompt then completion); see :func:`sample` for the record.

    ``record=False`` skips the trajectory bookkeeping altogether (commit steps, rollout log-probs,
    re-mask events, predictions are neither kept nor computed): the same tokens, for measuring what
    recording costs. Randomness is as in :func:`sample` (default generator seeded with 0)."""
    if record:
        traj = sample(adapter, prompt_ids, attention_mask, config, generator)
        return torch.cat([prompt_ids, traj.completion_ids], dim=1)
    cfg = _resolve(adapter, config)
    if generator is None:
        generator = torch.Generator(prompt_ids.device).manual_seed(0)
    if attention_mask is None:
        attention_mask = torch.ones_like(prompt_ids)
    completion, _, _ = _decode(adapter, prompt_ids, attention_mask, cfg, generator, None, None)
    return torch.cat([prompt_ids, completion], dim=1)
