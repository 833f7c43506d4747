"""Tests in the harness see what they would see in-process: Python's comparisons on plain values, objects
that stay in the child as references, exceptions by type; and trusted names (builtins, stdlib modules,
the prompt's helpers, test imports) that the code under test cannot replace."""
from __future__ import annotations

import pytest

from unmask.rewards.code import code_humaneval, code_tests
from unmask.rewards.sandbox import SandboxLimits, run_python

FAST = SandboxLimits(timeout_s=5.0, memory_mb=512)


def _failing(program: str, tests: list[str], setup: str = "") -> list[str]:
    """The tests that did not pass (all run in one sandbox)."""
    r = run_python(program, tests, FAST, setup=setup)
    assert r.program_ok, r.stderr
    failed = [t for t in tests if f'File "<test {tests.index(t)}>"' in r.stderr]
    assert len(failed) == r.tests_total - r.tests_passed, r.stderr
    return failed


def test_results_compare_as_python_compares_them():
    program = """
import collections, math
def ident(x):
    return x
def values():
    return {"tuple": (1, 2), "list": [1, 2], "nan": float("nan"), "negzero": -0.0, "big": 10**5000,
            "set": {1, 2}, "frozen": frozenset({1, 2}), "keys": {(1, 2): [3]}, "bytes": b"\\x00\\xff",
            "complex": 1 + 2j, "inf": float("inf"), "str": "\\u00e9\\udcff", "none": None, "true": True,
            "one_float": 1.0, "point": collections.namedtuple("P", "x y")(1, 2),
            "counts": collections.defaultdict(list, a=[1])}
"""
    tests = [
        "v = values()\nassert v['tuple'] == (1, 2) and v['tuple'] != [1, 2] and type(v['tuple']) is tuple",
        "assert values()['list'] == [1, 2] and values()['list'] != (1, 2)",
        "import math\nn = values()['nan']\nassert math.isnan(n) and n != n and not (n == n) and [n] != [float('nan')]",
        "import math\nz = values()['negzero']\nassert z == 0.0 and math.copysign(1, z) == -1",
        "assert values()['big'] == 10**5000 and values()['big'] - 1 == 10**5000 - 1",
        "v = values()\nassert v['set'] == {1, 2} == v['frozen'] and type(v['frozen']) is frozenset",
        "assert values()['keys'] == {(1, 2): [3]}",
        "assert values()['bytes'] == b'\\x00\\xff' and values()['complex'] == 1 + 2j",
        "assert values()['inf'] == float('inf') and values()['str'] == '\\u00e9\\udcff' and values()['none'] is None",
        "assert values()['true'] is True and values()['true'] == 1 and values()['one_float'] == 1",
        "assert values()['point'] == (1, 2) and values()['counts'] == {'a': [1]}",
        "for x in [(1, [2, {3: (4,)}]), {frozenset({1}): b''}, -2**70, 0.1, '', ()]:\n    assert ident(x) == x",
        "assert ident(x=5) == 5",
    ]
    assert _failing(program, tests) == []


def test_wrong_results_still_fail():
    program = "def f():\n    return [1, 2]\ndef g():\n    return float('nan')\ndef h():\n    return 1"
    tests = ["assert f() == (1, 2)", "assert g() == g()", "assert h() is True", "assert type(h()) is bool"]
    assert _failing(program, tests) == tests


def test_objects_that_are_not_plain_stay_in_the_child_as_references():
    program = """
class Pair:
    def __init__(self, a, b):
        self.a, self.b = a, b
def max_chain_length(pairs, n):
    pairs = sorted(pairs, key=lambda p: p.b)
    best, end = 0, float("-inf")
    for p in pairs:
        if p.a > end:
            best, end = best + 1, p.b
    return best
def squares(n):
    return (i * i for i in range(n))
"""
    tests = [
        "assert max_chain_length([Pair(5, 24), Pair(15, 25), Pair(27, 40), Pair(50, 60)], 4) == 3",  # MBPP 601
        "assert Pair(1, 2).b == 2",
        "assert list(squares(4)) == [0, 1, 4, 9] and sorted(squares(3)) == [0, 1, 4]",
        "p = Pair(1, 2)\nassert p == p and p != Pair(1, 2)",
    ]
    assert _failing(program, tests) == []
    assert _failing(program, ["assert squares(2) == [0, 1]", "assert not Pair(1, 2)"]) == [
        "assert squares(2) == [0, 1]", "assert not Pair(1, 2)"]


