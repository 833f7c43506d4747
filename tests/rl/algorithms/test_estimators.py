"""Log-prob estimators on exact small cases: the ELBO by enumeration, trajectory log-probs against
the rollout record, shared masks between old and new evaluations."""
from __future__ import annotations

import itertools
import math

import torch

from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.algorithms.estimators import Units, build_estimator, gauss_legendre_01, sampler_of, unit_logprobs
from unmask.rollouts.trajectory import Trajectory

from ..toy import EOS, MASK, algorithm, rollout, toy_model


def fixed_trajectory(rows: int, prompt=(1, 2), completion=(3, 0, 4)) -> Trajectory:
    """``rows`` copies of one (prompt, completion) pair, as a record the estimators can score."""
    length = len(completion)
    return Trajectory(
        prompt_ids=torch.tensor([list(prompt)] * rows), prompt_mask=torch.ones(rows, len(prompt), dtype=torch.long),
        completion_ids=torch.tensor([list(completion)] * rows),
        completion_mask=torch.ones(rows, length, dtype=torch.bool),
        commit_step=torch.zeros(rows, length, dtype=torch.int16), rollout_logp=torch.zeros(rows, length),
        num_steps=torch.ones(rows, dtype=torch.long), mask_id=MASK, pad_id=EOS, blocks=[(0, length)],
        sampler={"max_completion_length": length, "diffusion_steps": 1, "temperature": 1.0}, seed=0, nfe=0, seconds=0.0)


def batch_of(traj: Trajectory, group_size: int = 1, seeds=(0,)) -> RolloutBatch:
    return RolloutBatch(traj, torch.zeros(traj.batch_size), group_size, list(seeds))


def exact_elbo(lm, traj: Trajectory) -> float:
    """Σ over non-empty mask sets M of B(|M|, L−|M|+1) Σ_{i∈M} log p(y_i | y with M masked): the t-integral
    of E[(1/t) Σ_masked log p] done in closed form, every mask set enumerated."""
    y = traj.completion_ids[:1]
    length = y.shape[1]
    total = 0.0
    for k in range(1, length + 1):
        beta = math.factorial(k - 1) * math.factorial(length - k) / math.factorial(length)
        for masked in itertools.combinations(range(length), k):
            state = y.clone()
            state[0, list(masked)] = MASK
            units = torch.cat([traj.prompt_ids[:1], state], 1).unsqueeze(1)
            with torch.no_grad():
                lp = unit_logprobs(lm, units, traj.attention_mask()[:1], y.unsqueeze(1), sampler_of(traj), 1.0)[0, 0]
            total += beta * float(lp[list(masked)].sum())
    return total


def elbo_draws(lm, traj: Trajectory, **settings) -> torch.Tensor:
    """One ELBO estimate per row (all rows hold the same sequence, each with its own random draws)."""
    est = build_estimator(algorithm("gdpo", elbo_masking="bernoulli", **settings))
    units = est.units(batch_of(traj), torch.Generator().manual_seed(1234))
    with torch.no_grad():
        lp = unit_logprobs(lm, units.inputs, traj.attention_mask(), units.targets, sampler_of(traj), 1.0)
    return est.combine(lp, units)[:, 0].sum(-1).double()


def test_elbo_estimators_against_enumeration():
    lm = toy_model()
    rows = 4000
    traj = fixed_trajectory(rows)
    exact = exact_elbo(lm, traj)
    for settings in ({"estimator": "elbo_mc", "elbo_samples": 2},
                     {"estimator": "elbo_mc", "elbo_samples": 2, "elbo_coupled": True}):
        draws = elbo_draws(lm, traj, **settings)
        se = float(draws.std()) / math.sqrt(rows)
        assert abs(float(draws.mean()) - exact) < 3 * se, (settings, float(draws.mean()), exact, se)
    # equal budget (2 forward passes per sequence): semi-deterministic quadrature vs double Monte Carlo
    mc = elbo_draws(lm, traj, estimator="elbo_mc", elbo_samples=2)
    sdmc = elbo_draws(lm, traj, estimator="elbo_sdmc", elbo_nodes=2, elbo_masks_per_node=1)
    mse = {name: float(((d - exact) ** 2).mean()) for name, d in (("mc", mc), ("sdmc", sdmc))}
    print(f"\nexact ELBO {exact:.4f}; 2 forwards each: double MC var {float(mc.var()):.4f} (MSE {mse['mc']:.4f}), "
          f"SDMC var {float(sdmc.var()):.4f} (bias {float(sdmc.mean()) - exact:+.4f}, MSE {mse['sdmc']:.4f})")
    assert float(sdmc.var()) < float(mc.var()) / 2
    assert mse["sdmc"] < mse["mc"]


