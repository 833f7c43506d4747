"""Countdown, 4×4 Sudoku, d1's XML format rewards and the truncation penalty."""
from __future__ import annotations

from fractions import Fraction

import pytest

from unmask.rewards import get_reward
from unmask.rewards.format import xml_count_score
from unmask.rewards.puzzles import countdown_score, is_valid_sudoku4, safe_arithmetic, sudoku_score


@pytest.mark.parametrize("expr,value", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("-(4 - 6)", 2), ("7 / 2", Fraction(7, 2)), ("+5", 5),
    ("1/0", None), ("2 ** 100", None), ("9**9**9**9", None), ("__import__('os')", None), ("abs(-1)", None),
    ("1.5 + 1", None), ("True + 1", None), ("x", None), ("(" * 500 + "1" + ")" * 500, None), ("1 +", None),
    ("1" + "+1" * 300, None),  # longer than MAX_EQUATION_CHARS
])
def test_safe_arithmetic(expr, value):
    result = safe_arithmetic(expr)
    assert (result and result[0]) == value if value is not None else result is None


@pytest.mark.parametrize("answer,score", [
    ("<answer>(3 + 5) * 3</answer>", 1.0),
    ("<answer>(3 + 5) * 3 = 24</answer>", 1.0),
    ("<answer>3 \\times 8</answer>", 0.0),           # 8 is not an available number
    ("<answer>(5 + 3) * 3 * 1</answer>", 0.0),       # 1 not available
    ("<answer>(3 + 5) * 3 + 3 - 3</answer>", 0.0),   # 3 used more often than given
    ("<answer>24</answer>", 0.0),
    ("<answer>3 * 5 + 3</answer>", 0.0),             # wrong value
    ("(3 + 5) * 3", 0.0),                            # no <answer>
    ("<answer>(3+5)/0</answer>", 0.0),
])
def test_countdown(answer, score):
    assert countdown_score(answer, [3, 5, 3], 24) == score


@pytest.mark.parametrize("answer,score", [
    ("<answer>\\boxed{49 + 55 - 53}</answer>", 1.0),          # LLaDA-8B-Instruct's habit under d1's prompt
    ("<answer>\n\\boxed{49 + 55 - 53 = 51}\n</answer>", 1.0),
    ("<answer>$\\boxed{(55 - 53) \\cdot 49 - 47}$</answer>", 0.0),  # 47 not available
    ("<answer>\\( 55 + 49 - 53 \\)</answer>", 1.0),
    ("so \\boxed{55 - 53 + 49}", 1.0),                          # no <answer>: the last box
    ("<answer>\\boxed{49 + 55 - 53</answer>", 0.0),            # an unclosed box is no equation
])
def test_countdown_reads_an_equation_wrapped_in_boxed_or_math_delimiters(answer, score):
    assert countdown_score(answer, [49, 55, 53], 51) == score


def test_countdown_options_and_reward_columns():
    assert countdown_score("<answer>3 * 8</answer>", [3, 8, 2], 24) == 1.0
    assert countdown_score("<answer>3 * 8</answer>", [3, 8, 2], 24, require_all=True) == 0.0
    assert countdown_score("<answer>3 * 7</answer>", [3, 7], 24, format_score=0.1) == 0.1
    reward = get_reward("countdown")
    assert reward(None, ["<answer>3*8</answer>"] * 3, nums=[[3, 8], "[3, 8]", None], target=[24, "24", 24]) == [
        1.0, 1.0, None]


SOLVED = "1234341221434321"
PUZZLE = "1034300201430000"


def test_sudoku():
    assert is_valid_sudoku4([int(c) for c in SOLVED])
    assert sudoku_score(f"<reasoning>...</reasoning><answer>{SOLVED}</answer>", PUZZLE) == 1.0
    grid = "\n".join(" ".join(SOLVED[4 * r : 4 * r + 4]) for r in range(4))
    assert sudoku_score(f"<answer>\n{grid}\n</answer>", PUZZLE) == 1.0
    assert sudoku_score("<answer>2143342112344312</answer>", PUZZLE) == 0.0  # valid grid, ignores the givens
    assert sudoku_score("<answer>1234123412341234</answer>", "0" * 16) == 0.0  # columns repeat
    assert sudoku_score("<answer>123</answer>", PUZZLE) == 0.0
    assert sudoku_score(SOLVED, PUZZLE) == 1.0
    assert sudoku_score(SOLVED, "bad") is None
    assert get_reward("sudoku")(None, [SOLVED], Puzzle=[list(map(int, PUZZLE))]) == [1.0]


GOOD = "<reasoning>\nthink\nmore\n</reasoning>\n<answer>\n42\n</answer>\n"


def test_xml_formats():
    strict, soft, count = (get_reward(n) for n in ("xml_format_strict", "xml_format", "xml_count"))
    texts = [GOOD, "<reasoning>x</reasoning> <answer>42</answer>", "<answer>42</answer><reasoning>x</reasoning>",
             GOOD + "tail", "nothing"]
    assert strict(None, texts) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert soft(None, texts) == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert count(None, texts)[0] == pytest.approx(0.5)
    assert count(None, texts)[4] == 0.0
    assert xml_count_score(GOOD + "tail") == pytest.approx(0.5 - 0.004 - 0.004)  # trailing text penalised
    assert get_reward("answer_is_int")(None, ["<answer>-3</answer>", "<answer>3.5</answer>"]) == [1.0, 0.0]


def test_length_penalty():
    tokens = get_reward("length_penalty", max_completion_length=4, penalty=-0.5)
    texts = ["<answer>1</answer>", "cut off mid", "short"]
    assert tokens(None, texts, completion_ids=[[1] * 4, [1] * 4, [1] * 2]) == [0.0, -0.5, 0.0]
    assert tokens(None, texts) == [0.0, 0.0, 0.0]  # no completion_ids: length unknown, no penalty
    chars = get_reward("length_penalty", max_completion_length=5, unit="chars", closing=None, eos="<|eot|>")
    assert chars(None, ["abcdef", "abcd<|eot|>", "abc"]) == [-1.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        get_reward("length_penalty", max_completion_length=5, unit="words")
