"""TraceRL's diffusion value model: step GAE against a transcription of the reference code's loop, the clipped value
loss at its edges, the value head, learning on a fixed batch, and training with it end to end (resume exact)."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.algorithms.value import clipped_value_loss, step_gae
from unmask.rl.config import ConfigError, recipe_from_dict
from unmask.rl.trainer import Trainer
from unmask.rl.training.critic import ValueCritic, ValueModel
from unmask.rl.training.update import PolicyUpdate
from unmask.rollouts.tiny import make_tiny

from ..test_trainer import metrics, recipe, weights
from ..toy import algorithm, rollout, toy_model


def reference_gae(step_map: list[int], trainable: list[bool], values: list[float], reward: float,
                  gamma: float, lam: float) -> tuple[list[float], list[float]]:
    """dLLM-RL ``train_sdar_value.py`` ``compute_returns_and_advantages_from_fragments`` for one sequence with a
    scalar reward, transcribed: token steps ``step_map``, the trainable mask, token values V_j."""
    steps = sorted({s for s, t in zip(step_map, trainable) if t})
    rank = {s: i for i, s in enumerate(steps)}
    last = max(steps)
    r = [reward if (s == last and t) else 0.0 for s, t in zip(step_map, trainable)]

    def mean(xs):
        return sum(xs) / len(xs)
    n = len(steps)
    r_star = [mean([r[j] for j in range(len(r)) if trainable[j] and step_map[j] == s]) for s in steps]
    v_star = [mean([values[j] for j in range(len(r)) if trainable[j] and step_map[j] == s]) for s in steps]
    big_r, a_star = [0.0] * n, [0.0] * n
    for i in range(n - 1, -1, -1):
        big_r[i] = r_star[i] + (gamma * big_r[i + 1] if i + 1 < n else 0.0)
    delta = [r_star[i] - v_star[i] + gamma * (v_star[i + 1] if i + 1 < n else 0.0) for i in range(n)]
    for i in range(n - 1, -1, -1):
        a_star[i] = delta[i] + (gamma * lam * a_star[i + 1] if i + 1 < n else 0.0)
    adv, ret = [0.0] * len(r), [0.0] * len(r)
    for j in range(len(r)):
        if not trainable[j]:
            continue
        i = rank[step_map[j]]
        nxt = i + 1 < n
        ret[j] = r[j] + gamma * (big_r[i + 1] if nxt else 0.0)
        adv[j] = (r[j] - values[j]) + gamma * (v_star[i + 1] if nxt else 0.0) + gamma * lam * (a_star[i + 1] if nxt
                                                                                                else 0.0)
    return adv, ret


@pytest.mark.parametrize("gamma,lam", [(0.9, 0.8), (1.0, 0.0), (0.7, 1.0)])
def test_step_gae_matches_the_reference_loop(gamma, lam):
    g = torch.Generator().manual_seed(0)
    rows, units, length = 3, 5, 7
    step_of = torch.randint(0, units, (rows, length), generator=g)          # each token's step (unit)
    step_of[1] = torch.where(step_of[1] == 2, 3, step_of[1])               # row 1 has an empty step
    trainable = torch.rand(rows, length, generator=g) > 0.2
    trainable[:, 0] = True
    scored = (step_of.unsqueeze(1) == torch.arange(units).view(1, -1, 1)) & trainable.unsqueeze(1)   # [B, U, L]
    values = torch.randn(rows, units, length, generator=g)
    reward = torch.tensor([1.5, -0.5, 0.25])
    adv, ret = step_gae(values, scored, reward, gamma, lam)
    for b in range(rows):
        token_values = values[b].gather(0, step_of[b].view(1, -1)).squeeze(0)
        want_adv, want_ret = reference_gae(step_of[b].tolist(), trainable[b].tolist(), token_values.tolist(),
                                           float(reward[b]), gamma, lam)
        got_adv, got_ret = adv[b].sum(0), ret[b].sum(0)   # each token is in one unit
        assert got_adv.tolist() == pytest.approx(want_adv, abs=1e-5)
        assert got_ret.tolist() == pytest.approx(want_ret, abs=1e-5)


def test_step_gae_at_gamma_lambda_one_is_return_minus_value():
    g = torch.Generator().manual_seed(1)
    scored = torch.rand(2, 4, 6, generator=g) > 0.5
    values = torch.randn(2, 4, 6, generator=g)
    reward = torch.tensor([0.7, -1.2])
    adv, ret = step_gae(values, scored, reward, 1.0, 1.0)
    r = reward.view(-1, 1, 1)
    assert torch.allclose(adv, (r - values) * scored, atol=1e-6)
    assert torch.equal(ret, (r * scored).expand_as(ret) * 1.0)


def test_clipped_value_loss_at_the_clip_edges():
    old, ret = torch.zeros(3), torch.ones(3)
    v = torch.tensor([0.5, 0.1, -0.5], requires_grad=True)
    loss, wider = clipped_value_loss(v, old, ret, 0.2)
    # 0.5: clipped to 0.2 -> (0.8)^2 > (0.5)^2, the clipped branch (no gradient); 0.1: inside, both equal;
    # -0.5: clipped to -0.2 -> (1.2)^2 < (1.5)^2, the plain branch
    assert loss.tolist() == pytest.approx([0.5 * 0.64, 0.5 * 0.81, 0.5 * 2.25])
    assert wider.tolist() == [True, False, False]
    loss.sum().backward()
    assert v.grad.tolist() == pytest.approx([0.0, -0.9, -1.5])


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_the_value_head_starts_at_zero_and_reads_what_the_output_head_reads(family):
    lm = make_tiny(family, seed=0)
    model = lm.model
    ids = torch.randint(0, 50, (2, 9))
    hidden = model.hidden_states(ids)
    logits = torch.nn.functional.linear(hidden, model.parts()[3])
    if model.arch.scale_logits:
        logits = logits / model.arch.hidden_size ** 0.5
    assert torch.allclose(logits, model(ids), atol=1e-5)
    value = ValueModel(model, lm.logit_shift)
    assert torch.equal(value(ids), torch.zeros(2, 9))
    torch.nn.init.normal_(value.head.weight, generator=torch.Generator().manual_seed(0))
    raw = value.head(hidden).squeeze(-1)
    want = torch.cat([raw[:, :1], raw[:, :-1]], 1) if lm.logit_shift else raw
    assert torch.allclose(value(ids), want, atol=1e-6)
    assert all(not p.requires_grad for n, p in value.named_parameters() if n.startswith("backbone.")
               and any(n == f"backbone.{h}.weight" for h in model.output_head_names()))


def _batch(lm, settings):
    traj = rollout(lm, [[0, 1, 2], [3, 4, 0]], groups=4, seed=3, max_completion_length=6, diffusion_steps=6)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    batch = RolloutBatch(traj, rewards, 4, mask_seeds=[7], eos_id=lm.eos_id)
    return compute_advantages(batch, settings)


def test_the_value_model_learns_the_returns_of_a_fixed_batch():
    lm = toy_model()
    settings = algorithm("tracerl", value_model="policy", value_learning_rate=1e-3, difficulty_filter=None,
                         score_eos=True, step_k=2, num_minibatches=1, beta=0.0)
    training = recipe_from_dict({"training": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1},
                                "rollout": {"num_generations": 4}}).training
    critic = ValueCritic(ValueModel(copy.deepcopy(lm.model), lm.logit_shift), settings, training, batches=50)
    batch = _batch(lm, settings)
    update = PolicyUpdate(lm, settings)
    plans = update.plan(batch)
    first = critic.advise(batch, plans)
    scored = plans[0].units.scored
    assert first["value/mean"] == 0.0                       # the zero head: A = R − 0, the group advantage
    assert torch.allclose(plans[0].adv, batch.advantages.view(-1, 1, 1) * scored, atol=1e-6)
    losses = [critic.advise(batch, update.plan(batch))["value/loss"] for _ in range(30)]
    # the first unit is the same fully masked state for a whole group, whose rewards differ: the loss has a floor
    assert losses[-1] < 0.8 * first["value/loss"]
    plans = update.plan(batch)
    old = critic.old_values(batch, plans[0].units)
    assert float(old.abs().max()) > 0.1
    critic.advise(batch, plans)                            # advantages from the values before its own step
    assert torch.allclose(plans[0].adv, (batch.advantages.view(-1, 1, 1) - old) * scored, atol=1e-5)


def test_tracerl_with_its_value_model_trains_the_tiny_recipe_and_resumes_exactly(tmp_path):
    # the filters off: the tiny recipe's reward is a share of digits, and its random model rarely ends a completion
    common = ["algorithm.name=tracerl", "algorithm.value_model=policy", "algorithm.num_minibatches=2",
              "algorithm.difficulty_filter=null", "algorithm.truncated_reward=null",
              "algorithm.value_learning_rate=1e-3", "algorithm.num_iterations=1", "training.max_steps=4",
              "training.save_steps=2", "training.save_total_limit=null"]
    Trainer(recipe(tmp_path / "whole", *common)).setup().train()
    Trainer(recipe(tmp_path / "cut", *common, "training.max_steps=2")).setup().train()
    Trainer(recipe(tmp_path / "cut", *common, "training.resume_from=latest")).setup().train()
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert [r["step"] for r in whole] == [r["step"] for r in cut] == [2, 4]
    for w, c in zip(whole, cut):
        assert c["loss"] == pytest.approx(w["loss"], abs=1e-6)
        assert c["value/loss"] == pytest.approx(w["value/loss"], abs=1e-7)
    assert whole[0]["value/mean"] == 0.0 and whole[1]["value/mean"] != 0.0   # the zero head has learnt
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    va, vb = (load_file(str(tmp_path / run / "value" / "model.safetensors")) for run in ("whole", "cut"))
    start = load_file(str(tmp_path / "whole" / "checkpoint-2" / "value" / "model.safetensors"))
    assert max(float((va[k] - vb[k]).abs().max()) for k in va) < 1e-6
    assert float((va["head.weight"] - start["head.weight"]).abs().max()) > 0       # the second half trained it


def test_value_model_refuses_what_it_cannot_value(tmp_path):
    with pytest.raises(ConfigError, match="estimator 'trajectory' with step_selection 'all' or 'merge'"):
        algorithm("diffu_grpo", value_model="policy")
    with pytest.raises(ConfigError, match="value_clip must be > 0"):
        algorithm("tracerl", value_model="policy", value_clip=0)
    base = ["algorithm.name=tracerl", "algorithm.num_minibatches=2", "algorithm.num_iterations=1"]
    Trainer(recipe(tmp_path / "run", *base, "algorithm.value_model=policy", "training.max_steps=2")).setup().train()
    trainer = Trainer(recipe(tmp_path / "run", *base, "training.max_steps=4", "training.resume_from=latest")).setup()
    assert trainer.global_step == 2 and trainer.critic is None  # resumable without its value model (policy's state)
    Trainer(recipe(tmp_path / "bare", *base, "training.max_steps=2")).setup().train()
    resumed = recipe(tmp_path / "bare", *base, "algorithm.value_model=policy", "training.resume_from=latest",
                     "training.max_steps=4")
    with pytest.raises(FileNotFoundError, match="holds no value model"):
        Trainer(resumed).setup()
