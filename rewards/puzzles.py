"""Puzzle rewards as in d1: Countdown (an arithmetic equation reaching a target) and 4×4 Sudoku, each beside the
grader behind d1's published numbers (``countdown_d1``; ``sudoku_cells_d1``, a cell accuracy, not solved grids)."""
from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

from unmask.rewards.contract import first_present, per_item
from unmask.rewards.extract import last_boxed, tag_content
from unmask.rewards.math_d1 import d1_unboxed
from unmask.rewards.registry import register_reward

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
    """The equation in the last ``<answer>`` (left-hand side when it contains ``=``), ``×``/``÷``/``·`` mapped.

    A ``\\boxed{}`` inside the answer is unwrapped (LLaDA writes ``<answer>\\boxed{49 + 55 - 53}</answer>``), as
    are ``$``/``\\(...\\)`` delimiters; without an ``<answer>`` the last ``\\boxed{}`` of the text is read.
    """
    answer = tag_content(text, "answer")
    if answer is None or "\\boxed" in answer or "\\fbox" in answer:
        answer = last_boxed(text if answer is None else answer)
    if not answer:
        return None
    for latex, op in (("\\times", "*"), ("×", "*"), ("\\cdot", "*"), ("·", "*"), ("\\div", "/"), ("÷", "/"),
                      ("−", "-"), ("\\left", ""), ("\\right", ""), ("\\(", ""), ("\\)", ""), ("$", "")):
        answer = answer.replace(latex, op)
    return answer.split("=")[0].strip() or None


def countdown_score(text: str, numbers, target, *, require_all: bool = False,
                    format_score: float = 0.0) -> float | None:
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


# d1's graders (eval/parse_and_get_acc.py of dllm-reasoning/d1), re-implemented rule for rule so that their
# numbers reproduce d1's tables; d1 evaluates equations with eval(), here an AST walk gives the same values.
_D1_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_D1_LHS = re.compile(r"([0-9+\-*/() ]+)=[0-9. ]+")
_D1_CHARS = re.compile(r"^[\d+\-*/().\s]+$")
_PY_BINOPS = {**_BINOPS, ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a**b}
#: An integer power whose result would pass 2**this is not computed (it could not be within 1e-5 of a target).
MAX_POWER_BITS = 4096


def python_arithmetic(expression: str) -> int | float | None:
    """The value Python's ``eval`` gives a string of digits, ``+ - * / // **``, ``.`` and parentheses (ints and
    floats as Python computes them), without ``eval``; None where ``eval`` would raise or the result is no number,
    or for an integer power of more than :data:`MAX_POWER_BITS` bits."""
    if not _D1_CHARS.match(expression):
        return None
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None

    def walk(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _PY_BINOPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and type(left) is int and type(right) is int and right > 0 \
                    and abs(left) > 1 and right * abs(left).bit_length() > MAX_POWER_BITS:
                raise OverflowError("power too large")
            return _PY_BINOPS[type(node.op)](left, right)
        raise ValueError(f"not a number: {type(node).__name__}")

    try:
        value = walk(tree.body)
    except (ValueError, ArithmeticError, RecursionError, TypeError):
        return None
    return value if isinstance(value, (int, float)) else None


def countdown_equation_d1(text: str) -> str:
    """The equation d1's ``parse_countdown_answers`` grades: the last ``\\boxed{}`` (the whole text when there is
    none; the first closed ``<answer>``, else the text, when the last box is unclosed), LaTeX ``\\div``/``\\times``/
    ``\\cdot`` mapped, then the left side of the first ``expression = number`` found in it."""
    equation = d1_unboxed(text)
    if equation is None:
        match = _D1_ANSWER.search(text)
        equation = match.group(1).strip() if match else text
    equation = equation.replace("\\div", "/").replace("\\times", "*").replace("\\cdot", "*")
    match = _D1_LHS.search(equation)
    return match.group(1).strip() if match else equation


def countdown_score_d1(text: str, numbers, target) -> float | None:
    """1.0 when d1 counts the completion correct: the digit runs of :func:`countdown_equation_d1` are exactly the
    given numbers (each once) and its value is within 1e-5 of ``target``; None when numbers/target are missing."""
    nums, goal = _ints(numbers), _ints(target)
    if not nums or not goal or len(goal) != 1:
        return None
    equation = countdown_equation_d1(text)
    try:
        used = sorted(int(n) for n in re.findall(r"\d+", equation))
    except ValueError:  # more digits than int() accepts
        return 0.0
    value = python_arithmetic(equation) if used == sorted(nums) else None
    return float(value is not None and abs(value - goal[0]) < 1e-5)


@register_reward("countdown_d1", columns=(("numbers", "nums"), ("target",)))
@per_item
def countdown_d1(text: str, row: dict) -> float | None:
    """d1-compatible Countdown correctness (the grader behind d1's tables): every number exactly once."""
    return countdown_score_d1(text, first_present(row, "numbers", "nums"), row.get("target"))


_D1_SUDOKU_PATTERNS = tuple(re.compile(p, re.DOTALL) for p in (
    r"<answer>.*?```\s*([\d\s]+)```",
    r"<answer>(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|</answer>)",
    r"</answer>\s*(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|$)",
    r".*?(\d{16})\s*</answer>",
    r"\b(\d{16})\b",
))


def sudoku_answer_d1(text: str) -> str:
    """The 16 characters d1's ``parse_sudoku_answers`` compares: the first non-empty span its five patterns find
    (a fenced block in ``<answer>``, the ``<answer>`` up to ``</answer>`` or an end-of-text token, ...), whitespace
    removed, cut or zero-padded to 16; "" when none matches. It needs the raw completion: the end-of-text tokens
    (``<|eot_id|>``) close an unclosed ``<answer>``."""
    for pattern in _D1_SUDOKU_PATTERNS:
        match = pattern.search(text)
        if match and match.group(1).strip():
            answer = re.sub(r"\s", "", match.group(1))
            return answer[:16].ljust(16, "0")
    return ""


def sudoku_score_d1(text: str, puzzle, solution) -> float | None:
    """d1's Sudoku metric for one puzzle: the fraction of its blank cells (``0`` in ``puzzle``) where
    :func:`sudoku_answer_d1` holds the ``solution``'s digit. d1 pools cells over all puzzles; the mean of this
    value over puzzles is the same number when every puzzle has as many blanks (d1's test set: 8 each)."""
    givens = parse_sudoku(puzzle, allow_blanks=True)
    gold = "".join(str(v) for v in solution) if isinstance(solution, (list, tuple)) else str(solution or "")
    if givens is None or len(gold) < 16:
        return None
    blanks = [i for i, g in enumerate(givens) if g == 0]
    if not blanks:
        return None
    answer = sudoku_answer_d1(text)
    return sum(answer[i] == gold[i] for i in blanks) / len(blanks) if answer else 0.0


@register_reward("sudoku_cells_d1", columns=(("puzzle", "Puzzle"), ("solution", "Solution")))
@per_item
def sudoku_cells_d1(text: str, row: dict) -> float | None:
    """d1-compatible Sudoku cell accuracy over the blanks (the number in d1's tables), 0.0–1.0 per puzzle."""
    return sudoku_score_d1(text, first_present(row, "puzzle", "Puzzle"), first_present(row, "solution", "Solution"))
