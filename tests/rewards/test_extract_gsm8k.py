"""Answer extraction and the GSM8K reward (unit cases plus all 1319 test solutions)."""
from __future__ import annotations

from fractions import Fraction

import pytest

from unmask.rewards.extract import hash_answer, last_boxed, parse_number, tag_content, the_answer_is
from unmask.rewards.gsm8k import gsm8k_correct, gsm8k_gold, gsm8k_prediction

from .data import GSM8K_TEST, read_jsonl


@pytest.mark.parametrize("text,expected", [
    (r"so \boxed{\frac{1}{2}} done", r"\frac{1}{2}"),
    (r"\boxed{1} then \boxed{\{1,\{2\}\}}", r"\{1,\{2\}\}"),
    (r"\fbox{7}", "7"),
    (r"\boxed 5 is it", "5"),
    (r"\boxed{3} and \boxed{4", "3"),  # unbalanced last box falls back to the previous one
    (r"no box", None),
    (r"\boxed{", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_tags_hash_answer_is():
    assert tag_content("<answer> 1 </answer> <answer>\n2\n</answer>") == "2"
    assert tag_content("<answer>unclosed 3") == "unclosed 3"
    assert tag_content("none") is None
    assert hash_answer("a #### 1 #### 2,000 ") == "2,000"
    assert the_answer_is("blah. The final answer is: 42.\nmore") == "42."


@pytest.mark.parametrize("text,expected", [
    ("1,000", 1000), ("$18.00", 18), ("-3 apples", -3), ("18.", 18), ("50%", 50), (r"\$1{,}250", 1250),
    (r"\frac{3}{4}", Fraction(3, 4)), ("-7/2", Fraction(-7, 2)), ("0.25", Fraction(1, 4)), ("5-3=2", 2),
    ("x = -5", -5), ("none", None), ("", None), ("9" * 5000, None),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize("completion,expected", [
    (r"<answer>\boxed{7}</answer> #### 9", 7),          # boxed first
    ("<answer>it is 8 apples</answer> #### 9", 8),      # then <answer>
    ("3 + 4 = 7\n#### 9\nextra 11", 9),                 # then ####
    ("So the answer is $1,200.50. Check: 3", Fraction(240100, 200)),  # then "The answer is"
    ("5 + 6 = 11 dollars.", 11),                          # then the last number
    ("The total is -4.", -4),
    ("nothing here", None),
])
def test_gsm8k_prediction_order(completion, expected):
    assert gsm8k_prediction(completion) == expected


def test_gsm8k_reward_cases():
    gold = ["#### 1,000", "#### 18", "#### -3", "#### 0.5", "no number", None]
    preds = ["The answer is 1000.", r"\boxed{\$18.00}", "<answer>-3</answer>", "#### .5", "#### 1", "#### 1"]
    assert gsm8k_correct(None, preds, answer=gold) == [1.0, 1.0, 1.0, 1.0, None, None]
    assert gsm8k_correct(None, ["#### 17"], answer=["#### 18"]) == [0.0]


def test_gsm8k_all_gold_solutions_score_one_and_wrong_numbers_zero():
    rows = read_jsonl(GSM8K_TEST)
    assert len(rows) == 1319
    answers = [r["answer"] for r in rows]
    assert gsm8k_correct([r["question"] for r in rows], answers, answer=answers) == [1.0] * 1319
    wrong = [a.rsplit("####", 1)[0] + "#### " + str(gsm8k_gold(a) + 1) for a in answers]
    assert gsm8k_correct(None, wrong, answer=answers) == [0.0] * 1319
    # the gold with its number reformatted (commas/decimals/$) still matches
    reformatted = [f"The answer is ${float(gsm8k_gold(a)):,.2f}." for a in answers]
    assert gsm8k_correct(None, reformatted, answer=answers) == [1.0] * 1319