def test_a_reference_has_the_truth_value_of_its_object():
    program = ("import re\ndef check_str(s):\n    return re.search('^[aeiouAEIOU][A-Za-z0-9_]*', s)\n"  # MBPP 737
               "def wrong(s):\n    return re.search('^[0-9]', s)\ndef empty():\n    return iter([])\n")
    tests = ['assert check_str("annie")', 'assert not check_str("dawood")', 'assert check_str("Else")',
             'assert check_str("annie") and check_str("annie") != check_str("annie")', "assert empty()"]
    assert _failing(program, tests) == []
    wrong = ['assert wrong("annie")', 'assert not wrong("7up")', 'assert check_str("annie") == True']
    assert _failing(program, wrong) == wrong


def test_exceptions_keep_their_builtin_type_and_others_become_candidate_errors():
    program = "def f(kind):\n    if kind == 'value':\n        raise ValueError('bad')\n    raise SystemExit(0)"
    tests = ["try:\n    f('value')\n    raise AssertionError\nexcept ValueError as e:\n    assert str(e) == 'bad'",
             "try:\n    f('exit')\nexcept Exception as e:\n    assert type(e).__name__ == 'CandidateError'"]
    assert _failing(program, tests) == []


def test_arguments_cross_by_value():
    program = "def push(xs):\n    xs.append(1)\n    return len(xs)"
    assert _failing(program, ["xs = []\nassert push(xs) == 1 and xs == []"]) == []


def test_builtins_and_stdlib_modules_in_tests_are_the_harness_own():
    program = """
import math
math.isclose = lambda *a, **k: True
def abs(x):
    return 0
def area():
    return 2.0
"""
    tests = ["assert math.isclose(area(), 3.0)", "assert abs(area() - 3.0) < 1e-9", "assert math.pi > 3"]
    assert _failing(program, tests) == tests[:2]


SUM_OF_COMMON_DIVISORS = ["assert sum(10,15) == 6", "assert sum(100,150) == 93", "assert sum(4,6) == 3"]  # MBPP 126


def test_a_builtin_named_function_under_test_is_the_program_s():
    right = ("```python\ndef sum(a,b):\n    total = 0\n    for i in range(1, min(a, b)):\n"
             "        if a % i == 0 and b % i == 0:\n            total += i\n    return total\n```")
    wrong = "```python\ndef sum(a,b):\n    return a + b\n```"
    rigged = ("```python\ndef sum(a,b):\n    class Yes:\n        __eq__ = lambda self, other: True\n"
              "    return Yes()\n```")
    scores = code_tests(None, [right, wrong, rigged], test_list=[SUM_OF_COMMON_DIVISORS] * 3, limits=FAST)
    assert scores == [1.0, 0.0, 0.0]


def test_a_builtin_named_function_stays_trusted_when_it_is_not_unambiguously_under_test():
    area = "import math\ndef area(r):\n    return {}\ndef abs(x):\n    return 0\n"
    tests = ["assert abs(area(2) - 12.56) < 0.01", "assert abs(-2) == 2"]  # abs: the harness's, not the program's
    assert _failing(area.format("math.pi * r * r"), tests) == []
    assert _failing(area.format("0"), tests) == tests[:1]
    # abs alone: still the harness's, since it is used with another name of the program's
    assert _failing(area.format("0"), ["assert area(2) > 12", "assert abs(-2) == 0"]) == [
        "assert area(2) > 12", "assert abs(-2) == 0"]
    two = "def sum(a, b):\n    return 6\ndef len(x):\n    return 0\n"
    assert _failing(two, SUM_OF_COMMON_DIVISORS[:1]) == []  # sum alone is under test
    tests = [SUM_OF_COMMON_DIVISORS[0], "assert len('abc') == 3"]  # two builtin names together stay trusted
    assert _failing(two, tests) == tests[:1]
    not_a_def = "sum = lambda a, b: 6\n"  # not defined by a top-level def
    assert _failing(not_a_def, SUM_OF_COMMON_DIVISORS[:1]) == SUM_OF_COMMON_DIVISORS[:1]
    setup_uses_it = run_python("def sum(a, b):\n    return 0\n", ["assert sum(1, 2) == expected(1, 2)"], FAST,
                               setup="def expected(a, b):\n    return sum([a, b])")
    assert (setup_uses_it.status, setup_uses_it.tests_passed) == ("failed", 0)


