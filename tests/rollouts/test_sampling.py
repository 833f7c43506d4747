"""Sampler invariants over every confidence and schedule, and the schedules' arithmetic."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.rollouts.adapter import left_pad
from unmask.rollouts.sampling import REMASKING, SamplerConfig, filter_logits, generate, gumbel_argmax
from unmask.rollouts.schedules import dream_commit_count, llada_commit_counts
from unmask.rollouts.tiny import make_tiny

MODELS = {"llada": make_tiny("llada", seed=11), "dream": make_tiny("dream", seed=12)}
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [40, 41, 42], [70, 71, 72, 73, 74]]


@settings(max_examples=25, deadline=None)
@given(family=st.sampled_from(sorted(MODELS)), remasking=st.sampled_from(REMASKING),
       schedule=st.sampled_from(["llada", "dream"]), blocks=st.sampled_from([1, 2, 4]),
       steps_per_block=st.integers(1, 5), temperature=st.sampled_from([0.0, 0.8]), seed=st.integers(0, 99))
def test_invariants(family, remasking, schedule, blocks, steps_per_block, temperature, seed):
    adapter = MODELS[family]
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=8 * blocks, diffusion_steps=steps_per_block * blocks, block_length=8,
                        temperature=temperature, remasking=remasking, schedule=schedule)
    out = generate(adapter, ids, mask, cfg, generator=torch.Generator().manual_seed(seed))
    assert out.shape == (3, ids.shape[1] + 8 * blocks)
    assert torch.equal(out[:, : ids.shape[1]], ids)  # prompt (and its padding) never altered
    assert not (out[:, ids.shape[1]:] == adapter.mask_id).any()  # every position committed
    again = generate(adapter, ids, mask, cfg, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out, again)  # same seed, same inputs → same output


@pytest.mark.parametrize("family", sorted(MODELS))
def test_left_padded_batch_decodes_like_single_rows(family):
    adapter = MODELS[family]
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=8, block_length=8)
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    batch = generate(adapter, ids, mask, cfg)[:, ids.shape[1]:]
    for i, p in enumerate(PROMPTS):
        alone = generate(adapter, torch.tensor([p]), None, cfg)[:, len(p):]
        assert torch.equal(batch[i], alone[0])


def test_different_seeds_sample_differently():
    adapter = MODELS["llada"]
    cfg = SamplerConfig(max_completion_length=16, diffusion_steps=16, temperature=1.0)
    ids = torch.tensor([PROMPTS[0]])
    outs = {tuple(generate(adapter, ids, None, cfg, generator=torch.Generator().manual_seed(s))[0].tolist())
            for s in range(4)}
    assert len(outs) > 1


@settings(max_examples=200, deadline=None)
@given(masked=st.lists(st.integers(0, 300), min_size=1, max_size=4), steps=st.integers(1, 64))
def test_llada_counts_split_evenly_with_remainder_first(masked, steps):
    counts = llada_commit_counts(torch.tensor(masked), steps)
    assert counts.sum(1).tolist() == masked
    assert ((counts.max(1).values - counts.min(1).values) <= 1).all()
    assert (counts[:, :-1] >= counts[:, 1:]).all()  # earlier steps take the remainder


@settings(max_examples=100, deadline=None)
@given(length=st.integers(1, 256), steps=st.integers(1, 64))
def test_dream_schedule_commits_everything_by_the_last_step(length, steps):
    remaining = length
    for s in range(steps):
        k = dream_commit_count(s, steps, torch.tensor(float(remaining)))
        assert 0 <= k <= remaining
        remaining -= k
    assert remaining == 0


def test_dream_schedule_matches_reference_arithmetic():
    # 32 tokens over 16 steps: Dream's timesteps give 1 token first, then 2 per step, 3 at the end
    remaining, ks = 32, []
    for s in range(16):
        ks.append(dream_commit_count(s, 16, torch.tensor(float(remaining))))
        remaining -= ks[-1]
    assert ks == [1] + [2] * 14 + [3]


def test_gumbel_argmax_samples_the_tempered_softmax():
    logits = torch.tensor([[1.0, 0.0, -1.0, 2.0]]).expand(40000, 4)
    draws = gumbel_argmax(logits, 0.7, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    assert torch.allclose(freq, torch.softmax(logits[0].double() / 0.7, -1), atol=0.01)
    assert torch.equal(gumbel_argmax(logits, 0.0, None), logits.argmax(-1))


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    low = torch.finfo(logits.dtype).min

    def kept(x):
        return (x > low).sum().item()

    assert kept(filter_logits(logits, 2, None)) == 2
    assert kept(filter_logits(logits, 0, None)) == 4 and kept(filter_logits(logits, None, 1.0)) == 4
    assert kept(filter_logits(logits, None, 0.7)) == 2  # 0.5 + 0.3 is the smallest set above 0.7
    assert kept(filter_logits(logits, None, 0.8)) == 3
    assert kept(filter_logits(logits, None, 0.1)) == 1  # the top token always survives


@pytest.mark.parametrize("kwargs, message", [
    ({"max_completion_length": 30, "block_length": 8}, "multiple of block_length"),
    ({"max_completion_length": 32, "block_length": 8, "diffusion_steps": 6}, "divisible by the number of blocks"),
    ({"remasking": "lowest"}, "remasking 'lowest'"),
    ({"temperature": -1.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"schedule": "cosine"}, "schedule 'cosine'"),
])
def test_bad_sampler_settings_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**kwargs).check()
