"""Each published sampler's defining behaviour, on scripted models whose confidences are set exactly."""
import pytest
import torch

from tests.rollouts.scripted import EOS, EOT, MASK, peaked, scripted_adapter
from unmask.rollouts.adapter import left_pad
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import generate, sample
from unmask.rollouts.schedules import ass_step_sizes, eoser_gamma, plan_blocks
from unmask.rollouts.tiny import make_tiny

PROMPT = torch.tensor([[10, 11, 12]])


def order_of_commits(traj):
    return traj.commit_step[0].tolist()


def test_confidence_eos_eot_inf_commits_eos_and_eot_last():
    # positions 0 and 1 predict EOS and EoT with the highest probabilities; 2 and 3 are ordinary tokens
    adapter = scripted_adapter(peaked([EOS, EOT, 65, 66], [0.9, 0.8, 0.5, 0.4]), 3)
    cfg = SamplerConfig(max_completion_length=4, diffusion_steps=4, stop_at_eos=False)
    assert order_of_commits(sample(adapter, PROMPT, config=cfg)) == [0, 1, 2, 3]  # by confidence
    cfg.confidence_eos_eot_inf = True
    # both EOS and EoT go last (LLaDA's own flag only removed EoT from the ranking)
    assert order_of_commits(sample(adapter, PROMPT, config=cfg)) == [2, 3, 0, 1]
    assert adapter.stop_token_ids == [EOS, EOT]


def test_logits_eos_inf_never_generates_eos():
    adapter = scripted_adapter(peaked([EOS] * 4, [0.99] * 4), 3)
    traj = sample(adapter, PROMPT,
                  config=SamplerConfig(max_completion_length=4, diffusion_steps=4, logits_eos_inf=True))
    assert not (traj.completion_ids == EOS).any()
    assert (traj.rollout_logp < 0).all()  # the policy renormalised over the remaining tokens


def test_eoser_delays_eos_early_and_not_late():
    adapter = scripted_adapter(peaked([EOS, 65, 66, 67], [0.9, 0.5, 0.45, 0.4]), 3)
    cfg = SamplerConfig(max_completion_length=4, diffusion_steps=4, eoser=True, stop_at_eos=False)
    # step 0: 0.9 * 0.4 = 0.36 < 0.5 → ordinary token first; EOS's factor rises each step
    commits = order_of_commits(sample(adapter, PROMPT, config=cfg))
    assert commits[0] > 0 and commits[1] == 0
    assert eoser_gamma(0, 4, cfg) == pytest.approx(0.4) and eoser_gamma(3, 4, cfg) == pytest.approx(1.0)
    ass = SamplerConfig(max_completion_length=128, diffusion_steps=7, schedule="ass", eoser=True, eoser_gamma_min=0.01)
    assert eoser_gamma(0, 7, ass) == pytest.approx(0.01 + 0.99 / 128)  # fraction decoded after step 0 = 1/128


def test_stop_at_eos_fills_the_rest_and_saves_forward_passes():
    adapter = scripted_adapter(peaked([65, EOS] + [EOS] * 6, [0.9] * 8), 3)
    cfg = SamplerConfig(max_completion_length=8, diffusion_steps=8, block_length=2)
    traj = sample(adapter, PROMPT, config=cfg)
    assert traj.nfe == 2 and adapter.model.calls == 2  # block 0 only: it ended with EOS
    assert traj.completion_ids[0].tolist() == [65] + [EOS] * 7
    assert traj.completion_mask[0].tolist() == [True, True] + [False] * 6
    assert traj.commit_step[0, 2:].tolist() == [2] * 6 and (traj.rollout_logp[0, 2:] == 0).all()
    cfg.stop_at_eos = False
    assert sample(adapter, PROMPT, config=cfg).nfe == 8


