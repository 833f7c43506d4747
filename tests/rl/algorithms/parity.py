"""The parity tests' harness: unmask's update path and a reference loop over the same fixed batch, compared to
1e-6 (see ``test_parity.py``'s docstring)."""
from __future__ import annotations

import copy

import torch

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rl.training.update import PolicyUpdate
from unmask.rollouts.sampling import first_eos_mask

from ..toy import EOS

LR = 2.0  # a large plain gradient step between the two iterations, so that the second one clips


def flat_grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])


def sgd(model) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= LR * p.grad
    model.zero_grad()


def unmask_side(lm, batch, settings, reference, micro_batch_size):
    """Loss (mean over iterations) and the gradient of each iteration, through the normal update path."""
    compute_advantages(batch, settings)
    update = PolicyUpdate(lm, settings, micro_batch_size=micro_batch_size, reference=reference)
    plans = update.plan(batch)  # the masks each iteration's seed draws (run() draws the same ones)
    grads = []

    def optimizer_step():
        grads.append(flat_grads(lm.model))
        sgd(lm.model)

    metrics = update.run(batch, optimizer_step)
    return metrics, grads, plans


def reference_side(model0, iterations: int, scores, loss):
    """The reference loop: old scores from the model before any update, then per iteration the loss with
    gradient, and the same plain step. ``scores(model, j)`` → what the loss's ratio is taken on;
    ``loss(model, j, old)`` → the scalar."""
    model = copy.deepcopy(model0)
    with torch.no_grad():
        olds = [scores(model0, j) for j in range(iterations)]
    losses, grads = [], []
    for j in range(iterations):
        model.zero_grad()
        value = loss(model, j, olds[j])
        value.backward()
        losses.append(float(value.detach()))
        grads.append(flat_grads(model))
        sgd(model)
    return sum(losses) / iterations, grads


def agrees(metrics, grads, ref_loss, ref_grads) -> bool:
    """Loss and every iteration's gradient equal to 1e-6 (gradients checked to be real, not two zeros)."""
    assert len(grads) == len(ref_grads) and all(float(g.abs().max()) > 1e-4 for g in ref_grads)
    return abs(metrics["loss"] - ref_loss) <= 1e-6 and all(
        float((ours - theirs).abs().max()) <= 1e-6 for ours, theirs in zip(grads, ref_grads))


def group_mean_advantage(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """d1 / GDPO / CJ-GRPO: A = r − mean of its group, no std division."""
    g = rewards.view(-1, group)
    return (g - g.mean(1, keepdim=True)).view(-1)


def raw_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """The reference codes call the model on the ids alone: no attention mask, no temperature."""
    return model(ids).float()


def with_completions(traj, completions: list[list[int]]):
    """The record with these completions (EOS placed on purpose) and their first-EOS mask."""
    traj.completion_ids = torch.tensor(completions)
    traj.completion_mask = first_eos_mask(traj.completion_ids, EOS)
    return traj


COMPLETIONS = [[1, 2, EOS, EOS, EOS, EOS], [3, 3, 4, 0, 1, 2], [2, EOS, EOS, EOS, EOS, EOS], [0, 4, 1, EOS, EOS, 3]]
REWARDS = torch.tensor([1.0, 0.0, 0.2, 0.9])


