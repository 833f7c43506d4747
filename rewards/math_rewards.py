"""MATH-style rewards: ``math_correct`` (math-verify, process pool) and ``math_correct_d1`` (d1's
string grader), plus :func:`score_math` reporting both for one completion.
"""
from __future__ import annotations

from rewards.contract import column, completion_texts, per_item
from rewards.math_d1 import d1_answer, d1_math_equal
from rewards.math_grader import Verdict, math_verdict, verify_batch
from rewards.registry import register_reward

_GOLD_COLUMNS = ("answer", "solution")


def gold_for_verify(gold: str) -> str:
    """Gold answer as math-verify input: a bare answer (no ``\\boxed``/``$``) is wrapped in ``\\boxed{}``."""
    gold = str(gold)
    return gold if ("\\boxed" in gold or "$" in gold) else f"\\boxed{{{gold}}}"


def verdict_reward(verdict: Verdict) -> float | None:
    """Reward for a :data:`Verdict`: 1.0 equal, None for an unparseable gold, 0.0 otherwise (timeouts too)."""
    return {"equal": 1.0, "bad_gold": None}.get(verdict, 0.0)


@register_reward("math_correct")
def math_correct(prompts=None, completions=None, *, timeout_s: float = 5.0, **columns) -> list[float | None]:
    """math-verify correctness against the ``answer`` (or ``solution``) column, graded in worker processes."""
    texts = completion_texts(completions)
    golds = column(columns, len(texts), *_GOLD_COLUMNS)
    todo = [i for i, g in enumerate(golds) if g is not None and str(g).strip()]
    out: list[float | None] = [None] * len(texts)
    verdicts = verify_batch([gold_for_verify(golds[i]) for i in todo], [texts[i] for i in todo], timeout_s=timeout_s)
    for i, verdict in zip(todo, verdicts):
        out[i] = verdict_reward(verdict)
    return out


@register_reward("math_correct_d1")
@per_item
def math_correct_d1(text: str, row: dict) -> float | None:
    """d1-compatible MATH correctness (Hendrycks ``is_equiv`` on the last boxed answer)."""
    gold = row.get("answer", row.get("solution"))
    if gold is None or not str(gold).strip():
        return None
    return float(d1_math_equal(str(gold), text))


def score_math(completion, gold: str) -> dict:
    """Both MATH scores for one completion: ``{"math_verify", "d1", "d1_answer"}`` (in-process grading)."""
    text = completion_texts([completion])[0]
    return {
        "math_verify": verdict_reward(math_verdict(gold_for_verify(gold), text)),
        "d1": float(d1_math_equal(str(gold), text)),
        "d1_answer": d1_answer(text),
    }
