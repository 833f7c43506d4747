"""Puzzle rewards as in d1: Countdown (an arithmetic equation reaching a target) and 4×4 Sudoku."""
from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

from rewards.contract import first_present, per_item
from rewards.extract import tag_content
from rewards.registry import register_reward

#: Longest equation accepted (characters); longer answers score 0 without being parsed.
MAX_EQUATION_CHARS = 500
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b}


def _ints(value) -> list[int] | None:
    """A list of ints from a list/tuple or a string such as ``"[3, 5, 7]"``; None when there are none."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else re.findall(r"-?\d+", str(value))
    try:
        out = [int(v) for v in items]
    except (TypeError, ValueError):
        return None
    return out or None


def safe_arithmetic(expression: str) -> tuple[Fraction, list[int]] | None:
    """Evaluate ``+ - * /``, parentheses, unary minus and integer literals exactly (no ``eval``).

    Returns ``(value, literals used)``, or None for anything else (names, calls, ``**``, floats,
    division by zero, over-long input).
    """
    if len(expression) > MAX_EQUATION_CHARS:
        return None
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    literals: list[int] = []

    def walk(node) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            literals.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise ValueError(f"not allowed: {type(node).__name__}")

    try:
        return walk(tree.body), literals
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


def countdown_equation(text: str) -> str | None:
    """The equation in the last ``<answer>`` (left-hand side when it contains ``=``), ``×``/``÷`` mapped."""
    answer = tag_content(text, "answer")
    if not answer:
        return None
    answer = answer.replace("\\times", "*").replace("×", "*").replace("\\div", "/").replace("÷", "/")
    answer = answer.replace("−", "-").strip().strip("$").strip()
    return answer.split("=")[0].strip() or None


def countdown_score(text: str, numbers, target, *, require_all: bool = False, format_score: float = 0.0) -> float | None:
    """1.0 when the ``<answer>`` equation uses each given number at most once and equals ``target``.

    ``require_all=True`` demands every number exactly once (d1's rule). A well-formed equation
    that fails gets ``format_score`` (d1 uses 0.1). None when numbers/target are missing.
    """
    nums, goal = _ints(numbers), _ints(target)
    if not nums or not goal or len(goal) != 1:
        return None
    equation = countdown_equation(text)
    evaluated = safe_arithmetic(equation) if equation else None
    if evaluated is None:
        return 0.0
    value, used = evaluated
    available = Counter(nums)
    ok_numbers = (Counter(used) == available) if require_all else not (Counter(used) - available)
    return 1.0 if ok_numbers and value == goal[0] else format_score


@register_reward("countdown", columns=(("numbers", "nums"), ("target",)))
@per_item
def countdown(text: str, row: dict) -> float | None:
    """Countdown correctness (columns ``numbers``/``nums`` and ``target``; 1.0/0.0)."""
    return countdown_score(text, first_present(row, "numbers", "nums"), row.get("target"))


def parse_sudoku(value, allow_blanks: bool) -> list[int] | None:
    """16 cells from a string/list of digits (``0`` or ``.`` blanks when ``allow_blanks``); else None."""
    if value is None:
        return None
    text = "".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    text = text.replace(".", "0") if allow_blanks else text
    digits = [int(c) for c in re.findall(r"\d", text)]
    if len(digits) != 16 or any(d > 4 or (d == 0 and not allow_blanks) for d in digits):
        return None
    return digits


def is_valid_sudoku4(grid: list[int]) -> bool:
    """Whether a complete 4×4 grid has each of 1–4 once per row, column and 2×2 box."""
    full = set(range(1, 5))
    rows = [grid[4 * r : 4 * r + 4] for r in range(4)]
    cols = [grid[c::4] for c in range(4)]
    boxes = [[grid[4 * (br + i) + bc + j] for i in range(2) for j in range(2)] for br in (0, 2) for bc in (0, 2)]
    return all(set(group) == full for group in rows + cols + boxes)


def sudoku_score(text: str, puzzle) -> float | None:
    """1.0 when the answer grid (16 digits 1–4, in ``<answer>`` if present) is valid and keeps the givens."""
    givens = parse_sudoku(puzzle, allow_blanks=True)
    if givens is None:
        return None
    answer = tag_content(text, "answer")
    grid = parse_sudoku(answer if answer is not None else text, allow_blanks=False)
    if grid is None or not is_valid_sudoku4(grid):
        return 0.0
    return float(all(g == 0 or g == v for g, v in zip(givens, grid)))


@register_reward("sudoku", columns=(("puzzle", "Puzzle"),))
@per_item
def sudoku(text: str, row: dict) -> float | None:
    """4×4 Sudoku correctness against the ``puzzle`` column (``0`` marks blanks; 1.0/0.0)."""
    return sudoku_score(text, first_present(row, "puzzle", "Puzzle"))
