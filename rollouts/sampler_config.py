"""The sampler's settings as a plain dataclass (no torch), shared by the engine, the CLI and recipes."""
from __future__ import annotations

from dataclasses import dataclass, replace

REMASKING = ("low_confidence", "random", "top1_prob", "margin", "neg_entropy")
SCHEDULES = ("llada", "dream")


@dataclass
class SamplerConfig:
    """How to decode: sizes, schedule and confidence (names follow d1 / LLaDA / Dream)."""

    max_completion_length: int = 128
    diffusion_steps: int = 128
    block_length: int | None = None  # None → the whole completion is one block
    temperature: float = 0.0
    remasking: str | None = None  # None → the family's reference confidence
    schedule: str | None = None  # None → the family's reference schedule
    top_k: int | None = None  # None → the family's reference value; 0 → off
    top_p: float | None = None  # None or 1.0 → off

    def resolve(self, family_defaults: dict) -> "SamplerConfig":
        """A copy with every None filled from the family's reference sampler, then checked."""
        filled = {k: v for k, v in family_defaults.items() if getattr(self, k) is None}
        cfg = replace(self, **filled)
        cfg.check()
        return cfg

    def check(self, prefix: str = "") -> None:
        """Raise ValueError naming the offending field (``prefix`` + name, e.g. ``rollout.``) and the fix."""
        n = {f: prefix + f for f in ("max_completion_length", "block_length", "diffusion_steps", "remasking",
                                      "schedule", "temperature", "top_k", "top_p")}
        length, block = self.max_completion_length, self.block_length or self.max_completion_length
        for name, value in (("max_completion_length", length), ("block_length", block),
                            ("diffusion_steps", self.diffusion_steps)):
            if value < 1:
                raise ValueError(f"{n[name]} must be >= 1, got {value}")
        if length % block:
            raise ValueError(f"{n['max_completion_length']} ({length}) must be a multiple of {n['block_length']} ({block})")
        if self.diffusion_steps % (length // block):
            raise ValueError(f"{n['diffusion_steps']} ({self.diffusion_steps}) must be divisible by the number of "
                             f"blocks ({length // block} = max_completion_length / block_length)")
        if self.remasking is not None and self.remasking not in REMASKING:
            raise ValueError(f"{n['remasking']} {self.remasking!r} is not one of {REMASKING}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"{n['schedule']} {self.schedule!r} is not one of {SCHEDULES}")
        if self.temperature < 0:
            raise ValueError(f"{n['temperature']} must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"{n['top_k']} must be >= 0 (0 = off), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"{n['top_p']} must be in (0, 1], got {self.top_p}")
