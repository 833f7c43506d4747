"""The update loop's memory rule and reference policies: step-by-step backward equals one big
backward with a flat activation peak; LoRA's reference is the base model with adapters off."""
from __future__ import annotations

import pytest
import torch

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.algorithms.estimators import build_estimator, sampler_of, unit_logprobs
from unmask.rl.training.reference import AdapterDisabledReference, FrozenCopyReference
from unmask.rl.training.update import PolicyUpdate

from ..memory import track_saved_tensors
from ..toy import algorithm, grads, rollout, toy_model


def _update(lm, batch, settings, reference=None):
    lm.model.zero_grad()
    out = {}
    with track_saved_tensors() as meter:
        metrics = PolicyUpdate(lm, settings, reference=reference).run(
            batch, lambda: out.setdefault("g", grads(lm.model)))
    return out["g"], meter.peak, metrics


@pytest.mark.parametrize("name,extra", [
    ("cj_grpo", {}),                                          # per-token losses: each chunk exact on its own
    ("cj_grpo", {"importance_sampling_level": "sequence"}),   # sequence ratio: gradient-free pass first
    ("gdpo", {"elbo_nodes": 4, "elbo_masks_per_node": 2}),    # ELBO units combined per token
])
def test_step_by_step_backward_equals_one_big_backward(name, extra):
    lm = toy_model(seed=4)
    traj = rollout(lm, [[1, 2], [3]], groups=2, max_completion_length=32, diffusion_steps=32, stop_at_eos=False)
    batch = RolloutBatch(traj, torch.tensor([1.0, 0.0, 0.2, 0.7]), 2, [3, 4])
    settings = {"num_iterations": 2, "beta": 0.04, "score_eos_padding": True, **extra}
    compute_advantages(batch, algorithm(name, **settings))
    ref = FrozenCopyReference(toy_model(seed=5))
    whole, peak_whole, m_whole = _update(lm, batch, algorithm(name, **settings, backward_chunk=None), ref)
    chunked, peak_chunked, m_chunked = _update(lm, batch, algorithm(name, **settings, backward_chunk=1), ref)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)
    assert m_chunked["loss"] == pytest.approx(m_whole["loss"], abs=1e-6)
    units = build_estimator(algorithm(name, **settings)).units(batch, torch.Generator()).num_units
    print(f"\n{name} {extra}: {units} units, peak saved-for-backward {peak_whole / 2**20:.2f} MiB at once "
          f"vs {peak_chunked / 2**20:.2f} MiB step by step")
    assert peak_chunked * units / 2 < peak_whole  # ~1/units of the memory (plus the loss's small tensors)


def test_gradient_checkpointing_keeps_gradients_and_saves_memory():
    lm = toy_model(seed=4)
    traj = rollout(lm, [[1, 2]], groups=2, max_completion_length=8, diffusion_steps=8)
    batch = RolloutBatch(traj, torch.tensor([1.0, 0.0]), 2, [0])
    s = algorithm("diffu_grpo", num_iterations=1, beta=0.0)
    compute_advantages(batch, s)
    plain, peak_plain, _ = _update(lm, batch, s)
    lm.model.gradient_checkpointing = True
    ckpt, peak_ckpt, _ = _update(lm, batch, s)
    torch.testing.assert_close(ckpt, plain, atol=1e-7, rtol=1e-6)
    assert peak_ckpt < peak_plain


def _scores(adapter, traj, units):
    with torch.no_grad():
        return unit_logprobs(adapter, units.inputs, traj.attention_mask(), units.targets, sampler_of(traj), 1.0)


def test_lora_reference_is_the_base_model_with_adapters_disabled():
    peft = pytest.importorskip("peft")
    lm = toy_model(seed=6)
    traj = rollout(lm, [[1, 2]], groups=2, max_completion_length=6, diffusion_steps=6)
    units = build_estimator(algorithm("diffu_grpo")).units(RolloutBatch(traj, torch.zeros(2), 2, [0]),
                                                           torch.Generator())
    base = _scores(lm, traj, units)
    n_before = sum(p.numel() for p in lm.model.parameters())
    wrapped = peft.get_peft_model(lm.model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=lm.lora_target_modules,
                                                            init_lora_weights=False))
    ref = AdapterDisabledReference(lm, wrapped)
    policy = _scores(lm, traj, units)
    assert float((policy - base).abs().max()) > 1e-3       # the adapters change the policy ...
    with ref.use() as ref_adapter:
        torch.testing.assert_close(_scores(ref_adapter, traj, units), base)  # ... the reference is the base
    lora_params = sum(p.numel() for n, p in lm.model.named_parameters() if "lora_" in n)
    assert sum(p.numel() for p in lm.model.parameters()) == n_before + lora_params  # no second copy
    torch.testing.assert_close(_scores(lm, traj, units), policy)  # adapters back on afterwards


def test_frozen_reference_stays_put_until_synced():
    lm = toy_model(seed=7)
    ref = FrozenCopyReference(lm, device="cpu", sync_steps=2)
    with torch.no_grad():
        for p in lm.model.parameters():
            p.add_(0.1)
    ids = torch.tensor([[1, 2, 5, 5]])
    with ref.use() as r:
        before = r.logits(ids)
    assert not torch.allclose(before, lm.logits(ids))
    assert not ref.maybe_sync(1) and ref.maybe_sync(2)
    with ref.use() as r:
        torch.testing.assert_close(r.logits(ids), lm.logits(ids))
    assert all(not p.requires_grad for p in ref.adapter.model.parameters())


