"""The sampler's settings as a plain dataclass (no torch), shared by the engine, the CLI and recipes.

One dataclass covers every published sampler; they differ in a few switches:

| sampler | settings |
|---|---|
| LLaDA low-confidence / random remasking, semi-AR | ``schedule="llada"``, ``remasking="low_confidence"``/``"random"`` |
| Dream (top-1 prob, margin, neg. entropy), top-p/k | ``schedule="dream"``, ``remasking="top1_prob"``/``"margin"``/... |
| CJ-GRPO's EOSER + ASS | ``eoser=True``, ``schedule="ass"`` (``diffusion_steps = floor(log2 L)``) |
| MDPO's running-confidence remasking | ``rcr=True`` |
| Fast-dLLM parallel decoding, prefix / dual cache | ``threshold=0.9``, ``cache="prefix"``/``"dual"`` |
| Prophet early commit | ``early_commit=True`` |

Fields left None take the model family's reference values (``Family.sampler_defaults``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal, get_args

Remasking = Literal["low_confidence", "random", "top1_prob", "margin", "neg_entropy"]
Schedule = Literal["llada", "dream", "ass"]
Cache = Literal["none", "prefix", "dual"]
REMASKING, SCHEDULES, CACHES = get_args(Remasking), get_args(Schedule), get_args(Cache)


@dataclass
class SamplerConfig:
    """How to decode (names follow d1 / LLaDA / Dream / the papers that introduced each switch)."""

    max_completion_length: int = field(default=128, metadata={"help": "Tokens to generate per prompt."})
    diffusion_steps: int = field(
        default=128,
        metadata={"help": "Denoising steps over the whole completion, split over blocks."},
    )
    block_length: int | None = field(
        default=None,
        metadata={"help": "Semi-autoregressive block size; None = one block."},
    )
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; > 0 samples by float64 Gumbel-max."})
    remasking: Remasking | None = field(
        default=None,
        metadata={"help": f"Confidence that ranks positions to commit: {REMASKING}."},
    )
    schedule: Schedule | None = field(default=None, metadata={"help": f"Tokens committed per step: {SCHEDULES}."})
    top_k: int | None = field(default=None, metadata={"help": "Keep the k most likely tokens (0 = off)."})
    top_p: float | None = field(default=None, metadata={"help": "Nucleus filtering (None or 1 = off)."})
    cfg_scale: float = field(
        default=0.0,
        metadata={"help": "Classifier-free guidance: un + (s+1)(cond - un), prompt masked for un."},
    )
    logits_eos_inf: bool = field(default=False, metadata={"help": "Never generate EOS (LLaDA's logits_eos_inf)."})
    confidence_eos_eot_inf: bool = field(
        default=False,
        metadata={"help": "EOS and EoT predictions get -inf confidence, so they are committed last (what LLaDA's flag "
                          "of this name intends; its code only removes EoT)."},
    )
    eoser: bool = field(
        default=False,
        metadata={"help": "EOS early rejection (CJ-GRPO): EOS confidence scaled by a factor rising over the steps."},
    )
    eoser_gamma_min: float = field(
        default=0.4,
        metadata={"help": "EOSER factor at the first step (CJ-GRPO: 0.4; 0.01 with ASS)."},
    )
    eoser_gamma_max: float = field(default=1.0, metadata={"help": "EOSER factor at the last step."})
    rcr: bool = field(
        default=False,
        metadata={"help": "Running-confidence remasking (MDPO): fill every masked block position each step, then "
                          "re-mask the least confident to follow the schedule."},
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "Fast-dLLM parallel decoding: commit every masked block position whose confidence is >= "
                          "threshold (at least one per step) instead of a fixed count."},
    )
    early_commit: bool = field(
        default=False,
        metadata={"help": "Prophet: once the mean top-1/top-2 logit gap over the still-masked positions passes a "
                          "progress-dependent threshold, commit all remaining masks at once."},
    )
    early_commit_window: int | None = field(
        default=5,
        metadata={"help": "Prophet's answer window: the gap is averaged over this many positions before the first "
                          "predicted EOS; null averages over every still-masked position."},
    )
    early_commit_gaps: list[float] = field(
        default_factory=lambda: [7.5, 5.0, 2.5],
        metadata={"help": "Prophet's gap thresholds for progress < 1/3, < 2/3 and beyond."},
    )
    cache: Cache = field(
        default="none",
        metadata={"help": f"KV cache across blocks (approximate; Fast-dLLM): {CACHES}."},
    )
    stop_at_eos: bool = field(
        default=True,
        metadata={"help": "Stop once every row has committed EOS before the current block; the rest is filled with "
                          "EOS."},
    )
    record_predictions: bool = field(
        default=False,
        metadata={"help": "Record every step's full prediction and confidence [B, S, L] (MDPO)."},
    )
    record_order: bool = field(
        default=False,
        metadata={"help": "Record each commit's rank by confidence within its step (Plackett-Luce / DCoLT)."},
    )

    def resolve(self, family_defaults: dict) -> "SamplerConfig":
        """A copy with every None filled from the family's reference sampler, then checked."""
        filled = {k: v for k, v in family_defaults.items() if getattr(self, k) is None}
        cfg = replace(self, **filled)
        cfg.check()
        return cfg

    def greedy(self) -> "SamplerConfig":
        """These settings at temperature 0 without per-step extras: how evaluation decodes."""
        return replace(self, temperature=0.0, record_predictions=False)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def num_blocks(self) -> int:
        return self.max_completion_length // (self.block_length or self.max_completion_length)

    def check(self, prefix: str = "") -> None:
        """Raise ValueError naming the offending field (``prefix`` + name, e.g. ``rollout.``) and the fix."""
        n = {f: prefix + f for f in self.__dataclass_fields__}
        length, block = self.max_completion_length, self.block_length or self.max_completion_length
        for name, value in (("max_completion_length", length), ("block_length", block),
                            ("diffusion_steps", self.diffusion_steps)):
            if value < 1:
                raise ValueError(f"{n[name]} must be >= 1, got {value}")
        if length % block:
            raise ValueError(f"{n['max_completion_length']} ({length}) must be a multiple of "
                             f"{n['block_length']} ({block})")
        if self.schedule == "ass":
            steps = length.bit_length() - 1
            if self.diffusion_steps != steps:
                raise ValueError(f"{n['schedule']} 'ass' decodes in floor(log2 L) = {steps} steps for L = {length}; "
                                 f"set {n['diffusion_steps']} to {steps}")
            if self.num_blocks > steps:
                raise ValueError(f"{n['schedule']} 'ass' allows at most {steps} blocks, got {self.num_blocks}")
        elif self.diffusion_steps % self.num_blocks:
            raise ValueError(f"{n['diffusion_steps']} ({self.diffusion_steps}) must be divisible by the number of "
                             f"blocks ({self.num_blocks} = max_completion_length / block_length)")
        for name, allowed in (("remasking", REMASKING), ("schedule", SCHEDULES), ("cache", CACHES)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"{n[name]} {value!r} is not one of {allowed}")
        for name in ("temperature", "cfg_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{n[name]} must be >= 0, got {getattr(self, name)}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"{n['top_k']} must be >= 0 (0 = off), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"{n['top_p']} must be in (0, 1], got {self.top_p}")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"{n['threshold']} must be in (0, 1], got {self.threshold}")
        if not 0 <= self.eoser_gamma_min <= self.eoser_gamma_max:
            raise ValueError(f"need 0 <= {n['eoser_gamma_min']} <= {n['eoser_gamma_max']}")
        if self.eoser and self.remasking in ("margin", "neg_entropy"):
            raise ValueError(f"{n['eoser']} scales probabilities; use it with low_confidence, top1_prob or random "
                             f"(not {self.remasking!r}, which can be negative or is not a probability)")
        if self.early_commit_window is not None and self.early_commit_window < 1:
            raise ValueError(f"{n['early_commit_window']} must be at least 1 (or null), got {self.early_commit_window}")
        if len(self.early_commit_gaps) != 3:
            raise ValueError(f"{n['early_commit_gaps']} needs 3 thresholds (progress < 1/3, < 2/3, beyond)")
        if self.rcr and (self.threshold is not None or self.early_commit):
            raise ValueError(f"{n['rcr']} follows the fixed schedule; it cannot be combined with threshold or "
                             f"early_commit")
