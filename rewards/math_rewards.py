"""MATH-style rewards: ``math_correct`` (math-verify, process pool) and ``math_correct_d1`` (d1's
string grader), plus :func:`score_math`/:func:`score_math_batch` reporting both scores.
"""
from __future__ import annotations

import re

from unmask.rewards.contract import column, completion_texts, first_present, per_item
from unmask.rewards.extract import hash_answer, last_boxed, tag_content, the_answer_is
from unmask.rewards.math_d1 import d1_answer, d1_math_equal
from unmask.rewards.math_grader import Verdict, verify_batch
from unmask.rewards.registry import register_reward

_GOLD_COLUMNS = ("answer", "solution")
_DOLLAR_RE = re.compile(r"(?<!\\)\$")  # an unescaped $ (a math delimiter, not the \$ currency sign)


def gold_for_verify(gold: str) -> str:
    """Gold answer as math-verify input: a bare answer (no ``\\boxed``, no ``$`` delimiters) goes in ``\\boxed{}``."""
    gold = str(gold)
    return gold if ("\\boxed" in gold or _DOLLAR_RE.search(gold)) else f"\\boxed{{{gold}}}"


def math_prediction(text: str) -> str:
    """The prediction handed to math-verify, from the first source present:

    last ``\\boxed{}``/``\\fbox{}`` → ``<answer>`` → ``####`` → "The answer is" → the whole text.
    An extracted answer goes in ``\\boxed{}`` (math-verify parses bare LaTeX such as ``\\text{Evelyn}``
    or ``(3, \\frac{\\pi}{2})`` only inside an anchor), unless it has its own ``$`` delimiters. Only the
    last box counts, so an intermediate boxed result does not spoil the answer (math-verify on the raw
    text would compare the set of all boxes).
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return f"\\boxed{{{boxed}}}"
    for extract in (tag_content, hash_answer, the_answer_is):
        candidate = extract(text)
        if candidate:
            if _DOLLAR_RE.search(candidate):
                return candidate
            return f"\\boxed{{{candidate.strip().rstrip('.').strip()}}}"
    return text


def verdict_reward(verdict: Verdict) -> float | None:
    """Reward for a :data:`Verdict`: 1.0 equal, None for an unparseable gold, 0.0 otherwise (timeouts too)."""
    return {"equal": 1.0, "bad_gold": None}.get(verdict, 0.0)


@register_reward("math_correct", columns=(_GOLD_COLUMNS,))
def math_correct(prompts=None, completions=None, *, timeout_s: float = 5.0, **columns) -> list[float | None]:
    """math-verify correctness against the ``answer`` (or ``solution``) column, graded in worker processes."""
    texts = completion_texts(completions)
    golds = column(columns, len(texts), *_GOLD_COLUMNS)
    todo = [i for i, g in enumerate(golds) if g is not None and str(g).strip()]
    out: list[float | None] = [None] * len(texts)
    verdicts = verify_batch([gold_for_verify(golds[i]) for i in todo], [math_prediction(texts[i]) for i in todo],
                            timeout_s=timeout_s)
    for i, verdict in zip(todo, verdicts):
        out[i] = verdict_reward(verdict)
    return out


@register_reward("math_correct_d1", columns=(_GOLD_COLUMNS,))
@per_item
def math_correct_d1(text: str, row: dict) -> float | None:
    """d1-compatible MATH correctness (Hendrycks ``is_equiv`` on the last boxed answer)."""
    gold = first_present(row, *_GOLD_COLUMNS)
    if gold is None or not str(gold).strip():
        return None
    return float(d1_math_equal(str(gold), text))


def score_math_batch(completions, golds, timeout_s: float = 5.0) -> list[dict]:
    """Both MATH scores per completion: ``{"math_verify", "d1", "d1_answer"}`` (math-verify in the pool).

    For evaluation tables that must report a d1-comparable number next to the math-verify one.
    """
    texts = completion_texts(completions)
    golds = [str(g) for g in golds]
    verdicts = verify_batch([gold_for_verify(g) for g in golds], [math_prediction(t) for t in texts],
                            timeout_s=timeout_s)
    return [
        {"math_verify": verdict_reward(v), "d1": float(d1_math_equal(g, t)), "d1_answer": d1_answer(t)}
        for t, g, v in zip(texts, golds, verdicts)
    ]


def score_math(completion, gold: str, timeout_s: float = 5.0) -> dict:
    """Both MATH scores for one completion (see :func:`score_math_batch`)."""
    return score_math_batch([completion], [gold], timeout_s=timeout_s)[0]
