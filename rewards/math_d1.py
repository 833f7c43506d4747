"""d1-compatible MATH grader: Hendrycks-style string normalisation and ``is_equiv``.

Re-implemented from the well-known algorithm of the MATH paper's evaluation code (also used by d1
and dllm) so MATH500 numbers can be compared with published tables. It compares normalised strings;
it knows nothing about algebraic equivalence (use :mod:`rewards.math_grader` for that).
"""
from __future__ import annotations

import re

from unmask.rewards.extract import tag_content


def last_boxed_only_string(text: str) -> str | None:
    """The last ``\\boxed{...}``/``\\fbox{...}`` including the command, or ``\\boxed x`` up to ``$``; else None."""
    index = text.rfind("\\boxed")
    if index < 0:
        index = text.rfind("\\fbox")
        if index < 0:
            return None
    if text.startswith("\\boxed ", index):
        return "\\boxed " + text[index + len("\\boxed ") :].split("$")[0]
    depth = 0
    for i in range(index, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[index : i + 1]
    return None


def remove_boxed(boxed: str | None) -> str | None:
    """Strip the ``\\boxed{`` ... ``}`` (or ``\\boxed ``/``\\fbox{``) wrapper; None when not boxed."""
    if boxed is None:
        return None
    for prefix in ("\\boxed ",):
        if boxed.startswith(prefix):
            return boxed[len(prefix) :]
    for prefix in ("\\boxed{", "\\fbox{"):
        if boxed.startswith(prefix) and boxed.endswith("}"):
            return boxed[len(prefix) : -1]
    return None


def _fix_fracs(s: str) -> str:
    """``\\frac12`` → ``\\frac{1}{2}``, ``\\frac1{2}`` → ``\\frac{1}{2}`` (single-character operands)."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if not part:
            raise ValueError("\\frac without operands")  # Hendrycks indexes part[0] and fails here
        if part.startswith("{"):
            out += part
            continue
        if len(part) < 2:  # as in Hendrycks: give up and keep the string as it was
            return s
        a, b = part[0], part[1]
        if b == "{":
            out += "{" + a + "}" + part[1:]
        else:
            out += "{" + a + "}{" + b + "}" + part[2:]
    return out


def _fix_a_slash_b(s: str) -> str:
    """``3/4``, ``-1/2`` (two canonically written ints) → ``\\frac{3}{4}``, as Hendrycks' ``int()`` test does."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _remove_right_units(s: str) -> str:
    """Drop a trailing ``\\text{ unit}`` (the Hendrycks rule: split on ``\\text{ `` and keep the left).

    More than one ``\\text{ `` raises, as Hendrycks' ``assert`` does (``is_equiv`` then compares raw strings).
    """
    if "\\text{ " not in s:
        return s
    parts = s.split("\\text{ ")
    if len(parts) != 2:
        raise ValueError("more than one \\text{ unit}")
    return parts[0]


def _fix_sqrt(s: str) -> str:
    """``\\sqrt3`` → ``\\sqrt{3}`` (single-character radicand)."""
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def strip_string(s: str) -> str:
    """Hendrycks normalisation of an answer string (spacing, ``\\left``, degrees, units, fractions...)."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    s = _remove_right_units(s)
    s = s.replace("\\%", "")  # Hendrycks removes only the escaped percent sign, not a bare "%"
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def is_equiv(a: str | None, b: str | None) -> bool:
    """Whether two answer strings are equal after :func:`strip_string` (both None counts as equal)."""
    if a is None and b is None:
        return True
    if a is None or b is None:
        return False
    try:
        return strip_string(a) == strip_string(b)
    except Exception:
        return a == b


def d1_answer(text: str) -> str | None:
    """The answer d1 grades: the last boxed expression (inside ``<answer>`` when present), unwrapped."""
    inner = tag_content(text, "answer")
    for source in (inner, text):
        if source:
            answer = remove_boxed(last_boxed_only_string(source))
            if answer is not None:
                return answer
    return None


def d1_gold(gold: str) -> str:
    """Gold answer for :func:`is_equiv`: the content of its last box if boxed, else the string itself."""
    boxed = remove_boxed(last_boxed_only_string(gold))
    return boxed if boxed is not None else gold


def d1_math_equal(gold: str, text: str) -> bool:
    """d1-style MATH correctness of a completion ``text`` against ``gold``."""
    return is_equiv(d1_gold(gold), d1_answer(text))


def d1_unboxed(text: str) -> str | None:
    """What d1's parsers read as the answer: ``remove_boxed(last_boxed_only_string(text))`` of d1's own
    ``parser_helper.py``, whose helpers differ from Hendrycks' above. The content of the last ``\\boxed{}``
    (a ``\\boxed x`` anywhere wins, read up to ``$``); the whole text when there is no box at all; None where
    d1's code raises (an unclosed last box), so that its callers fall back to ``<answer>``.
    """
    if "\\boxed " in text:
        return text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return text
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if text[i] == "}" and depth == 0:
            boxed = text[start : i + 1]
            return boxed[len("\\boxed{") : -1] if boxed.startswith("\\boxed{") else boxed
    return None
