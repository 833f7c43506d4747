"""A bundled task with verifiable answers: multi-digit addition written as a carry trace.

Why addition: the answer is checked exactly by Python arithmetic (a clean reward for RL and a clean
accuracy for SFT), nothing has to be downloaded, and the prompt and completion lengths are set by
the digit range. Written as a column-by-column trace it is learnable by a ~1–20M-parameter
byte-level model in minutes on a CPU, because every step is local:

    prompt      What is 47 + 385?
    completion  <reasoning>7+5+0=12;4+8+1=13;0+3+1=04</reasoning>
                <answer>432</answer>

Step k (from the right) is always ``a+b+c=ss``: the k-th digits of both operands (0 past the end of
the shorter one), the carry in (the tens digit of the previous step's sum, so it sits a fixed 7
bytes back), and the two-digit sum. Every step has the same width, so each byte's role depends only
on its position; the answer is the last step's sum followed by the ones digits of the earlier
steps, read backwards, with leading zeros dropped.

Splits are disjoint by a hash of the operand pair, so a held-out question is never a training one.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

HELD_OUT_EVERY = 10  # one operand pair in ten belongs to the held-out split
SPLITS = ("train", "held_out")
_ANSWER = re.compile(r"<answer>\s*([+-]?\d+)\s*</answer>")


@dataclass(frozen=True)
class SyntheticExample:
    prompt: str
    completion: str
    answer: str


def split_of(a: int, b: int) -> str:
    """The split an operand pair belongs to, from a stable hash (same on every machine and run)."""
    digest = hashlib.sha256(f"{a}+{b}".encode()).digest()
    return "held_out" if int.from_bytes(digest[:8], "big") % HELD_OUT_EVERY == 0 else "train"


def carry_trace(a: int, b: int) -> str:
    """``a+b+c=ss`` steps from the ones column up, joined by ``;``."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for k in range(max(len(da), len(db))):
        x = int(da[k]) if k < len(da) else 0
        y = int(db[k]) if k < len(db) else 0
        s = x + y + carry
        steps.append(f"{x}+{y}+{carry}={s:02d}")
        carry = s // 10
    return ";".join(steps)


def make_example(a: int, b: int) -> SyntheticExample:
    answer = str(a + b)
    completion = f"<reasoning>{carry_trace(a, b)}</reasoning>\n<answer>{answer}</answer>"
    return SyntheticExample(prompt=f"What is {a} + {b}?", completion=completion, answer=answer)


def _operand(rng: random.Random, min_digits: int, max_digits: int) -> int:
    digits = rng.randint(min_digits, max_digits)
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1)


def make_addition_dataset(n: int, seed: int, min_digits: int = 1, max_digits: int = 3,
                          split: str = "train") -> list[SyntheticExample]:
    """``n`` addition problems (operands of ``min_digits``..``max_digits`` digits each, drawn
    independently), deterministic in ``seed``; only pairs of ``split`` ("train" or "held_out").
    Pairs may repeat when the range holds fewer than ``n`` of them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    rng = random.Random(f"addition:{seed}:{min_digits}:{max_digits}")
    out: list[SyntheticExample] = []
    while len(out) < n:
        a, b = _operand(rng, min_digits, max_digits), _operand(rng, min_digits, max_digits)
        if split_of(a, b) == split:
            out.append(make_example(a, b))
    return out


def extract_answer(completion_text) -> str | None:
    """The number in the first ``<answer>...</answer>``, or None."""
    if not isinstance(completion_text, str):
        return None
    match = _ANSWER.search(completion_text)
    return match.group(1) if match else None


def check_answer(completion_text, answer) -> bool:
    """True when the completion's ``<answer>`` holds the same integer as ``answer``; never raises."""
    got = extract_answer(completion_text)
    if got is None:
        return False
    try:
        return int(got) == int(str(answer).strip())
    except (TypeError, ValueError):
        return False