def test_gauss_legendre_nodes_integrate_polynomials_exactly():
    t, w = gauss_legendre_01(3)
    assert abs(w.sum() - 1) < 1e-12
    for degree in range(6):  # n nodes are exact up to degree 2n - 1
        assert abs((w * t ** degree).sum() - 1 / (degree + 1)) < 1e-12


def test_coupled_masks_are_complementary():
    est = build_estimator(algorithm("gdpo", estimator="elbo_mc", elbo_samples=4, elbo_coupled=True))
    units = est.units(batch_of(fixed_trajectory(3, completion=(3, 0, 4, 1, 2, 0))), torch.Generator().manual_seed(0))
    masked = units.inputs[..., 2:] == MASK
    assert torch.equal(masked[:, 1], ~masked[:, 0]) and torch.equal(masked[:, 3], ~masked[:, 2])


def test_complementary_masks_score_each_token_once_and_lower_the_variance():
    """coupled-GRPO's premise: a mask and its complement score every token exactly once, and at an equal forward
    count (2 per sequence) the pair's ELBO estimate varies less than two independent draws'."""
    lm = toy_model()
    traj = fixed_trajectory(4000)
    units = build_estimator(algorithm("coupled_grpo")).units(batch_of(traj), torch.Generator().manual_seed(0))
    pair = units.inputs[:, 1:, 2:] == MASK
    assert bool((pair.sum(1) == 1).all())                     # each token masked in exactly one of the pair
    assert bool((units.inputs[:, 0, 2:] == MASK).all())       # and the third unit masks the whole completion
    independent = elbo_draws(lm, traj, estimator="elbo_mc", elbo_samples=2)
    coupled = elbo_draws(lm, traj, estimator="elbo_mc", elbo_samples=2, elbo_coupled=True)
    print(f"\nELBO variance at 2 forwards: independent {float(independent.var()):.4f}, "
          f"complementary {float(coupled.var()):.4f}")
    assert float(coupled.var()) < float(independent.var())


def test_left_to_right_trajectory_is_the_exact_autoregressive_likelihood():
    """JustGRPO: block_length 1, one token per step — the trajectory units' sum is Σ_t log p(y_t | prompt, y_<t,
    masks), the exact left-to-right factorisation, computed here position by position."""
    lm = toy_model(seed=2)
    traj = rollout(lm, [[1, 2], [3, 1]], groups=2, max_completion_length=6, block_length=1, diffusion_steps=6,
                   stop_at_eos=False)
    settings = algorithm("just_grpo")
    units = build_estimator(settings).units(batch_of(traj, 2), torch.Generator().manual_seed(0))
    with torch.no_grad():
        lp = unit_logprobs(lm, units.inputs, traj.attention_mask(), units.targets, sampler_of(traj), 1.0,
                           policy="model")
    y, exact = traj.completion_ids, torch.zeros(traj.batch_size)
    for t in range(6):
        state = torch.cat([traj.prompt_ids, y[:, :t], torch.full_like(y[:, t:], MASK)], 1)
        with torch.no_grad():
            logits = lm.logits(state, traj.attention_mask())[:, traj.prompt_ids.shape[1] + t]
        exact += torch.log_softmax(logits, -1).gather(-1, y[:, t:t + 1]).squeeze(-1)
    torch.testing.assert_close((lp * units.select).sum((1, 2)), exact, atol=1e-5, rtol=0)