def test_entropy_comes_from_the_scoring_forward_with_the_same_log_probs():
    """The update's scoring (log-probs and entropy from one forward) gives unit_logprobs' values to the bit, and the
    entropy of the sampler's filtered policy; the update logs its mean over the scored positions."""
    from unmask.rollouts.sampling import policy_logits, policy_logprobs
    lm = toy_model(seed=4)
    traj = rollout(lm, [[1, 2], [3]], groups=2, max_completion_length=8, diffusion_steps=8, top_k=3)
    batch = RolloutBatch(traj, torch.tensor([1.0, 0.0, 0.2, 0.7]), 2, [3])
    s = algorithm("gdpo", elbo_nodes=2, elbo_masks_per_node=1)
    units = build_estimator(s).units(batch, torch.Generator().manual_seed(0))
    args = (lm, units.inputs, traj.attention_mask(), units.targets, sampler_of(traj), 1.0)
    logp, entropy = unit_logprobs(*args, with_entropy=True)
    assert torch.equal(logp, unit_logprobs(*args))
    b, u, t = units.inputs.shape
    length = units.targets.shape[-1]
    attention = traj.attention_mask().unsqueeze(1).expand(b, u, t).reshape(b * u, t)
    with torch.no_grad():
        logits = lm.logits(units.inputs.reshape(b * u, t), attention)[:, t - length:]
        p = policy_logprobs(policy_logits(logits, sampler_of(traj), lm.mask_id, lm.eos_id), 1.0).exp()
    want = -(p * p.log().nan_to_num(neginf=0.0)).sum(-1).reshape(b, u, length)
    torch.testing.assert_close(entropy, want)
    assert float(entropy.max()) <= float(torch.log(torch.tensor(3.0))) + 1e-5  # top_k=3: at most log 3 nats
    s = algorithm("diffu_grpo", num_iterations=1, beta=0.0, logp_policy="sampler")
    compute_advantages(batch, s)
    metrics = PolicyUpdate(lm, s).run(batch, lambda: lm.model.zero_grad())
    assert 0 < metrics["entropy"] <= float(torch.log(torch.tensor(3.0))) + 1e-5
    full = PolicyUpdate(lm, algorithm("diffu_grpo", num_iterations=1, beta=0.0)).run(batch, lambda: None)
    assert float(torch.log(torch.tensor(3.0))) < full["entropy"] <= float(torch.log(torch.tensor(7.0)))  # d1's: V


def test_bgpo_memory_is_flat_in_the_number_of_samples():
    """BGPO's point: its bound is a sum of one term per Monte Carlo sample, so with backward_chunk 1 the peak of
    saved activations does not grow with the sample count (the combined ELBO ratio's does)."""
    lm = toy_model(seed=4)
    traj = rollout(lm, [[1, 2], [3]], groups=2, max_completion_length=16, diffusion_steps=16, stop_at_eos=False)
    batch = RolloutBatch(traj, torch.tensor([1.0, 0.0, 0.2, 0.7]), 2, [3])
    peaks = {}
    for n in (2, 8):
        for chunk in (1, None):
            s = algorithm("bgpo", elbo_samples=n, backward_chunk=chunk)
            compute_advantages(batch, s)
            peaks[n, chunk] = _update(lm, batch, s)[1]
    mib = {key: round(value / 2**20, 2) for key, value in peaks.items()}
    print(f"\nBGPO peak saved-for-backward (MiB): 2 samples {mib[2, 1]}, 8 samples {mib[8, 1]} step by step; "
          f"{mib[2, None]} / {mib[8, None]} at once")
    assert peaks[8, 1] < 1.1 * peaks[2, 1]        # flat in the sample count
    assert peaks[8, None] > 3 * peaks[2, None]    # where one backward over all samples grows with it


def test_old_estimates_share_the_new_ones_masks_unless_asked_otherwise():
    """old_masks: shared (default) scores the old policy on the iteration's own masks, so before any update the
    ratio is exactly 1; independent (GDPO's code) draws the old estimate's masks apart, so it is not."""
    lm = toy_model(seed=4)
    traj = rollout(lm, [[1, 2], [3]], groups=2, max_completion_length=8, diffusion_steps=8, stop_at_eos=False)
    batch = RolloutBatch(traj, torch.tensor([1.0, 0.0, 0.2, 0.7]), 2, [3, 4])
    olds = {}
    for masks in ("shared", "independent"):
        update = PolicyUpdate(lm, algorithm("gdpo", num_iterations=2, old_masks=masks))
        plan = update.plan(batch)[0]
        olds[masks] = plan.old
        current = update._score_combined(lm, batch, plan.units)
        assert torch.equal(plan.old, current) == (masks == "shared")
    assert olds["shared"].shape == olds["independent"].shape


def test_minibatches_share_out_the_rows_in_the_loss():
    from unmask.rl.training.update import minibatches
    keep = torch.tensor([False] * 4 + [True] * 8)
    assert [p.tolist() for p in minibatches(keep, 4, True)] == [[4, 5], [6, 7], [8, 9], [10, 11]]
    two = torch.tensor([False, True, False, True])            # fewer kept rows than parts: a dropped row fills in
    assert [p.tolist() for p in minibatches(two, 3, True)] == [[1], [3], [0]]
    assert minibatches(keep, 1, True) == [slice(0, 12)]
    nothing = torch.zeros(12, dtype=torch.bool)
    assert minibatches(nothing, 3, False) == [slice(0, 12)] * 3  # nothing kept: zero-gradient steps, the run goes on
    with pytest.raises(ValueError, match="num_minibatches \\(5\\) exceeds the batch's 4 rows"):
        minibatches(two, 5, True)