def test_threshold_commits_all_confident_positions_at_once():
    adapter = scripted_adapter(peaked([65, 66, 67, 68], [0.95, 0.95, 0.3, 0.95]), 3)
    cfg = SamplerConfig(max_completion_length=4, diffusion_steps=4, threshold=0.9)
    traj = sample(adapter, PROMPT, config=cfg)
    assert order_of_commits(traj) == [0, 0, 1, 0] and traj.nfe == 2  # three at once, then the unsure one


def test_prophet_early_commit_fills_everything_once_converged():
    adapter = scripted_adapter(peaked([65, 66, 67, 68, 69, 70, 71, 72], [0.999] * 8), 3)
    cfg = SamplerConfig(max_completion_length=8, diffusion_steps=8, block_length=4, early_commit=True)
    traj = sample(adapter, PROMPT, config=cfg)
    assert traj.nfe == 1 and traj.completion_ids[0].tolist() == list(range(65, 73))
    assert traj.num_steps.tolist() == [1]


def test_prophet_judges_the_answer_window_not_the_eos_tail():
    # an unsure 4-token answer followed by a sure EOS tail: the mean over all masked positions passes
    # the threshold at once, the window (the positions before the first predicted EOS) does not
    adapter = scripted_adapter(peaked([65, 66, 67, 68] + [EOS] * 12, [0.01] * 4 + [0.999] * 12), 3)
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=16, block_length=16, early_commit=True,
                        early_commit_gaps=[5.0, 5.0, 5.0], stop_at_eos=False)
    assert sample(adapter, PROMPT, config=cfg).nfe > 1
    cfg.early_commit_window = None
    assert sample(adapter, PROMPT, config=cfg).nfe == 1
    cfg.early_commit_window = 0
    with pytest.raises(ValueError, match="early_commit_window must be at least 1"):
        cfg.check()


def test_ass_layout_matches_cj_grpo():
    assert ass_step_sizes(128) == [1, 2, 4, 8, 16, 32, 65]
    assert ass_step_sizes(256) == [1, 2, 4, 8, 16, 32, 64, 129]
    plan = plan_blocks(SamplerConfig(max_completion_length=128, diffusion_steps=7, block_length=32, schedule="ass"))
    assert [b.hi - b.lo for b in plan] == [15, 16, 32, 65]
    assert [b.counts for b in plan] == [(1, 2, 4, 8), (16,), (32,), (65,)]
    with pytest.raises(ValueError, match="set diffusion_steps to 7"):
        SamplerConfig(max_completion_length=128, diffusion_steps=64, schedule="ass").check()


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_kv_cache_is_exact_while_the_context_is_unchanged(family):
    adapter = make_tiny(family, seed=4)
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10], [30, 31, 32]], adapter.pad_id)
    x = torch.cat([ids, torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))], 1)
    attn = torch.cat([mask, torch.ones(2, 12, dtype=torch.long)], 1)
    full, kv = adapter.model(x, attention_mask=attn, return_kv=True)
    lo, hi = 10, 14
    from unmask.rollouts.models.layers import position_ids_from_mask
    pos = position_ids_from_mask(attn, 2, x.shape[1], x.device)
    dual = kv.slice(0, lo).cat(kv.slice(hi))
    block = adapter.model(x[:, lo:hi], attention_mask=attn[:, lo:hi], position_ids=pos[:, lo:hi], past=dual)
    assert (block - full[:, lo:hi]).abs().max() < 1e-5
    prefix = adapter.model(x[:, lo:], attention_mask=attn[:, lo:], position_ids=pos[:, lo:], past=kv.slice(0, lo))
    assert (prefix - full[:, lo:]).abs().max() < 1e-5


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_a_cache_with_room_attends_bit_identically_to_concatenation(family):
    # the preallocated buffers hold the same keys in the same order as torch.cat: equal logits, pass after pass
    adapter = make_tiny(family, seed=4)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 18), generator=g)
    attn = torch.ones(2, 18, dtype=torch.long)
    attn[1, :3] = 0
    from unmask.rollouts.models.layers import position_ids_from_mask
    pos = position_ids_from_mask(attn, 2, 18, x.device)
    with torch.no_grad():
        _, kv = adapter.model(x, attention_mask=attn, return_kv=True)
        lo, hi = 10, 14
        plain = kv.slice(0, lo).cat(kv.slice(hi))
        roomy = plain.with_room(hi - lo)
        for _ in range(3):  # each pass overwrites the room
            x[:, lo:hi] = torch.randint(0, 256, (2, hi - lo), generator=g)
            args = dict(attention_mask=attn[:, lo:hi], position_ids=pos[:, lo:hi])
            want = adapter.model(x[:, lo:hi], past=plain, **args)
            assert torch.equal(adapter.model(x[:, lo:hi], past=roomy, **args), want)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_decoding_with_room_gives_the_tokens_of_concatenation(cache, monkeypatch):
    adapter = make_tiny("llada", seed=6)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [30, 31]], adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=8, block_length=8, cache=cache, temperature=0.7)
    roomy = sample(adapter, ids, mask, cfg, torch.Generator().manual_seed(3))
    from unmask.rollouts.models.cache import KVCache
    monkeypatch.setattr(KVCache, "with_room", lambda self, active: self)  # the concatenating path
    plain = sample(adapter, ids, mask, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(roomy.completion_ids, plain.completion_ids)
    assert torch.equal(roomy.rollout_logp, plain.rollout_logp)


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_decoding_is_exact_with_one_step_per_block(family, cache):
    # with one step per block the cache is always fresh, so cached and exact decoding agree exactly
    adapter = make_tiny(family, seed=6)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [30, 31]], adapter.pad_id)
    base = dict(max_completion_length=16, diffusion_steps=4, block_length=4, cfg_scale=0.5)
    exact = sample(adapter, ids, mask, SamplerConfig(**base))
    cached = sample(adapter, ids, mask, SamplerConfig(**base, cache=cache))
    assert torch.equal(exact.completion_ids, cached.completion_ids)
    assert torch.allclose(exact.rollout_logp, cached.rollout_logp, atol=1e-5)


