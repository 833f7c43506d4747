"""The trajectory record over every sampler: invariants, exact replay, rollout log-probs, seeds."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.rollouts.adapter import left_pad
from unmask.rollouts.sampler_config import REMASKING, SamplerConfig
from unmask.rollouts.sampling import policy_logits, policy_logprobs, sample
from unmask.rollouts.schedules import plan_blocks
from unmask.rollouts.tiny import make_tiny
from unmask.rollouts.trajectory import Trajectory

MODELS = {"llada": make_tiny("llada", seed=21), "dream": make_tiny("dream", seed=22)}
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [40, 41, 42], [70, 71, 72, 73, 74]]


def guided_logits(adapter, x, attn, prompt_length, cfg_scale):
    """An independent re-computation of the sampler's (guided) logits on a given state."""
    logits = adapter.logits(x, attn)
    if cfg_scale:
        un = x.clone()
        un[:, :prompt_length] = adapter.mask_id
        un_logits = adapter.logits(un, attn)
        logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
    return logits.float()


sampler_settings = st.fixed_dictionaries({
    "remasking": st.sampled_from(REMASKING),
    "schedule": st.sampled_from(["llada", "dream", "ass"]),
    "mode": st.sampled_from(["fixed", "rcr", "threshold", "early_commit"]),
    "eoser": st.booleans(), "confidence_eos_eot_inf": st.booleans(), "logits_eos_inf": st.booleans(),
    "cfg_scale": st.sampled_from([0.0, 0.0, 1.5]), "temperature": st.sampled_from([0.0, 0.9]),
    "blocks": st.sampled_from([1, 2, 4]), "top_k": st.sampled_from([None, 0, 20]),
    "top_p": st.sampled_from([None, 0.9]),
})


def build_config(s) -> SamplerConfig:
    length = 16
    steps = 4 if s["schedule"] == "ass" else 8
    return SamplerConfig(
        max_completion_length=length, diffusion_steps=steps, block_length=length // s["blocks"],
        temperature=s["temperature"], remasking=s["remasking"], schedule=s["schedule"], top_k=s["top_k"],
        top_p=s["top_p"], cfg_scale=s["cfg_scale"], logits_eos_inf=s["logits_eos_inf"],
        confidence_eos_eot_inf=s["confidence_eos_eot_inf"],
        eoser=s["eoser"] and s["remasking"] not in ("margin", "neg_entropy"), rcr=s["mode"] == "rcr",
        threshold=0.05 if s["mode"] == "threshold" else None, early_commit=s["mode"] == "early_commit",
        early_commit_gaps=[1.0, 0.5, 0.2], stop_at_eos=False)


