"""Shared pieces of the RL tests: a toy dLLM small enough to enumerate, rollouts and settings."""
from __future__ import annotations

import torch

from unmask.rl.config import recipe_from_dict
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.tiny import make_tiny

# vocabulary: 0..4 ordinary tokens, 5 = mask, 6 = EOS
MASK, EOS, VOCAB = 5, 6, 7


def toy_model(seed: int = 0, **sizes):
    sizes = {"d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_hidden_size": 64, **sizes}
    return make_tiny("llada", seed=seed, vocab_size=VOCAB, mask_token_id=MASK, eos_token_id=EOS, **sizes)


def algorithm(name: str = "diffu_grpo", **fields):
    """A validated AlgorithmConfig: ``name``'s method defaults, then ``fields``."""
    return recipe_from_dict({"algorithm": {"name": name, **fields}}).algorithm


def rollout(lm, prompts, *, groups: int = 2, seed: int = 0, **sampler):
    cfg = SamplerConfig(**{"max_completion_length": 4, "diffusion_steps": 4, "temperature": 1.0, **sampler})
    return RolloutEngine(lm, cfg).rollout(prompts, num_generations=groups, seed=seed)


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])
