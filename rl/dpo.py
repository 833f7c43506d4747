"""``unmask dpo RECIPE``: VRPO (LLaDA 1.5, arXiv 2505.19223), offline preference optimisation of a masked
diffusion LM on TRL's preference format (``prompt``, ``chosen``, ``rejected``).

A dLLM's log-likelihood is intractable, so DPO's log-ratios use Monte Carlo ELBO estimates B̂ (the paper's
App. A, Eq. 14-15): for a response of L tokens (up to and including its first EOS), each of n samples draws
l ~ U{1..L}, masks exactly l of the L tokens (the prompt stays clean) and weights their log-probs by L/l:

    B̂(y) = (1/n) Σ_j (L/l_j) Σ_{k∈M_j} log p_θ(y_k | x, y with M_j masked)
    loss  = −log σ(β [(B̂_θ(y_w) − B̂_ref(y_w)) − (B̂_θ(y_l) − B̂_ref(y_l))])      (+ ``sft_weight`` · SFT on y_w)

VRPO's variance reduction: a budget of n samples with one mask per sampled ratio (``elbo_samples``), and
antithetic sampling — the reference is scored on the policy's own draws (``antithetic``), so the noise of the
two estimates largely cancels in their difference (``tests/rl/test_dpo.py`` measures it). Chosen and rejected
responses get independent draws. Logged under TRL's DPO names: ``rewards/chosen`` and ``rewards/rejected``
(β · (B̂_θ − B̂_ref)), ``rewards/margins``, ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``.

Departs from the paper: its SFT term's target and normalisation are not given (here LLaDA's SFT loss on the
chosen response, off by default); no official training code is public to check the rest against.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from unmask.rollouts.adapter import ModelAdapter
from unmask.rollouts.sampling import first_eos_mask

from .config import DpoRecipeConfig
from .sft import SftTrainer, encode_pairs, sft_loss


def elbo_draws(completion_ids: torch.Tensor, eos_id: int, samples: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """VRPO's draws for responses [B, L]: masks [B, n, L] of exactly l ~ U{1..L_i} of each response's L_i tokens
    (up to and including its first EOS), and their weights L_i / (l · n) [B, n]."""
    scored = first_eos_mask(completion_ids, eos_id).cpu()
    lengths = scored.sum(1)
    b, length = completion_ids.shape
    masks = torch.zeros(b, samples, length, dtype=torch.bool)
    weights = torch.zeros(b, samples, dtype=torch.float64)
    device = generator.device
    for i in range(b):
        size = int(lengths[i])
        for j in range(samples):
            count = int(torch.randint(1, size + 1, (), generator=generator, device=device))
            masks[i, j, torch.randperm(size, generator=generator, device=device)[:count].cpu()] = True
            weights[i, j] = size / count / samples
    return masks.to(completion_ids.device), weights.to(completion_ids.device)


def sequence_elbo(adapter: ModelAdapter, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                  completion_ids: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """B̂ [B] from the draws (one forward of B·n rows; raw logits over the whole vocabulary)."""
    b, n, length = masks.shape
    noisy = completion_ids.unsqueeze(1).expand(b, n, length).masked_fill(masks, adapter.mask_id)
    ids = torch.cat([prompt_ids.unsqueeze(1).expand(b, n, -1), noisy], 2).reshape(b * n, -1)
    attention = torch.cat([prompt_mask, torch.ones_like(completion_ids)], 1).repeat_interleave(n, 0)
    logits = adapter.logits(ids, attention)[:, -length:].float()
    logp = torch.log_softmax(logits, -1).gather(-1, completion_ids.repeat_interleave(n, 0).unsqueeze(-1))
    return (logp.view(b, n, length) * masks).sum(-1).mul(weights.float()).sum(-1)


def vrpo_loss(policy: ModelAdapter, reference, prompt_ids, prompt_mask, chosen, rejected, beta: float, samples: int,
              generator: torch.Generator, antithetic: bool = True) -> tuple[torch.Tensor, dict]:
    """The mean DPO loss of a batch of pairs and TRL's DPO diagnostics (see the module docstring). ``reference``:
    a ``ReferencePolicy`` (scored inside its ``use()``: under LoRA the adapters are off only there) or an adapter."""
    draws, ref_draws = {}, {}
    for name, ids in (("chosen", chosen), ("rejected", rejected)):
        draws[name] = elbo_draws(ids, policy.eos_id, samples, generator)
        ref_draws[name] = draws[name] if antithetic else elbo_draws(ids, policy.eos_id, samples, generator)
    responses = {"chosen": chosen, "rejected": rejected}
    scope = reference.use() if hasattr(reference, "use") else nullcontext(reference)
    with torch.no_grad(), scope as ref_adapter:
        ref = {name: sequence_elbo(ref_adapter, prompt_ids, prompt_mask, ids, *ref_draws[name])
               for name, ids in responses.items()}
    new = {name: sequence_elbo(policy, prompt_ids, prompt_mask, ids, *draws[name]) for name, ids in responses.items()}
    chosen_reward, rejected_reward = beta * (new["chosen"] - ref["chosen"]), beta * (new["rejected"] - ref["rejected"])
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    margin = (chosen_reward - rejected_reward).detach()
    info = {"rewards/chosen": float(chosen_reward.detach().mean()),
            "rewards/rejected": float(rejected_reward.detach().mean()),
            "rewards/margins": float(margin.mean()), "rewards/accuracies": float((margin > 0).float().mean()),
            "logps/chosen": float(new["chosen"].detach().mean()),
            "logps/rejected": float(new["rejected"].detach().mean())}
    return loss, info


def response_text(value) -> str:
    """A response in TRL's preference format: a string, or messages whose last one holds it."""
    if isinstance(value, (list, tuple)) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


