"""lm-evaluation-harness prompt styles (tasks/gsm8k.py, tasks/math500.py, tasks/humaneval.py): the exact few-shot
prompts, their stop strings applied before grading, and lm-eval's strict-match GSM8K grader. That ``unmask eval``
grades the cut completion is tested in tests/eval/test_eval.py."""
from __future__ import annotations

import pytest

from unmask.rewards import gsm8k_strict_match, math_correct
from unmask.tasks import TEMPLATES, cut_at
from unmask.tasks.gsm8k import GSM8K_COT_EXEMPLARS, gsm8k_cot_prompt
from unmask.tasks.math500 import MINERVA_MATH_PROMPT


def user_text(template: str, row: dict) -> str:
    (message,) = TEMPLATES.get(template).render(row, None)
    return message["content"]


def test_gsm8k_cot_prompts_are_lm_evals():
    text = user_text("gsm8k_cot", {"question": "What is 2 + 3?"})
    assert text.startswith("Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today.")
    assert text.endswith("The answer is 8.\n\nQ: What is 2 + 3?\nA:")
    assert text.count("Q: ") == 9 and text.count("\nA: ") == 8
    assert user_text("gsm8k_cot_5shot", {"question": "x"}).count("Q: ") == 6
    assert gsm8k_cot_prompt("x", shots=0) == "Q: x\nA:"
    with pytest.raises(ValueError, match="8 exemplars"):
        gsm8k_cot_prompt("x", shots=9)


def test_every_exemplar_passes_the_strict_grader_against_its_own_answer():
    for question, target in GSM8K_COT_EXEMPLARS:
        answer = target.rsplit("The answer is ", 1)[1].rstrip(".")
        assert gsm8k_strict_match([question], [target], answer=[f"...\n#### {answer}"]) == [1.0]


@pytest.mark.parametrize("text, gold, expected", [
    ("So 1,000 in all. The answer is 1,000.", "#### 1000", 1.0),
    ("The answer is $18.", "#### 18", 0.0),         # lm-eval's pattern has no "$" before the number
    ("The answer is -3.", "#### -3", 1.0),
    ("The answer is 18.0.", "#### 18", 0.0),        # a string match, as lm-eval's exact_match
    ("The answer is 7. Then the answer is 18.", "#### 18", 0.0),  # the first match counts
    ("18", "#### 18", 0.0),                          # no "The answer is"
    (None, "#### 18", 0.0),
    ("The answer is 18.", None, None),
])
def test_strict_match(text, gold, expected):
    assert gsm8k_strict_match(["q"], [text], answer=[gold]) == [expected]


def test_minerva_prompt_and_stop():
    text = user_text("minerva_math", {"problem": "Compute $1+1$."})
    assert text.startswith(MINERVA_MATH_PROMPT) and text.endswith("\n\nProblem:\nCompute $1+1$.\n\nSolution:")
    assert text.count("Problem:") == 5 and "$.}\n\nSolution:" in text  # lm-eval's stray brace, kept
    completion = ("$1+1=\\boxed{2}$.\nFinal Answer: The final answer is $2$. I hope it is correct.\n\n"
                  "Problem:\nWhat is $3+3$?\n\nSolution:\n$\\boxed{6}$")
    graded = TEMPLATES.get("minerva_math").cut(completion)
    assert "Problem:" not in graded
    assert math_correct(["p"], [graded], solution=["\\boxed{2}"]) == [1.0]
    assert math_correct(["p"], [completion], solution=["\\boxed{2}"]) == [0.0]  # uncut, the continuation wins


def test_cut_at_the_first_stop():
    assert cut_at("a Q: b Problem: c", ("Problem:", "Q:")) == "a "
    assert cut_at("no stop here", ("Q:",)) == "no stop here"
