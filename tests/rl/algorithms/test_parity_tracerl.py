"""TraceRL's loss against a transcription of its code (Gen-Verse/dLLM-RL ``train/rl_llada.py``: the shrink units,
``forward_process``; ``reward/rl_reward.py``: the z-score and the filters), as ``test_parity_beyond.py`` does for the
other methods: a fixed tiny batch through ``PolicyUpdate.run`` and through the transcription, loss and gradients to
1e-6. Its pieces beyond the loss — the difficulty filter, the truncation rule, EOS left out — are checked on their
own below."""
from __future__ import annotations

import copy

import pytest
import torch

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.config import ConfigError

from ..toy import EOS, MASK, algorithm, rollout, toy_model
from .parity import agrees, reference_side, unmask_side, with_completions
from .test_parity_beyond import PROMPTS, token_logps

# after the first EOS only EOS, as LLaDA pads: the code drops every pad token (post_num 0), unmask every EOS
COMPLETIONS = [[1, 2, EOS, EOS, EOS, EOS, EOS, EOS], [3, 3, 4, 0, 1, 2, 4, 1],
               [2, EOS, EOS, EOS, EOS, EOS, EOS, EOS], [0, 4, 1, 3, EOS, EOS, EOS, EOS]]
CORRECT = torch.tensor([1.0, 0.0, 0.0, 1.0])


def collapse_k_unique(steps: list[int], k: int) -> list[int]:
    """The code's ``collapse_k_unique``: every k consecutive distinct steps map to the last of them."""
    unique = sorted(set(steps))
    rep = {v: unique[min((i // k + 1) * k - 1, len(unique) - 1)] for i, v in enumerate(unique)}
    return [rep[v] for v in steps]


@pytest.mark.parametrize("extra,same", [
    ({}, True),
    ({"loss_type": "grpo"}, False),          # a mean per row, not over the batch's units
    ({"kl_level": "token"}, False),          # the KL averaged per unit, not summed
    ({"reward_std": "unbiased"}, False),     # n − 1 (and TRL's epsilon), not the population std
    ({"score_eos": True}, False),            # the first EOS scored
])
def test_tracerl_is_the_tracerl_code(extra, same):
    lm = toy_model(seed=1)
    traj = with_completions(rollout(lm, PROMPTS, groups=2, max_completion_length=8, diffusion_steps=8,
                                    stop_at_eos=False), COMPLETIONS)
    batch = RolloutBatch(traj, CORRECT.clone(), 2, [5], eos_id=EOS)
    settings = algorithm("tracerl", step_k=2, num_minibatches=2, beta=0.5, **extra)
    model0 = copy.deepcopy(lm.model)
    metrics, grads, plans = unmask_side(lm, batch, settings, None, micro_batch_size=1)
    assert metrics["clip_ratio/region_mean"] > 0 or not same   # the second mini-batch step is off-policy

    # reward/rl_reward.py: A = (c − mean) / population std over the prompt's responses (0 when the std is 0); groups
    # of accuracy outside [0.2, 0.8] dropped. train/rl_llada.py: per response, steps collapsed k at a time; a unit's
    # input masks every token of its unit or a later one, its targets are its tokens but pad (EOS, post_num 0);
    # old log-probs from the model before training; per micro-batch of units −(Σ_u mean_{k∈u} min(ρA, clip(ρ,
    # 1 ± 0.2)A)) / B + β Σ_u Σ_{k∈u} k3(new, old) / B, one optimizer step per the units of 2 responses here.
    p_len, y = traj.prompt_ids.shape[1], traj.completion_ids
    g = CORRECT.view(-1, 2)
    adv = ((g - g.mean(1, keepdim=True)) / g.std(1, correction=0, keepdim=True)).view(-1)
    units = []                                   # (response, input ids [P + L], targets [L] bool)
    for b in range(traj.batch_size):
        order = torch.tensor(collapse_k_unique(traj.commit_step[b].long().tolist(), 2))
        for step in order.unique(sorted=True):
            targets = (order == step) & (y[b] != EOS)
            if targets.any():
                units.append((b, torch.cat([traj.prompt_ids[b], y[b].masked_fill(order >= step, MASK)]), targets))
    steps = [[u for u in units if u[0] // 2 == j] for j in range(2)]

    def logps(model, j):  # [units of step j, L]
        return token_logps(model, torch.stack([u[1] for u in steps[j]]), y[[u[0] for u in steps[j]]])

    def loss(model, j, old):
        lp, mask = logps(model, j), torch.stack([u[2] for u in steps[j]]).float()
        a = adv[[u[0] for u in steps[j]]].unsqueeze(1)
        ratio = torch.exp(lp - old)
        surrogate = (torch.min(ratio * a, torch.clamp(ratio, 0.8, 1.2) * a) * mask).sum(1) / mask.sum(1)
        k3 = ((torch.exp(old - lp) - 1 + (lp - old)) * mask).sum(1)
        return -surrogate.sum() / len(steps[j]) + 0.5 * k3.sum() / len(steps[j])

    assert agrees(metrics, grads, *reference_side(model0, 2, logps, loss)) == same
    assert not plans[0].units.inputs[:, :, :p_len].eq(MASK).any()    # the prompt is never masked


def test_difficulty_filter_keeps_groups_in_range_and_truncation_counts_wrong():
    lm = toy_model(seed=13)
    traj = rollout(lm, [[1, 2, 3]] * 3, groups=4, max_completion_length=4, diffusion_steps=4)
    rewards = torch.tensor([1.0, 1, 1, 1,    1, 0, 0, 0,    1, 1, 1, 0])  # accuracy 1, 0.25, 0.75
    batch = RolloutBatch(traj, rewards, 4, [0], eos_id=EOS)
    compute_advantages(batch, algorithm("tracerl"))
    assert batch.keep.tolist() == [False] * 4 + [True] * 8
    assert batch.metrics["frac_groups_in_difficulty_range"] == pytest.approx(2 / 3)
    torch.testing.assert_close(batch.advantages[4:8], torch.tensor([3.0, -1, -1, -1]) / 3 ** 0.5)  # population std
    batch = RolloutBatch(traj, rewards, 4, [0], eos_id=EOS)
    compute_advantages(batch, algorithm("tracerl", difficulty_filter=[0.3, 1.0]))
    assert batch.keep.tolist() == [True] * 4 + [False] * 4 + [True] * 4


def test_tracerl_settings_are_checked():
    with pytest.raises(ConfigError, match="difficulty_filter must be"):
        algorithm("tracerl", difficulty_filter=[0.8, 0.2])
    with pytest.raises(ConfigError, match="single update never does"):
        algorithm("tracerl", num_minibatches=1)
    algorithm("tracerl", num_minibatches=1, beta=0.0)   # no KL: one update per batch is fine
