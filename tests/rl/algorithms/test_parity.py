"""Each named method computes its reference's loss and gradient.

For every method a fixed tiny batch (prompts, completions, rewards, the masks the iteration seeds draw) goes
through unmask's normal path — ``PolicyUpdate.run`` with the method's defaults plus, where unmask departs by
default, the setting that restores the reference (``rl/algorithms/methods.py`` lists them) — and through a
direct transcription of the reference code's formulas written here, from the raw model call up. Two inner
iterations with a plain gradient step in between put the second one off-policy (ratios ≠ 1, some clipped),
so the ratio, clipping, KL and reduction are all exercised; losses and gradients agree to 1e-6.

The transcriptions take from unmask's side only what the issue calls the fixed batch: the trajectory record
(tokens, commit steps, recorded predictions and confidences), the masks drawn from the iteration seeds
(read off the model inputs), and the rewards. Advantages, scored positions, log-probs, ratios and
reductions are recomputed from those.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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

# ----------------------------------------------------------------------------------------------- d1 diffu-GRPO
SAME_LENGTH, PADDED = [[1, 2, 3], [4, 1, 2]], [[1, 2, 3], [4]]


@pytest.mark.parametrize("prompts,extra,same", [
    (SAME_LENGTH, {}, True),                                    # the defaults: d1's setting, prompts of one length
    (PADDED, {"attend_prompt_padding": True}, True),            # padded prompts: d1's no-attention-mask scoring
    (PADDED, {}, False),                                        # ... which unmask's default departs from
    (SAME_LENGTH, {"logp_policy": "sampler"}, False),           # the sampling policy (mask token removed) is not d1's
    (SAME_LENGTH, {"logp_temperature": 0.9}, False),            # nor are tempered logits
])
def test_diffu_grpo_is_d1(prompts, extra, same):
    lm = toy_model(seed=1)
    traj = with_completions(rollout(lm, prompts, groups=2, max_completion_length=6, diffusion_steps=6), COMPLETIONS)
    settings = algorithm("diffu_grpo", num_iterations=2, p_mask_prompt=0.5, **extra)
    batch = RolloutBatch(traj, REWARDS.clone(), 2, [11, 12])
    reference = FrozenCopyReference(toy_model(seed=2))
    model0, ref_model = copy.deepcopy(lm.model), reference.adapter.model
    metrics, grads, plans = unmask_side(lm, batch, settings, reference, micro_batch_size=2)
    assert metrics["clip_ratio/region_mean"] > 0 or not same  # the second iteration clips

    # d1 diffu-grpo/diffu_grpo_trainer.py: forward_process (prompt tokens masked where rand < p_mask_prompt, every
    # completion token masked), _get_per_token_logps (−cross_entropy of the raw logits over the whole vocabulary),
    # compute_loss (token ratio clipped at 1 ± ε, + β·k3 KL, Σ loss·mask / Σ mask per micro-batch, / grad. accum.)
    p_len = traj.prompt_ids.shape[1]
    y = traj.completion_ids
    mask = first_eos_mask(y, EOS).float()
    adv = group_mean_advantage(REWARDS, 2)

    def noisy(j):
        prompt_masked = plans[j].units.inputs[:, 0, :p_len] == MASK  # the iteration's fixed prompt mask
        prompt = traj.prompt_ids.masked_fill(prompt_masked, MASK)
        return torch.cat([prompt, torch.full_like(y, MASK)], 1)

    def logps(model, j):
        logits = raw_logits(model, noisy(j))[:, -y.shape[1]:]
        return -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").view(y.shape)

    def loss(model, j, old):
        lp, ref = logps(model, j), logps(ref_model, j).detach()
        ratio = torch.exp(lp - old)
        a = adv.unsqueeze(1)
        per_token = -torch.min(ratio * a, torch.clamp(ratio, 1 - 0.5, 1 + 0.5) * a)
        per_token = per_token + 0.04 * (torch.exp(ref - lp) - (ref - lp) - 1)
        micro = [slice(0, 2), slice(2, 4)]
        return sum((per_token[m] * mask[m]).sum() / mask[m].sum() for m in micro) / len(micro)

    assert agrees(metrics, grads, *reference_side(model0, 2, logps, loss)) == same


# ----------------------------------------------------------------------------------------------- GDPO
@pytest.mark.parametrize("extra,same", [
    ({}, True),
    ({"importance_sampling_level": "sequence_sum"}, False),  # the paper's ratio of summed ELBOs, loss / |y|
    ({"score_eos_padding": False}, False),
])
def test_gdpo_is_the_gdpo_code(extra, same):
    lm = toy_model(seed=3)
    traj = with_completions(rollout(lm, [[1, 2], [3, 4]], groups=2, max_completion_length=6, diffusion_steps=6),
                            COMPLETIONS)
    settings = algorithm("gdpo", num_iterations=2, beta=0.0, **extra)
    batch = RolloutBatch(traj, REWARDS.clone(), 2, [5, 6])
    model0 = copy.deepcopy(lm.model)
    metrics, grads, plans = unmask_side(lm, batch, settings, None, micro_batch_size=4)
    assert metrics["clip_ratio/region_mean"] > 0 or not same  # the second iteration clips

    # GDPO gdpo/likelihood_estimators.py: Gauss–Legendre nodes x on [−1, 1], t = x/2 + 1/2, weights w/2; at each node
    # exactly int(t·L) completion positions masked (prompt never), ELBO = Σ_n (w_n/2) Σ_masked log p / t_n over the
    # raw logits, EOS padding included. gdpo_trainer.py compute_loss: r = exp((ELBO − ELBO_old) / L), L the
    # completion width; −min(r·A, clip(r, 1 ± ε)·A) averaged over the batch; ε = 0.5, β = 0.
    x, w = np.polynomial.legendre.leggauss(3)
    nodes, weights = x / 2 + 0.5, w / 2
    p_len, length = traj.prompt_ids.shape[1], traj.completion_length
    y = torch.cat([traj.prompt_ids, traj.completion_ids], 1)
    adv = group_mean_advantage(REWARDS, 2)

    def elbo(model, j):
        total = 0
        for n, (t, weight) in enumerate(zip(nodes, weights)):
            masked = plans[j].units.inputs[:, n, p_len:] == MASK           # the node's fixed mask ...
            assert (masked.sum(1) == int(t * length)).all()                  # ... of exactly int(t·L) positions
            masked = torch.cat([torch.zeros_like(traj.prompt_ids, dtype=torch.bool), masked], 1)
            lp = torch.log_softmax(raw_logits(model, torch.where(masked, MASK, y)), -1)
            lp = lp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
            total = total + weight * (lp * masked).sum(-1) / t
        return total

    def loss(model, j, old):
        ratio = torch.exp((elbo(model, j) - old) / length)
        return (-torch.min(ratio * adv, torch.clamp(ratio, 1 - 0.5, 1 + 0.5) * adv)).mean()

    assert agrees(metrics, grads, *reference_side(model0, 2, elbo, loss)) == same


# ----------------------------------------------------------------------------------------------- CJ-GRPO
@pytest.mark.parametrize("extra,same", [
    ({"loss_type": "step_bnpo"}, True),   # the code's reduction: each step's tokens pooled over the micro-batch
    ({}, True),                           # the paper's per-rollout means: the same when every rollout commits as
                                          # many tokens at each step (a fixed schedule, EOS padding scored) ...
    ({"score_eos_padding": False}, False),                           # ... and not otherwise
    ({"loss_type": "step_bnpo", "logp_policy": "sampler"}, False),   # the code scores the whole vocabulary
])
def test_cj_grpo_is_the_cj_grpo_code(extra, same):
    lm = toy_model(seed=4)
    traj = rollout(lm, [[1, 2], [3, 4]], groups=2, max_completion_length=8, diffusion_steps=4, stop_at_eos=False)
    assert (traj.commit_step >= 0).all() and (traj.completion_ids == EOS).any()
    settings = algorithm("cj_grpo", num_iterations=2, **extra)
    batch = RolloutBatch(traj, REWARDS.clone(), 2, [7, 8])
    reference = FrozenCopyReference(toy_model(seed=5))
    model0, ref_model = copy.deepcopy(lm.model), reference.adapter.model
    metrics, grads, _ = unmask_side(lm, batch, settings, reference, micro_batch_size=2)
    assert metrics["clip_ratio/region_mean"] > 0 or not same  # the second iteration clips

    # CJ-GRPO cj-grpo/cj_grpo_trainer*.py: _get_per_token_logps feeds each step's input x_{s−1} (raw logits, whole
    # vocabulary); compute_loss, per step s: token ratio clipped at 1 ± ε, + β·k3 KL, summed over the step's
    # committed positions U_s of the micro-batch (EOS padding included) / |U_s|; mean over the S steps; / grad. accum.
    steps = int(traj.commit_step.max()) + 1
    y, commit = traj.completion_ids, traj.commit_step.long()
    p_len = traj.prompt_ids.shape[1]
    adv = group_mean_advantage(REWARDS, 2).unsqueeze(1)

    def logps(model, j):  # [S, B, L]: log p of the final tokens from each step's input
        out = []
        for s in range(steps):
            x = torch.cat([traj.prompt_ids, torch.where(commit < s, y, MASK)], 1)
            lp = torch.log_softmax(raw_logits(model, x)[:, p_len:], -1)
            out.append(lp.gather(-1, y.unsqueeze(-1)).squeeze(-1))
        return torch.stack(out)

    def loss(model, j, old):
        lp, ref = logps(model, j), logps(ref_model, j).detach()
        total = 0
        for m in (slice(0, 2), slice(2, 4)):
            per_step = 0
            for s in range(steps):
                ratio = torch.exp(lp[s, m] - old[s, m])
                tok = -torch.min(ratio * adv[m], torch.clamp(ratio, 1 - 0.5, 1 + 0.5) * adv[m])
                tok = tok + 0.04 * (torch.exp(ref[s, m] - lp[s, m]) - (ref[s, m] - lp[s, m]) - 1)
                committed = (commit[m] == s).float()
                per_step = per_step + (tok * committed).sum() / committed.sum()
            total = total + per_step / steps / 2
        return total

    assert agrees(metrics, grads, *reference_side(model0, 2, logps, loss)) == same


# ----------------------------------------------------------------------------------------------- MDPO
EPS32 = torch.finfo(torch.float32).eps  # MDPO's code scores at temperature + eps of the logits' dtype


@pytest.mark.parametrize("extra,same", [
    ({"loss_type": "step_sum", "logp_temperature": 0.4 + EPS32}, True),   # the code's: steps summed
    ({"logp_temperature": 0.4 + EPS32}, False),                          # unmask averages them: / k
    ({"loss_type": "step_sum", "logp_policy": "sampler", "logp_temperature": 0.4 + EPS32}, False),
])
def test_mdpo_is_the_mdpo_code(extra, same):
    lm = toy_model(seed=6)
    temperature = 0.4
    traj = rollout(lm, [[1, 2], [3, 4]], groups=2, max_completion_length=8, diffusion_steps=8,
                   temperature=temperature, record_predictions=True)
    step_rewards = torch.rand(4, traj.extras["step_predictions"].shape[1], generator=torch.Generator().manual_seed(0))
    settings = algorithm("mdpo", step_k=3, **extra)
    batch = RolloutBatch(traj, REWARDS.clone(), 2, [9], step_rewards=step_rewards)
    reference = FrozenCopyReference(toy_model(seed=7))
    model0, ref_model = copy.deepcopy(lm.model), reference.adapter.model
    metrics, grads, _ = unmask_side(lm, batch, settings, reference, micro_batch_size=4)

    # MDPO src/open_r1/mdpo/mdpo_trainer.py: per-step score a_t = (r_t − r_{t−1}, r_{−1} = 0) + 1 + mean(r_{t+1..}),
    # (the last step: + r_{T−1}), z-scored per step over the group (unbiased std + 1e-4); per rollout the k steps with
    # the largest |A|; each step: input prompt ⊕ x_t, target the step's prediction, log_softmax(logits / (T + eps))
    # over the whole vocabulary; over the masked set M_t:
    #   Σ [−min(ρA, clip(ρ)A)·L/(|M_t| + 1e-4) + β·½(ref − logp)²]·c / (|M_t| + 1e-4),
    # summed over the selected steps, / grad. accum. (one rollout per micro-batch); ρ = 1 (one iteration).
    preds, conf = traj.extras["step_predictions"].long(), traj.extras["step_confidences"]
    at = traj.extras["prediction_steps"].long()
    r = step_rewards
    future = torch.stack([r[:, t + 1:].mean(1) if t < r.shape[1] - 1 else r[:, t] for t in range(r.shape[1])], 1)
    score = (r - torch.cat([torch.zeros(4, 1), r[:, :-1]], 1)) + 1 + future
    g = score.view(2, 2, -1)
    adv = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(4, -1)
    chosen = adv.abs().topk(3, dim=1).indices
    y, commit, length = traj.completion_ids, traj.commit_step.long(), traj.completion_length

    def loss(model, j, old):
        total = 0
        for b in range(4):
            for k in chosen[b].tolist():
                state = torch.where(commit[b] < at[b, k], y[b], MASK)
                x = torch.cat([traj.prompt_ids[b], state]).unsqueeze(0)
                masked = (state == MASK).float()
                target = preds[b, k].clamp(min=0)

                def lp_of(m):
                    logits = raw_logits(m, x)[0, -length:] / (temperature + EPS32)
                    return torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)

                lp, ref = lp_of(model), lp_of(ref_model).detach()
                ratio = torch.exp(lp - lp.detach())
                lam = length / (masked.sum() + 1e-4)
                pg = -torch.min(ratio * adv[b, k], torch.clamp(ratio, 1 - 0.2, 1 + 0.2) * adv[b, k]) * lam
                tok = (pg + 0.02 * 0.5 * (ref - lp) ** 2) * masked * conf[b, k].nan_to_num(0.0)
                total = total + tok.sum() / (masked.sum() + 1e-4)
        return total / 4

    assert agrees(metrics, grads, *reference_side(model0, 1, lambda m, j: None, loss)) == same