def test_humaneval_prompt_helpers_come_from_the_trusted_prompt():
    prompt = "def helper(x):\n    return x * 2\n\n\ndef f(x):\n    \"\"\"Return helper(x) + 1.\"\"\"\n"
    test = "def check(candidate):\n    assert candidate(3) == helper(3) + 1"
    right, cheat = "    return helper(x) + 1\n", "    return 0\n\ndef helper(x):\n    return -1\n"
    scores = code_humaneval([prompt] * 2, [right, cheat], code_prompt=[prompt] * 2, test=[test] * 2,
                            entry_point=["f"] * 2, limits=FAST)
    assert scores == [1.0, 0.0]


def test_mbpp_style_rows_with_imports_and_setup_code():
    setup = ("class Node:\n    def __init__(self, data):\n        self.data, self.left, self.right = data, None, None\n"
             "root = Node(1)\nroot.left = Node(2)\nroot.left.left = Node(3)")
    solution = ("```python\ndef max_height(node):\n    if node is None:\n        return 0\n"
                "    return 1 + max(max_height(node.left), max_height(node.right))\n```")
    wrong = "```python\ndef max_height(node):\n    return 2\n```"
    rows = {"test_list": [["assert max_height(root) == 3", "assert max_height(None) == 0"]] * 2,
            "test_setup_code": [setup] * 2, "test_imports": [[]] * 2}
    assert code_tests(None, [solution, wrong], limits=FAST, **rows) == [1.0, 0.0]
    circle = "```python\nimport math\ndef area(r):\n    return math.pi * r * r\n```"
    tests = [["assert math.isclose(area(2), 12.566370614359172, rel_tol=1e-9)", "assert area(0) == 0"]]
    assert code_tests(None, [circle], test_list=tests, test_imports=[["import math"]], limits=FAST) == [1.0]
    assert code_tests(None, [circle], test_list=tests, limits=FAST) == [1.0]  # math imported by the code only


def test_mbpp_reference_solutions_of_common_shapes_pass():
    rows = [  # (reference code, asserts) in the shapes of MBPP's test split
        ("def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
         ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))"]),
        ("import heapq as hq\ndef heap_queue_largest(nums, n):\n    return hq.nlargest(n, nums)",
         ["assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 3) == [85, 75, 65]"]),
        ("import re\ndef find_char_long(text):\n    return re.findall(r'\\b\\w{4,}\\b', text)",
         ["assert find_char_long('Please move back to stream') == ['Please', 'move', 'back', 'stream']"]),
        ("def is_not_prime(n):\n    return any(n % i == 0 for i in range(2, int(n ** 0.5) + 1))",
         ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"]),
        ("from collections import Counter\ndef count_common(words):\n    return Counter(words).most_common(2)",
         ["assert count_common(['a', 'b', 'a', 'c', 'b', 'a']) == [('a', 3), ('b', 2)]"]),
        (("from collections import defaultdict\ndef grouping(pairs):\n    d = defaultdict(list)\n"
          "    for k, v in pairs:\n        d[k].append(v)\n    return d"),
         ["assert grouping([('y', 1), ('b', 2), ('y', 3)]) == {'y': [1, 3], 'b': [2]}"]),
        ("def text_match(text):\n    return 'Found a match!' if 'ab' in text else 'Not matched!'",
         ["assert text_match('ac') == ('Not matched!')"]),
        ("def sum_div(n):\n    return sum(i for i in range(1, n) if n % i == 0)", ["assert sum_div(8) == 7"]),
    ]
    completions = [f"```python\n{code}\n```" for code, _ in rows]
    assert code_tests(None, completions, test_list=[t for _, t in rows], limits=FAST) == [1.0] * len(rows)


@pytest.mark.parametrize("program, status", [("print('hi')", "passed"), ("raise ValueError", "failed"),
                                             ("import sys\nsys.exit(0)", "failed")])
def test_a_program_without_tests_passes_when_it_runs_to_its_end(program, status):
    assert run_python(program, limits=FAST).status == status
