"""Format rewards from d1: the ``<reasoning>...</reasoning>\\n<answer>...</answer>`` layout (strict,
soft, per-tag count), an integer-answer check, and a configurable truncation penalty.
"""
from __future__ import annotations

import re

from unmask.rewards.contract import completion_texts, per_item
from unmask.rewards.extract import tag_content
from unmask.rewards.registry import register_reward

# d1 compiles these without re.DOTALL, so multi-line reasoning never matches there; we allow it.
_STRICT_RE = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n?$", re.DOTALL)
_SOFT_RE = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)


@register_reward("xml_format_strict")
@per_item
def xml_format_strict(text: str, row: dict) -> float:
    """1.0 for exactly ``<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>`` (d1 weight: 0.5)."""
    return float(_STRICT_RE.match(text) is not None)


@register_reward("xml_format")
@per_item
def xml_format(text: str, row: dict) -> float:
    """1.0 when ``<reasoning>...</reasoning>`` is followed by ``<answer>...</answer>`` (d1 weight: 0.5)."""
    return float(_SOFT_RE.search(text) is not None)


def xml_count_score(text: str) -> float:
    """d1's ``count_xml``: 0.125 per well-placed tag, minus 0.001 per character after ``</answer>``."""
    score = 0.0
    if text.count("<reasoning>\n") == 1:
        score += 0.125
    if text.count("\n</reasoning>\n") == 1:
        score += 0.125
    if text.count("\n<answer>\n") == 1:
        score += 0.125
        score -= len(text.split("\n</answer>\n")[-1]) * 0.001
    if text.count("\n</answer>") == 1:
        score += 0.125
        score -= (len(text.split("\n</answer>")[-1]) - 1) * 0.001
    return score


@register_reward("xml_count")
@per_item
def xml_count(text: str, row: dict) -> float:
    """d1's per-tag XML count reward (at most 0.5)."""
    return xml_count_score(text)


@register_reward("answer_is_int")
@per_item
def answer_is_int(text: str, row: dict) -> float:
    """1.0 when the ``<answer>`` content is an integer (d1's ``int_reward_func``, weight 0.5)."""
    answer = tag_content(text, "answer")
    return float(answer is not None and re.fullmatch(r"-?\d+", answer) is not None)


@register_reward("length_penalty", factory=True)
def length_penalty(max_completion_length: int, penalty: float = -1.0, closing: str | None = "</answer>",
                   eos: str | None = None, unit: str = "tokens"):
    """Build a reward giving ``penalty`` to truncated completions and 0.0 to the rest.

    A completion is truncated when its length reaches ``max_completion_length`` (tokens from the
    ``completion_ids`` keyword TRL passes, or characters with ``unit="chars"``) and it contains
    neither ``closing`` (e.g. ``"</answer>"``) nor ``eos``. Without ``completion_ids`` in token
    mode, length is unknown and only the missing closing tag/EOS is not enough: the reward is 0.0.
    """
    if unit not in ("tokens", "chars"):
        raise ValueError(f"unit must be 'tokens' or 'chars', got {unit!r}")
    limit = int(max_completion_length)

    def reward(prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        texts = completion_texts(completions)
        out = []
        for i, text in enumerate(texts):
            try:
                if unit == "chars":
                    length = len(text)
                else:
                    ids = completion_ids[i] if completion_ids is not None and i < len(completion_ids) else None
                    length = len(ids) if ids is not None else None
                closed = (closing is not None and closing in text) or (eos is not None and eos in text)
                out.append(float(penalty) if length is not None and length >= limit and not closed else 0.0)
            except Exception:
                out.append(0.0)
        return out

    reward.__name__ = "length_penalty"
    reward.__doc__ = f"Truncation penalty {penalty} at {limit} {unit} without {closing!r}/{eos!r}."
    return reward
