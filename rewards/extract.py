"""Answer extraction from model text: ``\\boxed{}``/``\\fbox{}`` (nested braces), ``<tag>...</tag>``,
GSM8K ``####``, "The answer is ...", and numbers.
"""
from __future__ import annotations

import re
from fractions import Fraction

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\b")
_THE_ANSWER_IS_RE = re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?", re.IGNORECASE)

#: A number: optional minus not glued to a preceding word/digit, thousands separators, decimals.
NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+")
_FRAC_RE = re.compile(r"^(-?)\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(-?\d+)\s*\}$")
_SLASH_RE = re.compile(r"^(-?\d+)\s*/\s*(-?\d+)$")


def _matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_index``, or None when unbalanced."""
    depth = 0
    for i in range(open_index, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces kept), else None.

    ``\\boxed 5`` (no braces) gives ``"5"``. An unbalanced last box falls back to the one before it.
    """
    for match in reversed(list(_BOXED_RE.finditer(text))):
        rest = match.end()
        j = rest
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            close = _matching_brace(text, j)
            if close is not None:
                return text[j + 1 : close]
        elif j > rest and j < len(text):
            token = re.match(r"[^\s$]+", text[j:])
            if token:
                return token.group(0)
    return None


def tag_content(text: str, tag: str = "answer") -> str | None:
    """Content of the last ``<tag>...</tag>``; an unclosed last ``<tag>`` gives the text after it."""
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    start = text.rfind(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    return (text[start:] if end < 0 else text[start:end]).strip()


def hash_answer(text: str) -> str | None:
    """Text after the last ``####`` (GSM8K convention), stripped; None when absent."""
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip()


def the_answer_is(text: str) -> str | None:
    """The rest of the line after the last "The (final) answer is"; None when absent."""
    matches = list(_THE_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    return text[matches[-1].end() :].split("\n", 1)[0].strip()


def _clean_numeric(text: str) -> str:
    """Drop LaTeX spacing, ``\\$``, ``\\%``, ``{,}`` and ``\\text{}`` wrappers around a number."""
    text = text.replace("{,}", ",").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    text = text.replace("\\$", "$").replace("\\%", "%").replace("−", "-")
    return re.sub(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}", r"\1", text).strip()


def parse_number(text: str | None, which: str = "last") -> Fraction | None:
    """The ``which`` ("first"/"last") number in ``text`` as an exact Fraction, else None.

    Handles commas, ``$``, ``%``, units, trailing periods, negatives, decimals (``18.00`` == 18),
    and a whole span that is ``\\frac{a}{b}`` or ``a/b``.
    """
    if not text:
        return None
    text = _clean_numeric(text)
    whole = text.strip(" $.")
    for pattern in (_FRAC_RE, _SLASH_RE):
        m = pattern.match(whole)
        if m:
            groups = m.groups()
            sign = -1 if len(groups) == 3 and groups[0] == "-" else 1
            num, den = int(groups[-2]), int(groups[-1])
            return sign * Fraction(num, den) if den else None
    found = NUMBER_RE.findall(text)
    if not found:
        return None
    token = found[-1] if which == "last" else found[0]
    try:
        return Fraction(token.replace(",", ""))
    except ValueError:  # e.g. more digits than int() accepts (sys.get_int_max_str_digits)
        return None


def format_number(value: Fraction | None) -> str | None:
    """A Fraction as a short string (``18``, ``-2.5``, ``1/3``); None stays None."""
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    return repr(as_float) if Fraction(as_float) == value else f"{value.numerator}/{value.denominator}"
