"""Parity of the methods beyond the first four (wd1, coupled-GRPO, ESPO, JustGRPO, d2) with their reference
code, as ``test_parity.py`` does for the first four: a fixed tiny batch through ``PolicyUpdate.run`` and through
a transcription of the reference's formulas (file named in each test), loss and gradients to 1e-6; each
listed departure is shown to change the result."""
from __future__ import annotations

import copy

import pytest
import torch

from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.training.reference import FrozenCopyReference
from unmask.rollouts.sampling import first_eos_mask

from ..toy import EOS, MASK, algorithm, rollout, toy_model
from .parity import (
    COMPLETIONS,
    REWARDS,
    agrees,
    group_mean_advantage,
    raw_logits,
    reference_side,
    unmask_side,
    with_completions,
)

PROMPTS = [[1, 2, 3], [4, 1, 2]]  # one length: the references' setting (see PADDING in rl/algorithms/methods.py)


def token_logps(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y) at the last |y| positions: raw logits, the whole vocabulary (what every reference scores)."""
    logits = raw_logits(model, x)[:, -y.shape[1]:]
    return torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def leave_one_out(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """coupled-GRPO / ESPO: A_i = r_i − (Σ_j r_j − r_i) / (G − 1)."""
    g = rewards.view(-1, group)
    return (g - (g.sum(1, keepdim=True) - g) / (group - 1)).view(-1)


def fixed_batch(seed: int, seeds: list[int], **sampler):
    lm = toy_model(seed=seed)
    traj = with_completions(rollout(lm, PROMPTS, groups=2, max_completion_length=6, diffusion_steps=6, **sampler),
                            COMPLETIONS)
    return lm, traj, RolloutBatch(traj, REWARDS.clone(), 2, seeds)


# ----------------------------------------------------------------------------------------------- wd1
@pytest.mark.parametrize("extra,same", [({}, True), ({"loss_type": "bnpo"}, False)])
def test_wd1_is_the_wd1_code(extra, same):
    lm, traj, batch = fixed_batch(1, [3, 4])
    settings = algorithm("wd1", num_iterations=2, p_mask_prompt=0.5, **extra)
    model0 = copy.deepcopy(lm.model)
    metrics, grads, plans = unmask_side(lm, batch, settings, None, micro_batch_size=2)

    # wd1 wd1/trainers/rev_grpo_trainer.py: ℓ_i = Σ_{k ≤ first EOS} log p(y_k | prompt masked at p, completion all
    # masked) (raw logits, whole vocabulary); A = r − group mean; loss = Σ_i (softmax(−A)_i − softmax(A)_i)·ℓ_i over
    # a device's micro-batch (one group), / grad. accum.; no ratio, no KL; each iteration draws a new prompt mask.
    p_len, y = traj.prompt_ids.shape[1], traj.completion_ids
    mask = first_eos_mask(y, EOS).float()
    adv = group_mean_advantage(REWARDS, 2)

    def loss(model, j, old):
        prompt = traj.prompt_ids.masked_fill(plans[j].units.inputs[:, 0, :p_len] == MASK, MASK)
        ell = (token_logps(model, torch.cat([prompt, torch.full_like(y, MASK)], 1), y) * mask).sum(1)
        total = 0
        for m in (slice(0, 2), slice(2, 4)):
            total = total + ((torch.softmax(-adv[m], 0) - torch.softmax(adv[m], 0)) * ell[m]).sum()
        return total / 2

    assert agrees(metrics, grads, *reference_side(model0, 2, lambda m, j: None, loss)) == same


# ----------------------------------------------------------------------------------------------- coupled-GRPO
@pytest.mark.parametrize("extra,same", [({}, True), ({"baseline": "mean"}, False)])
def test_coupled_grpo_is_diffucoders_code(extra, same):
    lm, traj, batch = fixed_batch(2, [5, 6])
    settings = algorithm("coupled_grpo", **extra)
    reference = FrozenCopyReference(toy_model(seed=3))
    model0, ref_model = copy.deepcopy(lm.model), reference.adapter.model
    metrics, grads, plans = unmask_side(lm, batch, settings, reference, micro_batch_size=2)
    assert metrics["clip_ratio/region_mean"] > 0 or not same

    # DiffuCoder src/open_r1/coupled_grpo.py: forward_process (t ~ U(0.2, 0.8) once per seed for the batch, M where
    # u < t, its complement; prompt never masked), selective_log_softmax (ℓ̃ = ½ (lp_all-masked + lp_M / t on M, lp_M̄ /
    # (1 − t) off M), raw logits, whole vocabulary), compute_loss (token ratio clipped at 1 ± 0.5, + 0.01·k3 KL on ℓ̃,
    # Σ over tokens ≤ first EOS / their count per micro-batch, / grad. accum.), leave-one-out advantages.
    p_len, y = traj.prompt_ids.shape[1], traj.completion_ids
    mask = first_eos_mask(y, EOS).float()
    adv = leave_one_out(REWARDS, 2).unsqueeze(1)

    def coupled(model, j):
        in_m = plans[j].units.inputs[:, 1, p_len:] == MASK                         # the iteration's fixed mask M
        seed = batch.mask_seeds[j]
        t = 0.2 + 0.6 * float(torch.rand((), generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
        all_masked = torch.cat([traj.prompt_ids, torch.full_like(y, MASK)], 1)
        lp0 = token_logps(model, all_masked, y)
        lp1 = token_logps(model, torch.cat([traj.prompt_ids, y.masked_fill(in_m, MASK)], 1), y)
        lp2 = token_logps(model, torch.cat([traj.prompt_ids, y.masked_fill(~in_m, MASK)], 1), y)
        return 0.5 * (lp0 + torch.where(in_m, lp1 / t, lp2 / (1 - t)))

    def loss(model, j, old):
        lt, ref = coupled(model, j), coupled(ref_model, j).detach()
        ratio = torch.exp(lt - old)
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.5, 1.5) * adv)
        per_token = per_token + 0.01 * (torch.exp(ref - lt) - (ref - lt) - 1)
        return sum((per_token[m] * mask[m]).sum() / mask[m].sum() for m in (slice(0, 2), slice(2, 4))) / 2

    assert agrees(metrics, grads, *reference_side(model0, 2, coupled, loss)) == same


# ----------------------------------------------------------------------------------------------- ESPO
@pytest.mark.parametrize("extra,same", [({}, True), ({"kl_level": "token"}, False)])
def test_espo_is_the_espo_code(extra, same):
    lm, traj, batch = fixed_batch(4, [7, 8])
    settings = algorithm("espo", **extra)
    reference = FrozenCopyReference(toy_model(seed=5))
    model0, ref_model = copy.deepcopy(lm.model), reference.adapter.model
    metrics, grads, plans = unmask_side(lm, batch, settings, reference, micro_batch_size=4)
    assert metrics["clip_ratio/region_mean"] > 0 or not same

    # ESPO espo/espo_trainer.py: forward_process (one k ~ U{0..L}; row i masks exactly x_i = round(k + i(L+1)/b)
    # mod (L+1) positions, prompt never), _get_elbo (B = ½ [Σ_M (L+1)/x · lp + Σ_M̄ (L+1)/(L−x) · lp] over all L
    # positions, EOS padding included; raw logits), compute_loss (ρ = exp((B − B_old)/L), clipped at 1 ± 0.2,
    # averaged over rows, + 0.01 · Σ ½ (B − B_ref)² / (b·L)), leave-one-out advantages.
    p_len, y = traj.prompt_ids.shape[1], traj.completion_ids
    b, length = y.shape
    adv = leave_one_out(REWARDS, 2)

    def elbo(model, j):
        in_m = plans[j].units.inputs[:, 0, p_len:] == MASK
        x = in_m.sum(1)
        assert any(torch.equal(x, torch.round(torch.linspace(k, k + (b - 1) * (length + 1) / b, b)).long()
                               % (length + 1)) for k in range(length + 1))                # stratified counts
        lp1 = token_logps(model, torch.cat([traj.prompt_ids, y.masked_fill(in_m, MASK)], 1), y)
        lp2 = token_logps(model, torch.cat([traj.prompt_ids, y.masked_fill(~in_m, MASK)], 1), y)
        p = (x.double() / (length + 1)).unsqueeze(1)
        inside, outside = torch.where(in_m, p, 1.0), torch.where(in_m, 1.0, length / (length + 1) - p)
        per_token = torch.where(in_m, lp1 / inside, lp2 / outside) / 2
        return per_token.sum(1)

    def loss(model, j, old):
        new, ref = elbo(model, j), elbo(ref_model, j).detach()
        ratio = torch.exp((new - old) / length)
        policy = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv).sum() / b
        return policy + 0.01 * (0.5 * (new - ref) ** 2).sum() / (b * length)

    assert agrees(metrics, grads, *reference_side(model0, 2, elbo, loss)) == same


# ----------------------------------------------------------------------------------------------- JustGRPO
@pytest.mark.parametrize("extra,same", [({}, True), ({"score_eos_padding": False}, False)])
def test_just_grpo_is_the_justgrpo_code(extra, same):
    lm = toy_model(seed=6)
    settings = algorithm("just_grpo", **extra)
    length = 6
    traj = rollout(lm, [[1, 2, 3]], groups=4, max_completion_length=length, block_length=1, diffusion_steps=length,
                   stop_at_eos=False)
    assert torch.equal(traj.commit_step.long(), torch.arange(length).expand(4, -1))      # left to right
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    traj.completion_ids[0, 2:] = EOS  # EOS padding, which the code trains on too
    batch = RolloutBatch(traj, rewards, 4, [0])
    model0 = copy.deepcopy(lm.model)
    metrics, grads, _ = unmask_side(lm, batch, settings, None, micro_batch_size=4)

    # JustGRPO grpo.py: position t scored from prompt ⊕ y_<t ⊕ [MASK]^(L−t) (raw logits, whole vocabulary), every
    # position including EOS padding; A = (r − mean) / (unbiased std + 1e-4) over the group; ρ = exp(lp − sg(lp));
    # −min(ρA, clip(ρ, 1 ± 0.2)A) / (L · (N + 1e-5)), N the rows with A ≠ 0; no KL.
    y = traj.completion_ids
    adv = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
    valid = float((adv != 0).sum())

    def loss(model, j, old):
        total = 0
        for t in range(length):
            x = torch.cat([traj.prompt_ids, y[:, :t], torch.full_like(y[:, t:], MASK)], 1)
            lp = token_logps(model, x, y)[:, t]
            ratio = torch.exp(lp - lp.detach())
            total = total - torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv).sum()
        return total / (length * (valid + 1e-5))

    assert agrees(metrics, grads, *reference_side(model0, 1, lambda m, j: None, loss)) == same


# ----------------------------------------------------------------------------------------------- d2
@pytest.mark.parametrize("extra,same", [({}, True), ({"loss_type": "grpo"}, False)])
def test_d2_is_the_d2_code(extra, same):
    lm = toy_model(seed=7)
    traj = rollout(lm, PROMPTS, groups=2, max_completion_length=8, diffusion_steps=8, stop_at_eos=False)
    batch = RolloutBatch(traj, REWARDS.clone(), 2, [9, 10])
    settings = algorithm("d2", num_iterations=2, step_k=2, **{"p_mask_prompt": 0.5, **extra})
    reference = FrozenCopyReference(toy_model(seed=8))
    model0, ref_model = copy.deepcopy(lm.model), reference.adapter.model
    metrics, grads, plans = unmask_side(lm, batch, settings, reference, micro_batch_size=2)
    assert metrics["clip_ratio/region_mean"] > 0 or not same

    # d2 diffu-grpo/diffu_grpo_trainer.py (d2StepMergeTrainer): N segments of S/N steps; segment n scored from the
    # snapshot after its first S·n/N steps, the prompt re-masked once per iteration (p_mask_prompt), raw logits;
    # token ratio clipped at 1 ± 0.5, + 0.04·k3 KL; Σ over segment n's tokens ≤ first EOS · N / Σ completion
    # mask of the micro-batch, one segment per accumulation step over 2N steps: a token mean per rollout batch.
    p_len, y, commit = traj.prompt_ids.shape[1], traj.completion_ids, traj.commit_step.long()
    mask = first_eos_mask(y, EOS).float()
    adv = group_mean_advantage(REWARDS, 2).unsqueeze(1)
    segments = [(lo, lo + 2) for lo in range(0, int(commit.max()) + 1, 2)]

    def logps(model, j):  # each token from its own segment's snapshot
        prompt_masked = plans[j].units.inputs[:, 0, :p_len] == MASK
        assert all(torch.equal(prompt_masked, plans[j].units.inputs[:, u, :p_len] == MASK)
                   for u in range(plans[j].units.num_units))                              # one mask per iteration
        prompt = traj.prompt_ids.masked_fill(prompt_masked, MASK)
        out = torch.zeros(y.shape)
        for lo, hi in segments:
            lp = token_logps(model, torch.cat([prompt, torch.where(commit < lo, y, MASK)], 1), y)
            out = out + lp * ((commit >= lo) & (commit < hi))
        return out

    def loss(model, j, old):
        lp, ref = logps(model, j), logps(ref_model, j).detach()
        ratio = torch.exp(lp - old)
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.5, 1.5) * adv)
        per_token = per_token + 0.04 * (torch.exp(ref - lp) - (ref - lp) - 1)
        return sum((per_token[m] * mask[m]).sum() / mask[m].sum() for m in (slice(0, 2), slice(2, 4))) / 2

    assert agrees(metrics, grads, *reference_side(model0, 2, logps, loss)) == same


# ----------------------------------------------------------------------------------------------- SPG
@pytest.mark.parametrize("extra,same", [
    ({}, True), ({"negative_bound": "eubo", "eubo_beta": 1.0}, True), ({"negative_bound": "elbo"}, True),  # the code's
    ({"loss_type": "grpo"}, False),                                                  # options; not its reduction
])
def test_spg_is_the_spg_code(extra, same):
    lm, traj, batch = fixed_batch(9, [11, 12], block_length=3)
    settings = algorithm("spg", num_iterations=2, **extra)
    model0 = copy.deepcopy(lm.model)
    metrics, grads, plans = unmask_side(lm, batch, settings, None, micro_batch_size=2)

    # SPG spg/spg_trainer.py: forward_process (block_random: in a block holding completion tokens exactly m of its
    # tokens masked, every later block, earlier positions at p = 0.15, positions after EOS), _get_per_seq_logps
    # (ELBO = mean over draws of the mean log p over M_j; EUBO = (1/β) mean_{u>0} log u, u_k = mean_j 1[k∈M_j]
    # p_k^β / t_j, t_j = |M_j| / L_i; mix = ½ EUBO + ½ ELBO; raw logits), compute_loss (v = ELBO if A > 0 else mix;
    # Σ −A·v·L_i / Σ L_i per micro-batch, / grad. accum.; no ratio), A = r − group mean.
    p_len, y = traj.prompt_ids.shape[1], traj.completion_ids
    cmask = first_eos_mask(y, EOS)
    lengths = cmask.sum(1).float()
    adv = group_mean_advantage(REWARDS, 2)
    beta, weight, bound = settings.eubo_beta, 0.5, settings.negative_bound

    def loss(model, j, old):
        inputs = plans[j].units.inputs                                                # [B, draws, P + L]
        draws = inputs.shape[1]
        lp = torch.stack([token_logps(model, inputs[:, d], y) for d in range(draws)], 1)
        mk = (inputs[:, :, p_len:] == MASK) & cmask.unsqueeze(1)
        n = mk.sum(-1).float()
        assert (n >= 1).all()
        elbo = ((lp * mk).sum(-1) / n).mean(-1)
        t = n / lengths.unsqueeze(1)
        u = (lp.exp() ** beta * mk / t.unsqueeze(-1)).mean(1)
        keep = u > 0
        eubo = (torch.where(keep, u, torch.ones_like(u)).log() * keep).sum(-1) / keep.sum(-1) / beta
        negative = {"mix": weight * eubo + (1 - weight) * elbo, "eubo": eubo, "elbo": elbo}[bound]
        v = torch.where(adv > 0, elbo, negative)
        per_row = -adv * v * lengths
        return sum(per_row[m].sum() / lengths[m].sum() for m in (slice(0, 2), slice(2, 4))) / 2

    assert agrees(metrics, grads, *reference_side(model0, 2, lambda m, j: None, loss)) == same


# ----------------------------------------------------------------------------------------------- BGPO
@pytest.mark.parametrize("extra,same", [({}, True), ({"loss": "clipped", "importance_sampling_level": "sequence_sum"},
                                                      False)])
def test_bgpo_is_the_bgpo_paper(extra, same):
    lm, traj, batch = fixed_batch(10, [69, 104])  # seeds whose samples each mask a token of every row
    settings = algorithm("bgpo", num_iterations=2, elbo_samples=3, **extra)
    model0 = copy.deepcopy(lm.model)
    metrics, grads, plans = unmask_side(lm, batch, settings, None, micro_batch_size=2)

    # BGPO, arXiv 2510.11683 (no public code here): per Monte Carlo sample j, t_j ~ U[0, 1], each completion token
    # masked with probability t_j, ℓ_j = (1/t_j) Σ_masked log p (Eq. 4-5; prompt never masked, tokens ≤ first EOS);
    # d_j = ℓ_j − ℓ_j^old on the same draw; g_j = (1 + d_j)·A/n if A ≥ 0 else exp(d_j)·A/n (Eq. 13);
    # loss = −(1/G) Σ_i Σ_j g_j (Eq. 14, 19); A = (r − mean) / (std + eps) over the group (Eq. 18).
    p_len, y = traj.prompt_ids.shape[1], traj.completion_ids
    cmask = first_eos_mask(y, EOS)
    g = REWARDS.view(-1, 2)
    adv = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(-1)

    def samples(model, j):  # [B, n] ℓ_j
        t = torch.rand((4, 3), generator=torch.Generator().manual_seed(batch.mask_seeds[j]), dtype=torch.float64)
        out = []
        for u in range(3):
            masked = (plans[j].units.inputs[:, u, p_len:] == MASK) & cmask
            assert bool(masked.any(1).all())  # every sample masks something (the paper's 1/n then matches)
            lp = token_logps(model, plans[j].units.inputs[:, u], y)
            out.append((lp * masked).sum(1) / t[:, u])
        return torch.stack(out, 1)

    def loss(model, j, old):
        d = samples(model, j) - old
        a = adv.unsqueeze(1)
        bound = torch.where(a >= 0, (1 + d) * a / 3, torch.exp(d) * a / 3)
        return -bound.sum(1).mean()

    assert agrees(metrics, grads, *reference_side(model0, 2, samples, loss)) == same