def test_trajectory_step_logprobs_sum_to_the_recorded_trajectory_logprob():
    for family_kw in ({}, {"block_length": 4}):
        lm = toy_model(seed=3)
        traj = rollout(lm, [[1, 2], [3]], groups=3, seed=5, max_completion_length=8, diffusion_steps=8,
                       stop_at_eos=False, **family_kw)
        est = build_estimator(algorithm("cj_grpo", score_eos_padding=True))
        units = est.units(batch_of(traj, 3), torch.Generator().manual_seed(0))
        assert units.num_units == 8 and bool((units.select.sum(1) == 1).all())  # each token scored once
        with torch.no_grad():
            lp = unit_logprobs(lm, units.inputs, traj.attention_mask(), units.targets, sampler_of(traj), 1.0)
        per_row = (lp * units.select).sum((1, 2))
        # the whole trajectory's log-probability, recomputed step by step from the record
        manual = torch.zeros(traj.batch_size)
        for s in range(8):
            state = traj.state(s)
            with torch.no_grad():
                logits = lm.logits(state, traj.attention_mask())[:, -8:]
            logits[..., MASK] = float("-inf")
            logp = torch.log_softmax(logits, -1).gather(-1, traj.completion_ids.unsqueeze(-1)).squeeze(-1)
            manual += (logp * traj.committed_at(s)).sum(1)
        torch.testing.assert_close(per_row, manual, atol=1e-5, rtol=0)
        torch.testing.assert_close(per_row, traj.rollout_logp.sum(1), atol=1e-5, rtol=0)


def test_one_step_masks_come_from_the_iteration_seed():
    lm = toy_model()
    traj = rollout(lm, [[1, 2, 3, 4, 0, 1, 2, 3]] * 2, groups=2)
    est = build_estimator(algorithm("diffu_grpo", p_mask_prompt=0.5))
    a = est.units(batch_of(traj, 2), torch.Generator().manual_seed(7))
    b = est.units(batch_of(traj, 2), torch.Generator().manual_seed(7))
    c = est.units(batch_of(traj, 2), torch.Generator().manual_seed(8))
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    assert bool((a.inputs[..., -4:] == MASK).all())               # completion fully masked
    prompt = a.inputs[:, 0, :8]
    assert bool(((prompt == MASK) | (prompt == traj.prompt_ids)).all()) and bool((prompt == MASK).any())


def test_step_selection_rules():
    lm = toy_model()
    traj = rollout(lm, [[1, 2]], groups=2, max_completion_length=8, diffusion_steps=8, stop_at_eos=False)
    def units(**kw) -> Units:
        return build_estimator(algorithm("cj_grpo", score_eos_padding=True, **kw)).units(
            batch_of(traj, 2), torch.Generator().manual_seed(0))
    every = units(step_selection="every_k", step_k=3)
    assert every.num_units == 3 and torch.equal(every.inputs[:, 1], torch.stack([traj.state(3)], 1)[:, 0])
    merged = units(step_selection="merge", step_k=3)
    assert merged.num_units == 3 and bool((merged.select.sum(1) == 1).all())    # groups still cover every token
    assert torch.equal(merged.inputs[:, 1], traj.state(3)) and int(merged.select[0, 1].sum()) == 3
    rand = units(step_selection="random", step_k=2)
    assert rand.num_units == 2 and bool((rand.select.sum((1, 2)) == 2).all())


def test_step_prediction_units_follow_mdpo():
    lm = toy_model()
    traj = rollout(lm, [[1, 2]], groups=2, max_completion_length=8, diffusion_steps=8, record_predictions=True)
    batch = batch_of(traj, 2)
    batch.advantages = torch.tensor([[0.0, 3, 0, 1, 0, 0, -5, 0], [1.0, 0, 0, 0, 0, 0, 0, 2]])
    units = build_estimator(algorithm("mdpo", step_k=2)).units(batch, torch.Generator())
    assert units.adv_index.tolist() == [[1, 6], [0, 7]]
    plen = traj.prompt_ids.shape[1]
    for u, step in enumerate([1, 6]):
        state = traj.state(step)[0]
        assert torch.equal(units.inputs[0, u], state)
        masked = state[plen:] == MASK
        assert torch.equal(units.select[0, u], masked)                   # the step's masked set
        assert abs(float(units.adv_scale[0, u]) - 8 / (int(masked.sum()) + 1e-4)) < 1e-6  # λ_t = L / |M_t|