def test_engine_groups_batches_and_reproduces():
    adapter = make_tiny("llada", seed=8)
    cfg = SamplerConfig(max_completion_length=8, diffusion_steps=4, temperature=0.0)
    engine = RolloutEngine(adapter, cfg, batch_size=4, chat=False)
    traj = engine.rollout(["ab", "cde", [7, 8, 9]], num_generations=3, seed=1)
    assert traj.batch_size == 9 and traj.nfe == 3 * 4  # 9 rows in batches of 4, 4, 1
    # greedy: the three copies of a prompt agree, and batching does not change the result
    rows = traj.completion_ids
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[1], rows[2])
    one_batch = RolloutEngine(adapter, cfg, chat=False).rollout(["ab", "cde", [7, 8, 9]], num_generations=3, seed=1)
    assert torch.equal(one_batch.completion_ids, rows)
    hot = RolloutEngine(adapter, SamplerConfig(max_completion_length=8, diffusion_steps=4, temperature=1.0),
                        batch_size=4, chat=False)
    first, second = hot.rollout(["ab"], num_generations=4, seed=2), hot.rollout(["ab"], num_generations=4, seed=2)
    assert torch.equal(first.completion_ids, second.completion_ids)
    stats = RolloutEngine.stats(traj)
    assert stats.rows == 9 and stats.tokens_per_second > 0


def test_mask_token_is_never_committed_even_when_the_model_prefers_it():
    adapter = scripted_adapter(peaked([MASK] * 4, [0.99] * 4), 3)
    traj = sample(adapter, PROMPT, config=SamplerConfig(max_completion_length=4, diffusion_steps=2, temperature=1.0))
    assert not (traj.completion_ids == MASK).any()


