"""The clipped surrogate, KL estimators and TRL's aggregation modes: exact small cases and the
gradient-accumulation invariants."""
from __future__ import annotations

import pytest
import torch

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.algorithms.losses import Norms, aggregate, clipped_loss, kl_penalty
from unmask.rl.training.reference import FrozenCopyReference
from unmask.rl.training.update import PolicyUpdate

from ..toy import algorithm, grads, rollout, toy_model


def test_clipping_engages_exactly_outside_the_trust_region():
    s = algorithm("diffu_grpo", epsilon=0.2, epsilon_high=0.28)
    ratios = torch.tensor([0.5, 0.79, 0.81, 1.0, 1.27, 1.29, 2.0])
    old = torch.zeros(2, 1, 7)
    logp = torch.log(ratios).expand(2, 1, 7).clone().requires_grad_(True)
    adv = torch.tensor([[1.0], [-1.0]])
    loss, info = clipped_loss(logp, old, adv, torch.ones(2, 1, 7, dtype=torch.bool), s)
    loss.sum().backward()
    zero_grad = logp.grad[:, 0] == 0
    # A > 0: clipped (no gradient) only above 1 + ε_high; A < 0: only below 1 − ε
    assert zero_grad[0].tolist() == [False, False, False, False, False, True, True]
    assert zero_grad[1].tolist() == [True, True, False, False, False, False, False]
    assert torch.equal(info["clip_ratio/region_mean"][:, 0], zero_grad)
    # inside the region the gradient is −A·ρ (the policy-gradient term of the surrogate)
    torch.testing.assert_close(logp.grad[0, 0, :5], -ratios[:5])


def test_kl_estimators():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.exp(ref - logp) - (ref - logp) - 1)
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([0.125, 0.0]))
    assert float(kl_penalty(logp, logp, "k3").abs().max()) == 0


def test_aggregation_modes_by_hand():
    per_token = torch.tensor([[[1.0, 2.0, 3.0]], [[4.0, 0.0, 0.0]]])
    scored = torch.tensor([[[True, True, True]], [[True, False, False]]])
    norms = Norms(rows=2, tokens=4, length=3, micro_batches=1)
    assert float(aggregate(per_token, scored, "grpo", norms)) == pytest.approx((2 + 4) / 2)
    assert float(aggregate(per_token, scored, "bnpo", norms)) == pytest.approx(10 / 4)
    assert float(aggregate(per_token, scored, "dr_grpo", norms)) == pytest.approx(10 / 6)
    assert float(aggregate(per_token, scored, "dapo", Norms(2, 8, 3, 2))) == pytest.approx(10 / 8)


def _one_update_grads(lm, batch, settings, micro: int, reference=None) -> torch.Tensor:
    lm.model.zero_grad()
    captured = {}
    upd = PolicyUpdate(lm, settings, micro_batch_size=micro, reference=reference)
    upd.run(batch, lambda: captured.setdefault("g", grads(lm.model)))
    return captured["g"]


def _batch(lm, seed=0):
    traj = rollout(lm, [[1, 2], [3, 4, 0]], groups=2, seed=seed, max_completion_length=6, diffusion_steps=6)
    traj.completion_mask[:] = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0],
                                            [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    batch = RolloutBatch(traj, torch.tensor([1.0, 0.0, 0.3, 0.9]), 2, [11])
    return batch


@pytest.mark.parametrize("name,extra", [
    ("diffu_grpo", {}), ("diffu_grpo", {"importance_sampling_level": "sequence"}),
    ("cj_grpo", {"score_eos_padding": False}), ("gdpo", {"elbo_nodes": 2, "score_eos_padding": False}),
    ("diffu_grpo", {"scale_rewards": "group"}),
])
def test_batch_of_4_equals_two_accumulated_batches_of_2(name, extra):
    lm = toy_model(seed=1)
    batch = _batch(lm)
    results = {}
    for loss_type in ("grpo", "dr_grpo", "dapo", "bnpo", "step_bnpo", "step_sum"):
        s = algorithm(name, loss_type=loss_type, num_iterations=1, beta=0.04, **extra)
        compute_advantages(batch, s)
        ref = FrozenCopyReference(toy_model(seed=2))
        full = _one_update_grads(lm, batch, s, 4, ref)
        halves = _one_update_grads(lm, batch, s, 2, ref)
        results[loss_type] = float((full - halves).abs().max())
        assert float(full.abs().max()) > 1e-4
    for loss_type in ("grpo", "dr_grpo", "dapo", "step_sum"):
        assert results[loss_type] < 1e-6, results
    assert results["bnpo"] > 1e-4 and results["step_bnpo"] > 1e-4, results  # local token normalisation: on purpose


def test_one_iteration_ratio_is_one_and_clipped_gradient_is_the_policy_gradient():
    lm = toy_model(seed=1)
    batch = _batch(lm)
    for name in ("diffu_grpo", "cj_grpo", "gdpo"):
        s = algorithm(name, num_iterations=1, beta=0.0, epsilon=0.01)
        compute_advantages(batch, s)
        clipped = _one_update_grads(lm, batch, s, 4)
        reinforce = _one_update_grads(lm, batch, algorithm(name, num_iterations=1, beta=0.0, loss="reinforce"), 4)
        torch.testing.assert_close(clipped, reinforce, atol=1e-7, rtol=1e-5)
        metrics = PolicyUpdate(lm, s).run(batch, lambda: lm.model.zero_grad())
        assert metrics["clip_ratio/region_mean"] == 0


def test_old_logprobs_are_computed_before_any_update():
    """With several iterations the first sees ratio 1; later ones see the moved policy."""
    lm = toy_model(seed=1)
    batch = _batch(lm)
    s = algorithm("diffu_grpo", num_iterations=3, beta=0.0)
    batch.mask_seeds = [11, 12, 13]
    compute_advantages(batch, s)
    opt = torch.optim.SGD(lm.model.parameters(), lr=5.0)
    upd = PolicyUpdate(lm, s)
    plans = upd.plan(batch)
    with torch.no_grad():
        fresh = upd._score_combined(lm, batch, plans[0].units)
    torch.testing.assert_close(plans[0].old, fresh)
    metrics = upd.run(batch, lambda: (opt.step(), opt.zero_grad()))
    assert metrics["clip_ratio/region_mean"] > 0  # the big steps moved the policy out of the trust region


def test_zero_std_groups_are_counted_and_filtered():
    lm = toy_model()
    traj = rollout(lm, [[1], [2]], groups=2)
    batch = RolloutBatch(traj, torch.tensor([1.0, 1.0, 0.0, 1.0]), 2, [0])
    compute_advantages(batch, algorithm("diffu_grpo", filter_zero_std_groups=True))
    assert batch.metrics["frac_reward_zero_std"] == 0.5 and batch.keep.tolist() == [False, False, True, True]
    assert batch.advantages.tolist() == [0.0, 0.0, -0.5, 0.5]
    batch = RolloutBatch(traj, torch.tensor([1.0, 1.0, 0.0, 1.0]), 2, [0])
    compute_advantages(batch, algorithm("diffu_grpo", scale_rewards="group"))
    assert batch.keep.all() and batch.advantages[2] < -0.7
