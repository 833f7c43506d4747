"""IGPO's loss against a transcription of its code (facebookresearch/igpo ``trainer_igpo.py``: ``compute_loss``, the
hint-entropy filter), as ``test_parity_beyond.py`` does for the other methods: a fixed tiny batch through
``PolicyUpdate.run`` and through the transcription, loss and gradients to 1e-6. With hint tokens the one departure
(the sequence ratio over the tokens in the loss, not over every position) is shown to be the only difference."""
from __future__ import annotations

import copy

import pytest
import torch

from unmask.rl.training.reference import FrozenCopyReference

from ..toy import MASK, algorithm, toy_model
from .parity import agrees, reference_side, unmask_side
from .test_parity_beyond import fixed_batch, token_logps

HINTS = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0], [0] * 6, [0] * 6], dtype=torch.bool)


@pytest.mark.parametrize("hints,ratio_over,extra,same", [
    (False, "all", {}, True),            # no inpainted rows: the code's loss exactly
    (True, "all", {}, False),            # hint rows: the code averages the log-ratio over every position ...
    (True, "kept", {}, True),            # ... unmask over the positions in the loss (dropped hint tokens: none)
    (True, "kept", {"hint_entropy_keep": 1.0}, False),  # the filter matters
])
def test_igpo_is_the_igpo_code(hints, ratio_over, extra, same):
    lm, traj, batch = fixed_batch(17, [1, 2])
    if hints:
        traj.extras["hint_mask"] = HINTS.clone()
    settings = algorithm("igpo", num_iterations=2, **extra)
    reference = FrozenCopyReference(toy_model(seed=18))
    model0, ref_model = copy.deepcopy(lm.model), reference.adapter.model
    metrics, grads, _ = unmask_side(lm, batch, settings, reference, micro_batch_size=2)
    assert metrics["clip_ratio/region_mean"] > 0 or not same

    # trainer_igpo.py: d1 masking — prompt clean, the whole completion masked, raw logits; old log-probs and the
    # entropy −Σ p log(p + 1e-8) from the model before the update; of each row's hint positions the max(1,
    # floor(0.2 n)) of highest entropy stay in token_mask; A = r − group mean; GSPO ratio exp(mean over every
    # position of (logp − old)), −min(ρA, clip(ρ, 0.8, 1.2)A) + 0.01·k3 per token; Σ(· token_mask)/Σ token_mask
    # per micro-batch of 2, averaged over the 2 micro-batches.
    y = traj.completion_ids
    x = torch.cat([traj.prompt_ids, torch.full_like(y, MASK)], 1)
    g = batch.rewards.view(-1, 2)
    adv = (g - g.mean(1, keepdim=True)).view(-1, 1)
    with torch.no_grad():
        p = torch.softmax(model0(x).float()[:, -y.shape[1]:], -1)
        entropy = -(p * torch.log(p + 1e-8)).sum(-1)
    hint = traj.extras.get("hint_mask", torch.zeros_like(y, dtype=torch.bool))
    token_mask = ~hint
    for row in range(y.shape[0]):
        n = int(hint[row].sum())
        if n:
            top = entropy[row].masked_fill(~hint[row], float("-inf")).topk(max(1, int(n * 0.2))).indices
            token_mask[row, top] = True
    mask = token_mask.float()

    def logps(model, j):
        return token_logps(model, x, y)

    def loss(model, j, old):
        lp, ref = logps(model, j), logps(ref_model, j).detach()
        delta = lp - old
        over = mask if ratio_over == "kept" else torch.ones_like(mask)
        ratio = torch.exp((delta * over).sum(1, keepdim=True) / over.sum(1, keepdim=True))
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv)
        per_token = per_token + 0.01 * (torch.exp(ref - lp) - (ref - lp) - 1)
        return sum((per_token[m] * mask[m]).sum() / mask[m].sum() for m in (slice(0, 2), slice(2, 4))) / 2

    assert agrees(metrics, grads, *reference_side(model0, 2, logps, loss)) == same
