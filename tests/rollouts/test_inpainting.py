"""Inpainting (IGPO's sampler): fixed tokens stay put, the free positions follow LLaDA's per-row split, and the record
replays what the sampler saw; ``Trajectory.take`` selects rows."""
import pytest
import torch

from unmask.rollouts.adapter import left_pad
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import sample
from unmask.rollouts.schedules import llada_commit_counts
from unmask.rollouts.tiny import make_tiny
from unmask.rollouts.trajectory import NOT_COMMITTED

PROMPTS = [[10, 11, 12], [13, 14]]


def test_fixed_tokens_stay_and_only_free_positions_are_scheduled():
    adapter = make_tiny("llada", seed=1)
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=12, diffusion_steps=6, block_length=6, stop_at_eos=False)
    fixed = torch.full((2, 12), -1)
    fixed[0, [0, 1, 2, 7]] = torch.tensor([40, 41, 42, 43])    # 3 hints in block 0, 1 in block 1
    fixed[1, 6:12] = torch.arange(50, 56)                      # block 1 entirely given
    seen = {}
    traj = sample(adapter, ids, mask, cfg, seed=4, on_step=lambda s, x: seen.__setitem__(s, x), fixed=fixed)
    given = fixed >= 0
    assert torch.equal(traj.completion_ids[given], fixed[given])                   # never changed
    assert torch.equal(traj.extras["hint_mask"], given)
    assert (traj.commit_step[given] == NOT_COMMITTED).all() and (traj.rollout_logp[given] == 0).all()
    assert (traj.commit_step[~given] >= 0).all()
    for step, x in seen.items():                                                     # replay is exact
        assert torch.equal(traj.state(step), x)
        assert torch.equal(x[:, ids.shape[1]:][given], fixed[given])                 # hints visible at every step
    steps = traj.commit_step.long()
    for row in range(2):                                   # per block: LLaDA's even split of its free positions
        for block, lo in enumerate((0, 6)):
            free = (~given[row, lo:lo + 6]).sum()
            expected = llada_commit_counts(free.view(1), 3)[0]
            got = torch.stack([(steps[row, lo:lo + 6] == 3 * block + i).sum() for i in range(3)])
            assert torch.equal(got, expected) or (free == 0 and got.sum() == 0), (row, block, got, expected)


def test_fixed_tokens_refuse_schedules_that_cannot_share_them_out():
    adapter = make_tiny("llada", seed=1)
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=4, diffusion_steps=4, threshold=0.9)
    with pytest.raises(ValueError, match="llada schedule without threshold"):
        sample(adapter, ids, mask, cfg, fixed=torch.full((2, 4), -1))


def test_take_selects_rows_with_their_extras():
    adapter = make_tiny("llada", seed=2)
    ids, mask = left_pad(PROMPTS, adapter.pad_id)
    cfg = SamplerConfig(max_completion_length=8, diffusion_steps=4, rcr=True, stop_at_eos=False)
    traj = sample(adapter, ids, mask, cfg, seed=1)
    picked = traj.take([1, 1, 0])
    assert torch.equal(picked.completion_ids, traj.completion_ids[[1, 1, 0]])
    assert torch.equal(picked.prompt_mask, traj.prompt_mask[[1, 1, 0]])
    for new, old in enumerate([1, 1, 0]):      # each row replays as its source row
        for step in range(4):
            assert torch.equal(picked.state(step)[new], traj.state(step)[old])
