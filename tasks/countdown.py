"""Countdown (reach a target with arithmetic on given numbers): Jiayi-Pan/Countdown-Tasks-3to4 (train; no
standard test set), its prompt and the rewards that grade it.

Style: d1's Countdown prompt (``countdown``: reasoning tags, the equation in ``<answer>`` tags). Graded by
``countdown`` (the equation uses each number at most once and equals the target; the score) and d1's parser
(``rewards/puzzles.py``); the id is the row index.
"""
from __future__ import annotations

from unmask.rewards import countdown
from unmask.rewards.puzzles import countdown_d1, countdown_equation

from .benchmark import D1_PUBLISHED, Benchmark
from .prompts import PromptTemplate, first_column, messages
from .registry import register_benchmark, register_template


def _countdown(row: dict, system: str | None) -> list[dict]:
    nums = first_column(row, ("nums", "numbers"))
    return messages(f"Using the numbers {nums}, create an equation that equals {row['target']}. You can use basic "
                    f"arithmetic operations (+, -, *, /) and each number can only be used once. Show your work in "
                    f"<reasoning> </reasoning> tags and return the final equation in <answer> </answer> tags, "
                    f"for example <answer> (1 + 2) / 3 </answer>.", system)


register_template(PromptTemplate("countdown", (("nums", "numbers"), ("target",)), _countdown))

register_benchmark(Benchmark(
    "countdown", "Jiayi-Pan/Countdown-Tasks-3to4", None, "train", "countdown", None,
    gold=lambda row: f"{row['target']} from {row.get('nums', row.get('numbers'))}",
    extract=lambda text, row: countdown_equation(text) or "",
    graders={"countdown": countdown, "d1_parser": countdown_d1}, reproduces={"d1_parser": D1_PUBLISHED}))
