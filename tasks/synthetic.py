"""A bundled task with verifiable answers: fixed-width addition written as a column-by-column carry trace.

Why this task: the answer is checked exactly by Python arithmetic (a clean reward for RL and a clean
accuracy for SFT), nothing has to be downloaded, and it is learnable from scratch by a 0.4M-parameter
byte-level model in a few CPU minutes. Every choice below is what made that true, measured on 2 cores
(an earlier free-form version, "What is 47 + 385?" with variable widths and <reasoning> tags, stayed at
0% held-out accuracy after 10 minutes of SFT):

    prompt      47+85=                       (operands zero-padded to ``width`` digits)
    completion  7+5+0=12;4+8+1=13
                <answer>132</answer>

- Fixed-width operands and no preamble: every prompt has the same length, so each digit the trace
  copies sits at a fixed distance from the position that copies it — the attention pattern a small
  model finds first (it copies perfectly after ~1,500 SFT steps; variable offsets took far longer).
- The trace makes every step local: step k (from the right) is ``a+b+c=ss`` with the k-th digits of
  both operands, the carry in (the tens digit of the previous step's sum, a fixed 7 bytes back) and
  the two-digit sum, so the model needs only the 200-entry one-column table, not multi-digit carries.
  The answer is the last sum followed by the earlier sums' ones digits read backwards, leading zeros
  dropped.
- No reasoning tags: they carry no information and cost tokens in every forward pass.

Splits are disjoint by a hash of the operand pair, so a held-out question is never a training one.

As a dataset of recipes (``data.dataset: synthetic_addition``, nothing downloaded): ``dataset_config`` is
the operand width in digits (default "2"); split "train" gives 5,000 rows, any other split 500 rows of the
held-out pairs; columns ``question`` (the prompt), ``answer`` and ``completion`` (for SFT). The reward
that grades it is ``answer_tag_exact`` (``unmask.rewards``: the ``<answer>`` number equals ``answer``).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from .registry import register_dataset

HELD_OUT_EVERY = 10  # one operand pair in ten belongs to the held-out split
SPLITS = ("train", "held_out")


@dataclass(frozen=True)
class SyntheticExample:
    prompt: str
    completion: str
    answer: str


def split_of(a: int, b: int) -> str:
    """The split an operand pair belongs to, from a stable hash (same on every machine and run)."""
    digest = hashlib.sha256(f"{a}+{b}".encode()).digest()
    return "held_out" if int.from_bytes(digest[:8], "big") % HELD_OUT_EVERY == 0 else "train"


def carry_trace(a: int, b: int, width: int) -> str:
    """``a+b+c=ss`` steps from the ones column up (``width`` of them), joined by ``;``."""
    da, db = f"{a:0{width}d}"[::-1], f"{b:0{width}d}"[::-1]
    if len(da) != width or len(db) != width:
        raise ValueError(f"operands {a} and {b} must have at most {width} digits")
    steps, carry = [], 0
    for x, y in zip(map(int, da), map(int, db)):
        s = x + y + carry
        steps.append(f"{x}+{y}+{carry}={s:02d}")
        carry = s // 10
    return ";".join(steps)


def make_example(a: int, b: int, width: int = 2) -> SyntheticExample:
    answer = str(a + b)
    return SyntheticExample(prompt=f"{a:0{width}d}+{b:0{width}d}=",
                            completion=f"{carry_trace(a, b, width)}\n<answer>{answer}</answer>", answer=answer)


def completion_bytes(width: int) -> int:
    """Length in bytes of the longest completion of ``width``-digit problems."""
    return len(make_example(10 ** width - 1, 10 ** width - 1, width).completion)


def make_addition_dataset(n: int, seed: int, width: int = 2, split: str = "train") -> list[SyntheticExample]:
    """``n`` problems with operands uniform in [0, 10**width), deterministic in ``seed``; only pairs of
    ``split`` ("train" or "held_out"). Pairs may repeat when the split holds fewer than ``n`` of them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(width, int) or not 1 <= width <= 9:
        raise ValueError(f"width (operand digits) must be an integer from 1 to 9, got {width!r}")
    if width == 1 and split == "held_out":
        raise ValueError("width 1 has only 100 pairs, too few for a held-out split; use width >= 2")
    rng = random.Random(f"addition:{seed}:{width}")
    out: list[SyntheticExample] = []
    while len(out) < n:
        a, b = rng.randrange(10 ** width), rng.randrange(10 ** width)
        if split_of(a, b) == split:
            out.append(make_example(a, b, width))
    return out


@register_dataset("synthetic_addition")
def addition_rows(config: str | None, split: str, seed: int) -> list[dict]:
    """The task as dataset rows (see the module docstring): ``config`` = operand width, "2" by default."""
    try:
        width = int(config) if config else 2
    except ValueError:
        raise ValueError(f"data.dataset_config for synthetic_addition is the operand width in digits "
                         f"(e.g. '2'), got {config!r}") from None
    which = "train" if split == "train" else "held_out"
    size = 5000 if which == "train" else 500
    return [{"question": ex.prompt, "answer": ex.answer, "completion": ex.completion}
            for ex in make_addition_dataset(size, seed=seed, width=width, split=which)]


@register_dataset("synthetic_addition_preferences")
def addition_preference_rows(config: str | None, split: str, seed: int) -> list[dict]:
    """The task as preference pairs in TRL's format (``unmask dpo``): ``question``, ``chosen`` (the worked
    completion) and ``rejected`` (the same trace with a wrong final answer: off by 1 to 9)."""
    rng = random.Random(seed)
    rows = []
    for row in addition_rows(config, split, seed):
        wrong = str(int(row["answer"]) + rng.choice([-1, 1]) * rng.randint(1, 9)).lstrip("-")
        if wrong == row["answer"]:
            wrong = str(int(row["answer"]) + 10)
        rejected = row["completion"].replace(f"<answer>{row['answer']}</answer>", f"<answer>{wrong}</answer>")
        rows.append({"question": row["question"], "answer": row["answer"], "chosen": row["completion"],
                     "rejected": rejected})
    return rows