class DpoTrainer(SftTrainer):
    """``unmask dpo``: the SFT trainer's loop (resumable, checkpointed, logged) with VRPO's loss and a reference
    policy (the starting model: a frozen copy, or the base model with the LoRA adapters off)."""

    objective_name = "dpo"

    @property
    def reference_beta(self) -> float:
        return self.cfg.dpo.beta

    def needed_columns(self):
        d = self.cfg.dpo
        return (self.template.columns + ((d.chosen_column,), (d.rejected_column,)),
                f"prompt template {self.template.name!r} or dpo.chosen_column / dpo.rejected_column",
                "rename them or set dpo.chosen_column / dpo.rejected_column / data.prompt_template")

    def batch_loss(self, rows, generator):
        d = self.cfg.dpo
        prompts = [self.template.render(r, self.cfg.data.system_prompt) for r in rows]
        encoded = [encode_pairs(self.adapter, prompts, [response_text(r[column]) for r in rows], d.completion_length,
                                max_prompt_length=self.cfg.data.max_prompt_length)
                   for column in (d.chosen_column, d.rejected_column)]
        prompt_ids, prompt_mask, chosen = encoded[0]
        rejected = encoded[1][2]
        loss, info = vrpo_loss(self.adapter, self.policy.reference, prompt_ids, prompt_mask, chosen, rejected, d.beta,
                               d.elbo_samples, generator, d.antithetic)
        if d.sft_weight > 0:
            loss = loss + d.sft_weight * sft_loss(self.adapter, prompt_ids, prompt_mask, chosen, generator)
        return loss, chosen.numel() + rejected.numel(), info


def dpo(cfg: DpoRecipeConfig, log=print) -> dict[str, float]:
    return DpoTrainer(cfg, log).setup().train()


if __name__ == "__main__":  # deepspeed --num_gpus N --module unmask.rl.dpo RECIPE (see rl/train.py)
    import sys

    from .train import main
    sys.exit(main(command="dpo"))