@settings(max_examples=40, deadline=None)
@given(family=st.sampled_from(sorted(MODELS)), s=sampler_settings, seed=st.integers(0, 1000))
def test_record_invariants_replay_and_logprobs(family, s, seed):
    adapter = MODELS[family]
    cfg = build_config(s)
    if s["schedule"] == "ass" and s["blocks"] > 4:
        return
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    seen = {}
    traj = sample(adapter, ids, mask, cfg, seed=seed, on_step=lambda step, x: seen.__setitem__(step, x))
    plen = ids.shape[1]

    assert torch.equal(traj.prompt_ids, ids)  # prompt never altered
    assert not (traj.completion_ids == adapter.mask_id).any()  # nothing left masked
    if cfg.logits_eos_inf:  # EOS handling: never generated when suppressed
        assert not (traj.completion_ids == adapter.eos_id).any()
    steps = traj.commit_step.long()
    assert (steps >= 0).all() and (steps < traj.num_steps.unsqueeze(1)).all()  # every position committed in range
    for step, x in seen.items():  # replay rebuilds exactly the inputs the sampler saw
        assert torch.equal(traj.state(step), x), f"replay differs at step {step}"
        assert torch.equal(x[:, :plen], ids)

    # the recorded log-prob is a fresh forward on the replayed state under the sampling policy
    resolved = cfg.resolve(adapter.family.sampler_defaults)
    for step in seen:
        committed = traj.committed_at(step)
        if not committed.any():
            continue
        logits = guided_logits(adapter, traj.state(step), traj.attention_mask(), plen, cfg.cfg_scale)[:, plen:]
        logp = policy_logprobs(policy_logits(logits, resolved, adapter.mask_id, adapter.eos_id), cfg.temperature)
        expected = logp.gather(-1, traj.completion_ids.long().unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(traj.rollout_logp[committed], expected[committed], atol=1e-5)

    # each row decodes its blocks in order (per row: Prophet's early commit fills a row's later blocks at once,
    # while other rows are still in an earlier block), and fixed schedules commit exactly their planned counts
    plan = plan_blocks(resolved)
    for a, b in zip(plan, plan[1:]):
        assert (steps[:, a.lo:a.hi].amax(1) <= steps[:, b.lo:b.hi].amin(1)).all()
    if s["mode"] == "fixed":
        expected_counts = [c for blk in plan for c in blk.counts]
        for step, count in enumerate(expected_counts):
            assert ((steps == step).sum(1) == count).all()

    again = sample(adapter, ids, mask, cfg, seed=seed)
    assert all(torch.equal(getattr(traj, k), getattr(again, k)) for k in Trajectory._TENSORS)  # seeds reproduce


def test_rcr_follows_the_schedule_and_replays_remasked_tokens():
    adapter = MODELS["llada"]
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=8, block_length=16, temperature=0.9, rcr=True)
    seen = {}
    traj = sample(adapter, ids, mask, cfg, seed=3, on_step=lambda s, x: seen.__setitem__(s, x))
    assert len(traj.extras["remask_events"]) > 0  # tokens really were revised
    for step, x in seen.items():
        unmasked = (x[:, ids.shape[1]:] != adapter.mask_id).sum(1)
        assert (unmasked == 2 * step).all()  # 16 tokens over 8 steps: exactly 2 more visible per step
        assert torch.equal(traj.state(step), x)


def test_optional_extras_do_not_change_tokens_and_have_their_shapes():
    adapter = MODELS["dream"]
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=8, block_length=8, temperature=0.9)
    plain = sample(adapter, ids, mask, cfg, seed=5)
    cfg.record_predictions = cfg.record_order = True
    rich = sample(adapter, ids, mask, cfg, seed=5)
    assert torch.equal(plain.completion_ids, rich.completion_ids) and torch.equal(plain.commit_step, rich.commit_step)
    assert plain.extras == {}
    preds = rich.extras["step_predictions"]
    assert preds.shape == (3, 8, 16)
    # each step's prediction agrees with the token committed at that step
    for j, step in enumerate(rich.extras["prediction_steps"][0].tolist()):
        committed = rich.committed_at(step)
        assert torch.equal(preds[:, j][committed].long(), rich.completion_ids[committed])
    ranks = rich.extras["commit_rank"]
    assert (ranks[rich.commit_step == 0] >= 0).all()


def test_save_load_and_cat_round_trip(tmp_path):
    adapter = MODELS["llada"]
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=8, block_length=8, temperature=0.9, rcr=True,
                        record_predictions=True)
    a = sample(adapter, *left_pad(PROMPTS[:2], adapter.pad_id), cfg, seed=1)
    b = sample(adapter, *left_pad(PROMPTS[2:], adapter.pad_id), cfg, seed=2)
    both = Trajectory.cat([a, b])
    both.save(tmp_path / "t.safetensors")
    loaded = Trajectory.load(tmp_path / "t.safetensors")
    for k in Trajectory._TENSORS:
        assert torch.equal(getattr(loaded, k), getattr(both, k))
    assert loaded.extras.keys() == both.extras.keys()
    assert all(torch.equal(loaded.extras[k].nan_to_num(-7), both.extras[k].nan_to_num(-7)) for k in both.extras)
    assert (loaded.blocks, loaded.sampler, loaded.nfe) == (both.blocks, both.sampler, a.nfe + b.nfe)
    for step in range(8):  # replay survives concatenation (re-mask events renumbered to their rows)
        assert torch.equal(both.state(step)[2:, -16:], b.state(step)[:, -16:])
        assert torch.equal(both.state(step)[:2, -16:], a.state(step)[:, -16:])
    assert (tmp_path / "t.safetensors").read_bytes()[:8]  # a safetensors file, no pickle involved
