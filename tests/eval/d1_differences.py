"""Why the primary graders and d1's disagree on d1's published LLaDA-8B-Instruct generations
(``tests/fixtures/d1-baselines``): every sample they grade differently, put in a named class.

    python -m tests.eval.d1_differences     # prints the per-class counts quoted in README.md

``tests/eval/test_score.py`` checks the counts, and that no disagreement is left unexplained ("other").
"""
from __future__ import annotations

import functools
import re
from collections import Counter

from unmask.eval.score import expand, grade, load_completions
from unmask.rewards.extract import parse_number, tag_content
from unmask.rewards.gsm8k import gsm8k_prediction_d1
from unmask.rewards.math_d1 import d1_answer, is_equiv
from unmask.rewards.puzzles import countdown_equation, parse_sudoku

from ..paths import FIXTURES

D1_BASELINES = FIXTURES / "d1-baselines"
OTHER = "other"


@functools.cache
def records(bench: str) -> list[dict]:
    """The graded records of one benchmark's d1 shards (graded once per test session)."""
    return grade(*load_completions(expand([str(D1_BASELINES / f"{bench}_*_generations.json.gz")])))


def gsm8k_class(r: dict) -> str | None:
    text, g, gold = r["completion"], r["graders"], r["row"]["answer"]
    if gold is None:
        return "gold missing (null in d1's file): ours leaves it unscored, d1 counts it wrong"
    if g["gsm8k_correct"] == g["d1_parser"]:
        return None
    boxes = re.findall(r"\\boxed{(.*?)}", text)
    if g["gsm8k_correct"] == 1.0:
        if any("," in b and parse_number(b) == parse_number(gold) for b in boxes):
            return "thousands separator: d1 reads \\boxed{6,277} as 6"
        if gsm8k_prediction_d1(text) is None:
            return ("no closed \\boxed{} with a number and no closed <answer>: d1 reads nothing, ours reads the "
                    "unclosed box or tag, else the last number")
        return OTHER
    if len(set(boxes)) > 1:
        return "two boxes disagree: d1 grades the first, ours the last"
    return "the box holds more than the number (\\frac{2}{3}, 2:00 pm): d1 takes its first number, ours the value"


def _bare(s: str) -> str:
    """An answer without the wrapping that d1's string match trips on: \\text{}, units, `x \\in`, `lhs =`."""
    s = re.sub(r"\\(?:text|mbox)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"^[^=]*(?:=|\\in)", "", s)
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)
    s = re.sub(r"\s*\b(?:cm|m|inches|units)\b(?:\^2)?", "", s)
    return s.strip().strip("()").strip()


def math500_class(r: dict) -> str | None:
    text, g, gold = r["completion"], r["graders"], str(r["row"]["answer"])
    if g["math_verify"] == g["d1_is_equiv"]:
        return None
    if g["d1_is_equiv"] == 1.0:
        return OTHER
    answer = d1_answer(text)
    if answer is None:
        return "unclosed \\boxed{2000 in the answer: d1 compares the raw span, ours reads the number"
    if is_equiv(_bare(answer), _bare(gold)):
        return "the same answer with or without text, units or notation (\\text{east}, 15 cm, x \\in [-2,7], 4210_{5})"
    if sorted(_bare(answer).replace(" ", "").split(",")) == sorted(_bare(gold).replace(" ", "").split(",")):
        return "the same list in another order (3, 7, 5)"
    return "the same value in another form (15.975, \\frac{3}{24}, 7! \\times 2!, 7i - 2, \\sqrt{3}/3, 36.00)"


def countdown_class(r: dict) -> str | None:
    text, g, row = r["completion"], r["graders"], r["row"]
    if g["countdown"] == g["d1_parser"]:
        return None
    if g["countdown"] == 1.0:
        used = Counter(int(n) for n in re.findall(r"\d+", countdown_equation(text) or ""))
        if used != Counter(int(n) for n in row["nums"]):
            return "leaves a number unused: ours allows each number at most once, d1 (and its prompt) demands all"
        return OTHER
    if countdown_equation(text) is None:
        return ("unclosed \\boxed{... in the answer: ours reads no equation, d1 grades the first `expression = "
                "number` in the whole text (here the reasoning's)")
    return OTHER


def sudoku_class(r: dict) -> str | None:
    """Sudoku's two graders measure different things: every puzzle is put in a class by its answer's shape."""
    text, g, row = r["completion"], r["graders"], r["row"]
    answer = tag_content(text, "answer")
    source = answer if answer is not None else text
    grid = parse_sudoku(source, allow_blanks=False)
    credit = "with" if g["d1_cell_accuracy"] else "without"
    if g["sudoku"] == 1.0:
        return f"solved ({credit} d1 credit)"
    if grid is not None:
        keeps = all(p in (0, v) for p, v in zip(parse_sudoku(row["puzzle"], allow_blanks=True), grid))
        return f"a full grid of 1–4 that {'breaks a rule' if keeps else 'overwrites a given'}, {credit} d1 cell credit"
    if parse_sudoku(source, allow_blanks=True) is not None:
        return f"16 digits with blanks left as 0, {credit} d1 cell credit"
    return f"no 16-digit grid in the answer, {credit} d1 cell credit"


CLASSIFIERS = {"gsm8k": gsm8k_class, "math500": math500_class, "countdown": countdown_class, "sudoku": sudoku_class}


def differences(bench: str) -> Counter:
    """Samples per class for one benchmark (samples both graders agree on are not counted, except Sudoku's)."""
    return Counter(c for c in map(CLASSIFIERS[bench], records(bench)) if c is not None)


if __name__ == "__main__":
    for name in CLASSIFIERS:
        print(f"\n{name}")
        for cls, n in sorted(differences(name).items(), key=lambda kv: -kv[1]):
            print(f"| {n} | {cls} |")
