"""GSM8K: numeric answer extraction and the ``gsm8k_correct`` reward (exact numeric match), beside the graders
behind published numbers: lm-eval's strict-match and d1's parser (``gsm8k_correct_d1``)."""
from __future__ import annotations

import re
from fractions import Fraction

from unmask.rewards.contract import first_present, per_item
from unmask.rewards.extract import hash_answer, last_boxed, parse_number, tag_content, the_answer_is
from unmask.rewards.registry import register_reward


def gsm8k_gold(solution: str | None) -> Fraction | None:
    """Gold number of a GSM8K ``answer`` column: the number after the last ``####`` (commas removed)."""
    if not isinstance(solution, str):
        return None if solution is None else parse_number(str(solution))
    return parse_number(hash_answer(solution) if "####" in solution else solution, which="first")


def gsm8k_prediction(text: str) -> Fraction | None:
    """Predicted number, trying in order: ``\\boxed{}`` → ``<answer>`` → ``####`` → "The answer is" → last number."""
    sources = (
        (last_boxed, "last"),
        (tag_content, "last"),
        (hash_answer, "first"),
        (the_answer_is, "first"),
    )
    for extract, which in sources:
        span = extract(text)
        value = parse_number(span, which=which) if span else None
        if value is not None:
            return value
    return parse_number(text, which="last")


def gsm8k_score(text: str, gold: str | None) -> float | None:
    """1.0 when the predicted number equals the gold number, 0.0 otherwise, None if gold is unparseable."""
    gold_value = gsm8k_gold(gold)
    if gold_value is None:
        return None
    return float(gsm8k_prediction(text) == gold_value)


@register_reward("gsm8k_correct", columns=(("answer", "solution"),))
@per_item
def gsm8k_correct(text: str, row: dict) -> float | None:
    """GSM8K correctness against the ``answer`` column (1.0/0.0; None when the gold is unparseable)."""
    return gsm8k_score(text, first_present(row, "answer", "solution"))


@register_reward("answer_tag_exact", columns=(("answer", "solution"),))
@per_item
def answer_tag_exact(text: str, row: dict) -> float | None:
    """Strict correctness: 1.0 only when a well-formed ``<answer>N</answer>`` holds the gold number
    (no fallback to other spans or the last number, so broken tags earn nothing — with the lenient
    ``gsm8k_correct`` a tiny RL'd model learned to write ``</nswer>85<//aswer>`` and still scored)."""
    gold = gsm8k_gold(first_present(row, "answer", "solution"))
    if gold is None:
        return None
    if not isinstance(text, str) or "<answer>" not in text or "</answer>" not in text.split("<answer>")[-1]:
        return 0.0
    span = tag_content(text, "answer")
    return float(bool(span) and re.fullmatch(r"[+-]?\d+(\.\d+)?", span) is not None and parse_number(span) == gold)


_LM_EVAL_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+).")
_LM_EVAL_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")  # gsm8k_cot's regexes_to_ignore


def _lm_eval_normalise(s: str) -> str:
    for pattern in _LM_EVAL_IGNORE:
        s = re.sub(pattern, "", s)
    return s.strip().lower()


@register_reward("gsm8k_strict_match", columns=(("answer", "solution"),))
@per_item
def gsm8k_strict_match(text: str, row: dict) -> float | None:
    """lm-eval ``gsm8k_cot``'s strict-match: the first "The answer is N." must equal the gold string after
    ``####`` once commas, ``$`` and a final period are dropped (a string match, as lm-eval's
    ``exact_match``: "18.0" does not equal "18")."""
    gold = first_present(row, "answer", "solution")
    if gold is None:
        return None
    match = _LM_EVAL_STRICT.search(text) if isinstance(text, str) else None
    return float(match is not None and _lm_eval_normalise(match.group(1)) == _lm_eval_normalise(str(gold)))


_D1_BOXED = re.compile(r"\\boxed{(.*?)}")
_D1_NUMBER = re.compile(r"-?\d+\.?\d*")
_D1_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _d1_float(span: str, which: int) -> float | None:
    """``float(span)``, else the ``which`` (0 first, -1 last) run of digits d1's regex finds; else None."""
    try:
        return float(span)
    except ValueError:
        numbers = _D1_NUMBER.findall(span)
        return float(numbers[which]) if numbers else None


def gsm8k_prediction_d1(text: str) -> float | None:
    """The number d1's ``parse_gsm_answers`` reads: the first ``\\boxed{...}`` (up to its first ``}``) that holds a
    number, else the first closed ``<answer>`` (the whole span as a float, else its last number).

    Its number pattern knows no thousands separators: ``\\boxed{6,277}`` reads as 6.
    """
    for content in _D1_BOXED.findall(text):
        content = content.strip()
        if content and set(content) != {"."}:
            value = _d1_float(content, 0)
            if value is not None:
                return value
    match = _D1_ANSWER.search(text)
    span = match.group(1).strip() if match else ""
    return _d1_float(span, -1) if span else None


@register_reward("gsm8k_correct_d1", columns=(("answer", "solution"),))
@per_item
def gsm8k_correct_d1(text: str, row: dict) -> float:
    """d1-compatible GSM8K correctness (the grader behind d1's tables): :func:`gsm8k_prediction_d1` equals the
    gold as a float. A missing or unparseable gold scores 0.0, not None, because d1 counts those rows as wrong."""
    gold = first_present(row, "answer", "solution")
    if isinstance(gold, str):
        gold = gsm8k_gold(gold)
    prediction = gsm8k_prediction_d1(text)
    return float(gold is not None and prediction is not None and prediction == float(gold))
