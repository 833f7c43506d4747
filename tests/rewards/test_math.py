"""MATH rewards: math-verify through the worker pool (MATH-500, equivalences, timeouts, threads) and
the d1-compatible string grader.

math-verify 0.9 behaviour asserted here (as observed, both argument orders): ``\\frac{1}{2}`` = ``0.5``,
``\\dfrac`` = ``\\frac``, ``(3, \\frac{\\pi}{2})`` = ``(3, \\pi/2)``, ``90^\\circ`` = ``90``,
``\\text{Evelyn}`` = ``Evelyn``, ``10\\%`` = ``0.1`` *and* ``10\\%`` = ``10``, ``x = 5`` = ``5``,
``5 \\text{ cm}`` = ``5``, ``1{,}000`` = ``1000``; ``\\pi`` ≠ ``3.14159``, ``(-\\infty, 2]`` ≠ ``(-\\infty, 2)``.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from unmask.rewards.math_d1 import d1_math_equal, is_equiv, last_boxed_only_string, remove_boxed, strip_string
from unmask.rewards.math_grader import HARD_KILL_GRACE_S, MathVerifyPool, math_equal
from unmask.rewards.math_rewards import math_correct, math_correct_d1, score_math

from .data import MATH500_TEST, read_jsonl

EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{1}{2}", r"\frac12"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \pi/2)"),
    (r"90^\circ", "90"),
    (r"\text{Evelyn}", "Evelyn"),
    (r"10\%", "0.1"),
    (r"10\%", "10"),
    ("x^2+2x+1", "(x+1)^2"),
    (r"\{1,2\}", r"\{2,1\}"),
    (r"\frac{\sqrt{2}}{2}", r"\sqrt2/2"),
    ("x=5", "5"),
    (r"5 \text{ cm}", "5"),
    ("1000", "1{,}000"),
    (r"\text{(C)}", "C"),
]
NOT_EQUIVALENT = [
    (r"\pi", "3.14159"),
    ("5", "6"),
    (r"(-\infty, 2]", r"(-\infty, 2)"),
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    ("x+1", "x-1"),
    (r"\text{Evelyn}", "Bob"),
]


def _boxed(s: str) -> str:
    return f"\\boxed{{{s}}}"


def test_equivalence_table_both_ways_through_pool():
    pairs = [(a, b) for a, b in EQUIVALENT] + [(b, a) for a, b in EQUIVALENT]
    wrong = [(a, b) for a, b in NOT_EQUIVALENT] + [(b, a) for a, b in NOT_EQUIVALENT]
    golds = [g for g, _ in pairs + wrong]
    preds = [f"<answer>{_boxed(p)}</answer>" for _, p in pairs + wrong]
    assert math_correct(None, preds, answer=golds) == [1.0] * len(pairs) + [0.0] * len(wrong)


def test_math500_gold_answers_score_one_and_d1_count(capsys):
    rows = read_jsonl(MATH500_TEST)
    assert len(rows) == 500
    golds = [r["answer"] for r in rows]
    boxed = [_boxed(g) for g in golds]
    mv_boxed = math_correct(None, boxed, answer=golds)
    assert mv_boxed == [1.0] * 500
    # the full reference solution (its last \boxed{}) also scores 1.0 under both graders
    solutions = [r["solution"] for r in rows]
    mv_solution = math_correct(None, solutions, answer=golds)
    d1_boxed = math_correct_d1(None, boxed, answer=golds)
    d1_solution = math_correct_d1(None, solutions, answer=golds)
    with capsys.disabled():
        print(f"\nMATH-500 gold: math-verify boxed {sum(mv_boxed):.0f}/500, "
              f"solution {sum(mv_solution):.0f}/500; d1 boxed {sum(d1_boxed):.0f}/500, "
              f"solution {sum(d1_solution):.0f}/500")
    assert sum(mv_solution) == 500 and sum(d1_boxed) == 500 and sum(d1_solution) == 500


@pytest.mark.parametrize("completion,gold,score", [
    ("<reasoning>2 + 2 = 4</reasoning>\n<answer>\n4\n</answer>", "4", 1.0),  # bare <answer>
    (r"<answer>\text{Evelyn}</answer>", r"\text{Evelyn}", 1.0),
    (r"<answer>$(3, \frac{\pi}{2})$</answer>", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
    (r"first \boxed{3}, finally \boxed{2}", "2", 1.0),  # the last box counts
    (r"first \boxed{2}, finally \boxed{3}", "2", 0.0),
    (r"\boxed{1, 2, 3}", "2", 0.0),  # no credit for listing candidates
    ("work... #### 12", "12", 1.0),
    (r"The answer is $\frac{1}{2}$.", "0.5", 1.0),
    (r"so we get $x = \frac{1}{2}$", r"\frac12", 1.0),  # no anchor: math-verify's own extraction
    ("no answer at all", "7", 0.0),
])
def test_prediction_extraction(completion, gold, score):
    assert math_correct(None, [completion], answer=[gold]) == [score]


def test_gold_unparseable_is_none_and_missing_gold_is_none():
    assert math_correct(None, [_boxed("1"), _boxed("1")], answer=[r"\boxed{", None]) == [None, None]
    assert math_correct_d1(None, [_boxed("1")], answer=[""]) == [None]


def test_hung_item_times_out_without_hanging_the_batch():
    with MathVerifyPool(workers=2) as pool:
        pairs = ([(_boxed("1"), _boxed("1"))] * 3 + [(_boxed("1"), _boxed("9^{9^{9^{9}}}"))]
                 + [(_boxed("2"), _boxed("2"))] * 3)
        start = time.monotonic()
        verdicts = pool.verify(pairs, timeout_s=0.5)
        assert time.monotonic() - start < 20
        assert verdicts == ["equal"] * 3 + ["timeout"] + ["equal"] * 3
        # the pool keeps working after killing a worker
        assert pool.verify([(_boxed("3"), _boxed("3.0"))]) == ["equal"]


def test_unresponsive_worker_is_killed_and_replaced():
    # a stopped worker cannot answer its own alarm: the parent's hard deadline must fire
    with MathVerifyPool(workers=1) as pool:
        assert pool.verify([(_boxed("1"), _boxed("1"))]) == ["equal"]
        stuck = pool._workers[0].process.pid
        os.kill(stuck, signal.SIGSTOP)
        start = time.monotonic()
        assert pool.verify([(_boxed("1"), _boxed("1")), (_boxed("2"), _boxed("2"))],
                           timeout_s=0.2) == ["timeout", "equal"]
        assert time.monotonic() - start < 0.2 + HARD_KILL_GRACE_S + 15
        assert pool._workers[0].process.pid != stuck


def test_slow_item_soft_timeout_keeps_the_worker():
    slow = _boxed("+".join(f"x^{{{i}}}" for i in range(300)))  # ~1.5 s of sympy in pure Python
    with MathVerifyPool(workers=1) as pool:
        assert pool.verify([(_boxed("1"), _boxed("1"))]) == ["equal"]  # worker started
        worker = pool._workers[0].process.pid
        start = time.monotonic()
        assert pool.verify([(_boxed("x"), slow)], timeout_s=0.2) == ["timeout"]
        assert time.monotonic() - start < 1.5  # interrupted by the worker's own alarm, not the hard kill
        assert pool.verify([(_boxed("2"), _boxed("2"))]) == ["equal"]
        assert pool._workers[0].process.pid == worker


def test_math_verify_off_the_main_thread():
    results = {}

    def work():
        results["in_process"] = math_equal(_boxed(r"\frac{1}{2}"), _boxed("0.5"))
        results["pool"] = math_correct(None, [_boxed("0.5"), _boxed("2")], answer=[r"\frac12", "3"])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert results == {"in_process": True, "pool": [1.0, 0.0]}


def test_concurrent_callers_share_the_pool():
    from concurrent.futures import ThreadPoolExecutor

    def grade(k: int):
        golds = [str(k * 100 + i) for i in range(20)]
        preds = [_boxed(g) if i % 2 == 0 else _boxed(g + "1") for i, g in enumerate(golds)]
        return math_correct(None, preds, answer=golds)

    with ThreadPoolExecutor(4) as pool:
        for out in pool.map(grade, range(4)):
            assert out == [1.0, 0.0] * 10


def test_score_math_reports_both_graders():
    # math-verify knows 0.5 = 1/2; the d1 string grader also does (strip_string maps "0.5"), but not 2/4
    assert score_math(r"<answer>\boxed{\frac{2}{4}}</answer>", "0.5") == {
        "math_verify": 1.0, "d1": 0.0, "d1_answer": r"\frac{2}{4}"}
    assert score_math(r"\boxed{\dfrac12}", r"\frac{1}{2}")["d1"] == 1.0


@pytest.mark.parametrize("a,b,equal", [
    (r"\frac12", r"\dfrac{1}{2}", True),
    ("0.5", r"\frac{1}{2}", True),
    (r"90^\circ", "90", True),
    (r"\left(3, \frac{\pi}{2}\right)", r"(3,\frac{\pi}{2})", True),
    (r"5\text{ cm}", "5", True),
    (r"10\%", "10", True),
    ("x = 3", "3", True),
    (r"\sqrt3", r"\sqrt{3}", True),
    ("3/4", r"\frac{3}{4}", True),
    (".5", r"\frac{1}{2}", True),  # ".5" -> "0.5" -> \frac{1}{2}
    ("0.50", "0.5", False),  # only the exact string "0.5" is special-cased
    (r"\text{Evelyn}", "Evelyn", False),  # d1's grader does not strip \text{}: one reason it scores lower
    ("2", "3", False),
    # Hendrycks-exact corner cases (they move d1-comparable numbers):
    ("10%", "10", False),  # only the escaped \% is removed, not a bare %
    ("-1/2", r"\frac{-1}{2}", True),  # a/b goes through int(), so negatives count
    ("01/2", r"\frac{1}{2}", False),  # ...but only canonically written ints
    (r"5\text{ cm}\text{ m}", "5", False),  # two "\text{ " units: Hendrycks' assert fails, raw strings compared
    (r"1+\frac", r"1+\frac", True),  # \frac without operands: the same fallback to raw equality
])
def test_d1_is_equiv(a, b, equal):
    assert is_equiv(a, b) is equal


def test_d1_boxed_helpers():
    assert last_boxed_only_string(r"a \boxed{1} b \boxed{\frac{1}{2}} c") == r"\boxed{\frac{1}{2}}"
    assert remove_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert remove_boxed(r"\boxed 5") == "5"
    assert last_boxed_only_string(r"\boxed{unclosed") is None
    assert strip_string(r"\left( 1, 2 \right)") == "(1,2)"
    assert d1_math_equal("7", r"<reasoning>r</reasoning><answer>\boxed{7}</answer>")


def _grade_in_worker(_=None):
    """Module-level (picklable) job for a multiprocessing worker: grade through the default pool."""
    return math_correct(None, [_boxed("0.5"), _boxed("2"), _boxed(r"\dfrac{1}{2}")], answer=[r"\frac12", "3", "0.5"])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_math_rewards_inside_worker_processes(method):
    # the caller is itself a worker (a data loader, a multiprocessing.Pool worker: daemonic, so it may not
    # start multiprocessing children); with "fork" the parent's pool already exists when the workers fork
    import multiprocessing

    assert _grade_in_worker() == [1.0, 0.0, 1.0]
    with multiprocessing.get_context(method).Pool(2) as pool:
        assert pool.map(_grade_in_worker, range(2), chunksize=1) == [[1.0, 0.0, 1.0]] * 2
    assert _grade_in_worker() == [1.0, 0.0, 1.0]  # the parent's pool still works
