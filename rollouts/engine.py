"""The rollout engine: prompts in, one Trajectory out.

Takes prompts as text, chat messages or token ids, repeats each ``num_generations`` times (a GRPO
group: the copies of a prompt are consecutive rows), decodes them in batches of ``batch_size`` rows
with left padding, and concatenates the batches' records. Batch b draws its randomness from a
generator seeded with (seed, b), so the same seed, inputs and device give an identical record.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .adapter import ModelAdapter, Prompt, left_pad
from .sampler_config import SamplerConfig
from .sampling import sample
from .trajectory import Trajectory

PromptInput = Prompt | Sequence[int]


@dataclass
class RolloutStats:
    rows: int
    nfe: int
    seconds: float
    tokens_per_second: float  # completion positions decoded per second (B·L / seconds)
    mean_completion_length: float  # tokens up to and including the first EOS


class RolloutEngine:
    def __init__(self, adapter: ModelAdapter, config: SamplerConfig, batch_size: int | None = None,
                 chat: bool = True, system_prompt: str | None = None):
        self.adapter = adapter
        self.config = config.resolve(adapter.family.sampler_defaults)
        self.batch_size = batch_size
        self.chat, self.system_prompt = chat, system_prompt

    def encode(self, prompt: PromptInput) -> list[int]:
        """Token ids of one prompt: ids pass through; text and messages go through the chat template."""
        if isinstance(prompt, torch.Tensor):
            return prompt.tolist()
        if isinstance(prompt, Sequence) and not isinstance(prompt, str) and all(isinstance(t, int) for t in prompt):
            return list(prompt)
        text = self.adapter.format_prompt(prompt, system_prompt=self.system_prompt, chat=self.chat)
        return self.adapter.tokenizer(text, add_special_tokens=False)["input_ids"]

    def rollout(self, prompts: Sequence[PromptInput], num_generations: int = 1, seed: int = 0,
                fixed: torch.Tensor | None = None) -> Trajectory:
        """``fixed`` [rows, L]: inpainted tokens of every row (−1: free; see ``sampling.sample``)."""
        if num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {num_generations}")
        rows = [ids for ids in map(self.encode, prompts) for _ in range(num_generations)]
        if not rows:
            raise ValueError("no prompts to roll out")
        size = self.batch_size or len(rows)
        parts = []
        for b, start in enumerate(range(0, len(rows), size)):
            ids, mask = left_pad(rows[start: start + size], self.adapter.pad_id, self.adapter.device)
            gen = torch.Generator(self.adapter.device).manual_seed(seed * 1_000_003 + b)
            part = None if fixed is None else fixed[start: start + size].to(self.adapter.device)
            parts.append(sample(self.adapter, ids, mask, self.config, generator=gen, seed=seed, fixed=part))
        return Trajectory.cat(parts) if len(parts) > 1 else parts[0]

    @staticmethod
    def stats(traj: Trajectory) -> RolloutStats:
        tokens = traj.batch_size * traj.completion_length
        return RolloutStats(rows=traj.batch_size, nfe=traj.nfe, seconds=traj.seconds,
                            tokens_per_second=tokens / max(traj.seconds, 1e-9),
                            mean_completion_length=float(traj.completion_mask.float().sum(1).mean()))
