"""Tests for tasks/synthetic.py: the carry trace, its grading by the task's reward on any input, and disjoint
splits."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.rewards import answer_tag_exact, tag_content
from unmask.tasks.synthetic import (
    HELD_OUT_EVERY,
    carry_trace,
    completion_bytes,
    make_addition_dataset,
    make_example,
    split_of,
)

STEP = re.compile(r"^(\d)\+(\d)\+([01])=(\d\d)$")


def grade(text, answer) -> float | None:
    """The task's reward (``answer_tag_exact``, see tasks/synthetic.py) on one completion."""
    (score,) = answer_tag_exact(["prompt"], [text], answer=[answer])
    return score


@pytest.mark.parametrize("a, b, width, trace", [
    (47, 85, 2, "7+5+0=12;4+8+1=13"),
    (85, 47, 2, "5+7+0=12;8+4+1=13"),
    (0, 0, 2, "0+0+0=00;0+0+0=00"),
    (9, 1, 2, "9+1+0=10;0+0+1=01"),
    (999, 1, 3, "9+1+0=10;9+0+1=10;9+0+1=10"),
    (12, 34, 2, "2+4+0=06;1+3+0=04"),
    (5, 12345, 5, "5+5+0=10;0+4+1=05;0+3+0=03;0+2+0=02;0+1+0=01"),
])
def test_carry_trace_known_pairs(a, b, width, trace):
    assert carry_trace(a, b, width) == trace


def _answer_from_trace(trace: str) -> int:
    """The answer read off a trace as the module docstring says: the last sum, then the earlier
    steps' ones digits read backwards."""
    sums = [STEP.match(step).group(4) for step in trace.split(";")]
    return int(sums[-1] + "".join(s[1] for s in reversed(sums[:-1])))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.integers(0, 2))
def test_carry_trace_is_correct_column_arithmetic(a, b, extra):
    width = max(len(str(a)), len(str(b))) + extra
    steps = carry_trace(a, b, width).split(";")
    assert len(steps) == width
    da, db, carry = f"{a:0{width}d}"[::-1], f"{b:0{width}d}"[::-1], 0
    for k, step in enumerate(steps):
        m = STEP.match(step)
        assert m, step
        x, y, c, s = (int(g) for g in m.groups())
        assert (x, y, c) == (int(da[k]), int(db[k]), carry)
        assert s == x + y + c  # carry in = tens digit of the previous sum
        carry = s // 10
    assert _answer_from_trace(carry_trace(a, b, width)) == a + b


def test_carry_trace_rejects_operands_wider_than_width():
    with pytest.raises(ValueError, match="at most 2 digits"):
        carry_trace(100, 1, 2)


def test_example_format_and_its_answer_checks():
    ex = make_example(47, 85)
    assert ex.prompt == "47+85="
    assert ex.completion == "7+5+0=12;4+8+1=13\n<answer>132</answer>"
    assert ex.answer == "132"
    assert make_example(3, 4).prompt == "03+04="  # fixed width: every prompt has the same length
    assert tag_content(ex.completion, "answer") == "132"
    assert grade(ex.completion, ex.answer) == 1.0 and grade(ex.completion, 132) == 1.0
    assert grade(ex.completion.replace("132", "133"), ex.answer) == 0.0
    assert completion_bytes(2) == len(make_example(99, 99).completion) == 38


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.none(), st.integers(), st.binary(), st.lists(st.text())),
       st.one_of(st.text(), st.none(), st.integers(), st.floats()))
def test_grading_never_raises(text, answer):
    assert grade(text, answer) in (0.0, 1.0, None)
    assert grade(f"<answer>{text}</answer>", answer) in (0.0, 1.0, None)


def test_grading_huge_numbers_does_not_raise():
    huge = "9" * 5000  # past Python's int-from-str digit limit
    assert grade(f"<answer>{huge}</answer>", huge) in (0.0, 1.0, None)


def test_splits_are_disjoint_and_stable():
    train = make_addition_dataset(2000, seed=0, width=2, split="train")
    held = make_addition_dataset(200, seed=0, width=2, split="held_out")
    assert {ex.prompt for ex in train}.isdisjoint({ex.prompt for ex in held})
    pairs = [tuple(map(int, re.findall(r"\d+", ex.prompt))) for ex in held]
    assert all(split_of(a, b) == "held_out" for a, b in pairs)
    # about one pair in HELD_OUT_EVERY is held out, over every pair of the range
    every = [split_of(a, b) for a in range(100) for b in range(100)]
    assert abs(every.count("held_out") / len(every) - 1 / HELD_OUT_EVERY) < 0.02
    assert split_of(47, 385) == split_of(47, 385)


def test_dataset_is_deterministic_and_respects_width():
    a = make_addition_dataset(50, seed=3, width=3)
    assert a == make_addition_dataset(50, seed=3, width=3)
    assert a != make_addition_dataset(50, seed=4, width=3)
    for ex in a:
        assert re.fullmatch(r"\d{3}\+\d{3}=", ex.prompt)
        x, y = map(int, re.findall(r"\d+", ex.prompt))
        assert int(ex.answer) == x + y and grade(ex.completion, ex.answer) == 1.0


@pytest.mark.parametrize("kwargs", [dict(split="test"), dict(width=0), dict(width=10), dict(width=2.0),
                                    dict(width=1, split="held_out")])
def test_dataset_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_addition_dataset(1, seed=0, **kwargs)
