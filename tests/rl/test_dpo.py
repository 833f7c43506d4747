"""``unmask dpo`` (VRPO): the loss is the paper's on fixed draws, antithetic sampling lowers the variance of the
ELBO difference, and the trainer runs, logs TRL's DPO names, starts at log 2 and resumes exactly."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from unmask.rl import cli
from unmask.rl.config import ConfigError
from unmask.rl.dpo import DpoTrainer, elbo_draws, sequence_elbo, vrpo_loss
from unmask.rl.recipes import load_dpo_recipe
from unmask.rollouts.sampling import first_eos_mask

from ..paths import LLADA_TINY, REPO
from .toy import EOS, MASK, toy_model

RECIPE = REPO / "recipes" / "dpo" / "tiny-cpu-dpo.yaml"
PROMPT = torch.tensor([[1, 2, 3], [4, 1, 2]])
CHOSEN = torch.tensor([[1, 2, EOS, EOS, EOS], [3, 3, 4, 0, 1]])
REJECTED = torch.tensor([[2, EOS, EOS, EOS, EOS], [0, 4, 1, EOS, EOS]])


def perturbed(lm, scale: float):
    """A copy of ``lm`` with its weights moved by ``scale`` × noise: a policy near its reference."""
    near = copy.deepcopy(lm)
    with torch.no_grad():
        for p in near.model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return near


def test_vrpo_loss_is_the_papers_on_fixed_draws():
    reference = toy_model(seed=1)
    policy = perturbed(reference, 0.3)
    mask = torch.ones_like(PROMPT)
    loss, info = vrpo_loss(policy, reference, PROMPT, mask, CHOSEN, REJECTED, 0.2, 3, torch.Generator().manual_seed(5))
    loss.backward()
    ours = [p.grad.clone() for p in policy.model.parameters()]
    policy.model.zero_grad()

    # LLaDA 1.5 (arXiv 2505.19223) App. A Eq. 14-15 and Eq. 20: per response of L tokens (≤ first EOS) n samples,
    # each masking exactly l ~ U{1..L} of them, B̂ = (1/n) Σ_j (L/l_j) Σ_masked log p (raw logits, prompt clean);
    # the reference on the same draws; loss = −log σ(β[(B̂_θ − B̂_ref)(y_w) − (B̂_θ − B̂_ref)(y_l)]), mean over pairs.
    generator = torch.Generator().manual_seed(5)
    values = []
    for y in (CHOSEN, REJECTED):
        masks, _ = elbo_draws(y, EOS, 3, generator)  # the fixed draws, in the loss's order
        in_reply = first_eos_mask(y, EOS)
        length = in_reply.sum(1).double()
        assert bool((masks <= in_reply.unsqueeze(1)).all()) and bool((masks.sum(-1) >= 1).all())

        def elbo(model, y=y, masks=masks, length=length):
            total = 0
            for j in range(3):
                x = torch.cat([PROMPT, y.masked_fill(masks[:, j], MASK)], 1)
                lp = torch.log_softmax(model(x)[:, -y.shape[1]:].float(), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
                total = total + (lp * masks[:, j]).sum(1) * (length / masks[:, j].sum(1)).float() / 3
            return total

        with torch.no_grad():
            ref = elbo(reference.model)
        values.append(elbo(policy.model) - ref)
    margin = 0.2 * (values[0] - values[1])
    expected = -torch.nn.functional.logsigmoid(margin).mean()
    expected.backward()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
    assert info["rewards/accuracies"] == float((margin > 0).float().mean())
    for mine, theirs in zip(ours, (p.grad for p in policy.model.parameters())):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)


def test_antithetic_draws_lower_the_variance_of_the_elbo_difference():
    """VRPO's antithetic sampling: scoring the reference on the policy's own draws makes B̂_θ − B̂_ref vary far
    less than with independent draws, for a policy near its reference."""
    reference = toy_model(seed=2)
    policy = perturbed(reference, 0.002)
    mask = torch.ones_like(PROMPT[:1])
    same, independent = [], []
    with torch.no_grad():
        for seed in range(100):
            g = torch.Generator().manual_seed(seed)
            draws = elbo_draws(CHOSEN[1:], EOS, 1, g)
            other = elbo_draws(CHOSEN[1:], EOS, 1, g)
            mine = sequence_elbo(policy, PROMPT[:1], mask, CHOSEN[1:], *draws)
            same.append(float(mine - sequence_elbo(reference, PROMPT[:1], mask, CHOSEN[1:], *draws)))
            independent.append(float(mine - sequence_elbo(reference, PROMPT[:1], mask, CHOSEN[1:], *other)))
    var_same, var_independent = torch.tensor(same).var(), torch.tensor(independent).var()
    print(f"\nvariance of B_theta - B_ref over 100 draws: antithetic {var_same:.4f}, independent {var_independent:.4f}")
    assert var_same < var_independent / 10


def recipe(out, *overrides):
    return load_dpo_recipe(RECIPE, [f"model.name_or_path={LLADA_TINY}", f"training.output_dir={out}", *overrides])


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_unmask_dpo_trains_logs_trls_names_and_resumes_exactly(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert cli.main(["dpo", str(RECIPE), f"model.name_or_path={LLADA_TINY}", f"training.output_dir={whole}"]) == 0
    assert "done:" in capsys.readouterr().out
    rows = metrics(whole)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the policy starts as its reference
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                 "logps/rejected", "learning_rate", "grad_norm", "eval/loss", "eval/rewards/accuracies"):
        assert any(name in r for r in rows), name
    cut = tmp_path / "cut"
    DpoTrainer(recipe(cut, "training.max_steps=3")).setup().train()
    DpoTrainer(recipe(cut, "training.resume_from=latest")).setup().train()
    assert [r["loss"] for r in metrics(cut)] == pytest.approx([r["loss"] for r in rows], abs=1e-6)
    from safetensors.torch import load_file
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


def test_lora_dpo_scores_the_reference_with_the_adapters_off_only(tmp_path):
    """Under LoRA the reference is the base model with the adapters disabled — for the reference's scores only:
    the policy starts equal to it (loss log 2), and once the adapters train the two differ."""
    DpoTrainer(recipe(tmp_path, "model.use_peft=true", "model.lora_r=4", "model.lora_alpha=8",
                      "training.max_steps=3", "training.eval_steps=null", "data.eval_dataset=null")).setup().train()
    losses = [r["loss"] for r in metrics(tmp_path)]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-6)
    assert all(abs(loss - math.log(2)) > 1e-4 for loss in losses[1:])
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_dpo_recipes_fail_before_weights_load(tmp_path):
    with pytest.raises(ValueError, match=r"train_dataset|data\.dataset.*rejected|rejected"):
        DpoTrainer(recipe(tmp_path, "data.dataset=synthetic_addition"))  # rows without chosen/rejected
    with pytest.raises(ConfigError, match=r"dpo\.beta must be > 0"):
        recipe(tmp_path, "dpo.beta=0")
    recipe(tmp_path, "training.deepspeed=recipes/deepspeed/zero2.json")  # runs under DeepSpeed (test_deepspeed.py)
