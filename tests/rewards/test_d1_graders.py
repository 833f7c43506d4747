"""The d1-compatible graders follow d1's parsers rule for rule, flaws included (values chosen by hand from
d1's eval/parse_and_get_acc.py); their agreement with d1's published numbers is in tests/eval/test_score.py."""
from __future__ import annotations

import random
import warnings

import pytest

from unmask.rewards import get_reward
from unmask.rewards.gsm8k import gsm8k_prediction_d1
from unmask.rewards.math_d1 import d1_unboxed
from unmask.rewards.puzzles import (
    countdown_equation_d1,
    countdown_score_d1,
    python_arithmetic,
    sudoku_answer_d1,
    sudoku_score_d1,
)


@pytest.mark.parametrize("text, number", [
    ("<answer>\\boxed{6,277}</answer>", 6.0),                      # no thousands separators
    ("\\boxed{...} then \\boxed{12} and \\boxed{13}", 12.0),       # the first box holding a number
    ("\\boxed{2:00 pm}", 2.0),                                     # its first number
    ("\\boxed{\\frac{2}{3}}", 2.0),                                # the lazy match stops at the first }
    ("\\boxed{120\n</answer>", None),                              # an unclosed box and no closed <answer>
    ("<answer>x = 5, so 7</answer><answer>9</answer>", 7.0),       # the first <answer>, its last number
    ("<answer>-3.5</answer>", -3.5),
    ("The answer is 42.", None),                                   # nothing else is read
])
def test_gsm8k_d1_prediction_reads_what_d1_reads(text, number):
    assert gsm8k_prediction_d1(text) == number


def test_gsm8k_d1_counts_a_missing_gold_as_wrong_and_compares_floats():
    grader = get_reward("gsm8k_correct_d1")
    texts = ["\\boxed{18}", "\\boxed{18.0}", "\\boxed{18}", "\\boxed{18}"]
    assert grader(None, texts, answer=["18", "#### 18", None, 18.0]) == [1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("text, unboxed", [
    ("a \\boxed{1} b \\boxed{x^{2}} c", "x^{2}"),
    ("no box here", "no box here"),              # d1 hands on the whole text
    ("\\boxed{2000\n</answer>", None),           # unclosed: d1's code raises, its callers fall back
    ("\\boxed 5$ and \\boxed{7}", "5"),          # "\boxed " anywhere wins, read up to $
    ("\\fbox{3}", "\\fbox{3}"),                  # found, but d1's remove_boxed strips only \boxed{
])
def test_d1_unboxed_is_d1s_remove_boxed_of_last_boxed_only_string(text, unboxed):
    assert d1_unboxed(text) == unboxed


@pytest.mark.parametrize("text, equation", [
    ("<answer>\\boxed{49 + 55 - 53}</answer>", "49 + 55 - 53"),
    ("<answer>\\boxed{3 \\times 8 \\div 2 = 12}</answer>", "3 * 8 / 2"),
    ("we try 48 + 29 + 16 = 93 ... <answer>\\boxed{48 + 29 + 16>", "48 + 29 + 16"),  # the first `expr = n` in the text
    ("<answer>49 + 55 - 53</answer>", "<answer>49 + 55 - 53</answer>"),              # no box: the whole text
])
def test_countdown_d1_equation(text, equation):
    assert countdown_equation_d1(text) == equation


def test_countdown_d1_demands_every_number_exactly_once():
    assert countdown_score_d1("\\boxed{49 + 55 - 53}", [49, 55, 53], 51) == 1.0
    assert countdown_score_d1("\\boxed{43 + 40}", [43, 40, 86], 83) == 0.0          # 86 unused
    assert countdown_score_d1("\\boxed{2 * 3 / 2}", [2, 3], 3) == 0.0                # 2 twice
    assert countdown_score_d1("\\boxed{3 / (2 - 2)}", [3, 2, 2], 1) == 0.0          # division by zero
    assert countdown_score_d1("\\boxed{9 ** 9 ** 9}", [9, 9, 9], 1) == 0.0           # too big to compute: wrong
    assert get_reward("countdown_d1")(None, ["\\boxed{1+2}"], nums=[[1, 2]], target=[3]) == [1.0]


def _eval(expr: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # "(1)(2)": 'int' object is not callable
            value = eval(expr, {"__builtins__": None}, {})  # short strings of digits and operators only
    except Exception:
        return None
    return value if isinstance(value, (int, float)) else None


def test_python_arithmetic_gives_what_eval_gives():
    rng = random.Random(0)
    tokens = ["1", "2", "3", "7", "10", "0", "2.5", ".5", "+", "-", "*", "/", "//", "(", ")", " "]
    for _ in range(3000):
        expr = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 9)))
        assert python_arithmetic(expr) == _eval(expr), expr
    for _ in range(2000):  # powers: at most one, so that eval itself stays quick
        expr = "".join(rng.choice(["2", "3", ".5", "-", "(", ")", "**", "*"]) for _ in range(rng.randint(1, 6)))
        if expr.count("*") > 2:
            continue
        expected = _eval(expr)
        if isinstance(expected, int) and expected.bit_length() > 1000:  # 3**3333: near the power limit
            continue
        assert python_arithmetic(expr) == expected, expr
    assert python_arithmetic("__import__('os')") is None and python_arithmetic("2 ** 100000") is None


def test_sudoku_d1_answer_and_cell_accuracy():
    puzzle, solution = "4320004330100004", "4321124334122134"
    raw = "<reasoning>...</reasoning>\n<answer>\n4321 1243\n3412 2134\n</answer><|eot_id|>"
    assert sudoku_answer_d1(raw) == solution
    assert sudoku_answer_d1("<answer>\n43211243<|eot_id|>") == "4321124300000000"  # eot closes it; zero-padded
    assert sudoku_answer_d1("<answer>\n```\n4321124334122134\n```\n</answer>") == solution
    assert sudoku_answer_d1("nothing") == ""
    assert sudoku_score_d1(raw, puzzle, solution) == 1.0
    assert sudoku_score_d1("<answer>4320004330100004</answer>", puzzle, solution) == 0.0  # the puzzle copied back
    assert sudoku_score_d1("<answer>4321000000000000</answer>", puzzle, solution) == 1 / 8  # 1 of 8 blanks
    assert get_reward("sudoku_cells_d1")(None, [raw], Puzzle=[puzzle], Solution=[solution]) == [1.0]
    assert sudoku_score_d1(raw, puzzle, None) is None