def test_dream_top_p_nucleus_is_taken_on_the_temperature_scaled_distribution():
    # p = (0.5, 0.3, 0.2) at T = 1; at T = 0.25 it is (0.87, 0.11, 0.02), whose 0.7-nucleus is the top token
    # alone. Dream divides by T before filtering, so token 66 must never be sampled (it would be ~11% of
    # the time with the nucleus taken on the untempered distribution), and the policy puts all mass on 65.
    table = torch.full((8, 512), -1e4)
    table[:, 65], table[:, 66], table[:, 67] = torch.tensor([0.5, 0.3, 0.2]).log().unbind()
    adapter = scripted_adapter(table, 3)
    cfg = SamplerConfig(max_completion_length=8, diffusion_steps=8, temperature=0.25, top_p=0.7, top_k=0,
                        remasking="top1_prob", schedule="dream", stop_at_eos=False)
    traj = sample(adapter, PROMPT.repeat(64, 1), config=cfg, seed=0)
    assert (traj.completion_ids == 65).all()
    assert torch.allclose(traj.rollout_logp, torch.zeros(()), atol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_exact_mode_tokens_are_identical_with_and_without_recording(temperature, monkeypatch):
    from unmask.rollouts import sampling
    adapter = make_tiny("llada", seed=9)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [30, 31]], adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=8, block_length=8, temperature=temperature,
                        stop_at_eos=False)
    recorded = sample(adapter, ids, mask, cfg, seed=4)
    assert torch.equal(generate(adapter, ids, mask, cfg, torch.Generator().manual_seed(4)),  # default: recorded
                       torch.cat([ids, recorded.completion_ids], 1))

    def no_record(*args, **kwargs):
        raise AssertionError("record=False must not compute the record")
    monkeypatch.setattr(sampling, "committed_logp", no_record)
    monkeypatch.setattr(sampling._Recorder, "__init__", no_record)
    unrecorded = generate(adapter, ids, mask, cfg, torch.Generator().manual_seed(4), record=False)
    assert torch.equal(unrecorded, torch.cat([ids, recorded.completion_ids], 1))


def test_early_stop_keeps_replay_exact_and_records_every_position():
    # EOS is committed in block 1, so blocks 2-3 are never run and are filled with EOS
    table = peaked([65, 66, 67, EOS, 68, 69, 70, 71], [0.9] * 8)
    adapter = scripted_adapter(table, 3)
    cfg = SamplerConfig(max_completion_length=8, diffusion_steps=8, block_length=2)
    seen = {}
    traj = sample(adapter, PROMPT, config=cfg, on_step=lambda s, x: seen.__setitem__(s, x))
    assert traj.nfe == len(seen) == 4  # blocks 0 and 1 only: after block 1 the row has committed EOS
    for step, x in seen.items():
        assert torch.equal(traj.state(step), x)
    assert not (traj.completion_ids == MASK).any() and (traj.commit_step >= 0).all()
    assert traj.completion_ids[0].tolist() == [65, 66, 67] + [EOS] * 5
    assert torch.equal(traj.state(int(traj.commit_step.max()) + 1)[:, 3:], traj.completion_ids)


@pytest.mark.parametrize("extra", [{}, {"schedule": "dream"}, {"cache": "dual"}, {"cfg_scale": 0.5}])
def test_fixed_schedules_ask_the_device_nothing_per_step(extra, monkeypatch):
    # on a GPU every bool(tensor) waits for the device; a fixed schedule knows how many masks are left without it
    # (RCR still does: its re-mask events, of varying size, are gathered with nonzero)
    adapter = make_tiny("llada", seed=6)
    ids, mask = left_pad([[5, 6, 7], [30, 31]], adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=32, diffusion_steps=32, block_length=16, temperature=0.5, **extra)
    calls = []
    real = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: calls.append(1) or real(self))
    traj = sample(adapter, ids, mask, cfg)
    assert traj.nfe >= 30 and len(calls) <= 4  # per block or per rollout, not per step (Dream's skips 2 empty steps)
