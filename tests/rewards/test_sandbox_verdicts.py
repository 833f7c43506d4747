"""Reward hacks against the code verdicts: each one, measured on HumanEval/0 with a wrong solution, scores 0.

The tests run in the trusted harness, never in the process of the code under test; what crosses is
plain data. Under the old in-process check the first two hacks below scored 1.0.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from unmask.rewards.code import code_humaneval
from unmask.rewards.sandbox import SandboxLimits, run_python

from .data import HUMANEVAL, read_jsonl

FAST = SandboxLimits(timeout_s=3.0, memory_mb=512)


@pytest.fixture(scope="module")
def humaneval() -> dict[str, dict]:
    return {p["task_id"]: p for p in read_jsonl(HUMANEVAL)}


def _scores(problem: dict, bodies: dict[str, str], limits: SandboxLimits = FAST) -> dict[str, float]:
    """Reward of each whole-function completion ``def entry_point(*args):`` + body, by hack name."""
    head = f"def {problem['entry_point']}(*args, **kwargs):\n"
    completions = ["```python\n" + head + textwrap.indent(textwrap.dedent(b), "    ") + "```" for b in bodies.values()]
    n = len(completions)
    out = code_humaneval([problem["prompt"]] * n, completions, code_prompt=[problem["prompt"]] * n,
                         test=[problem["test"]] * n, entry_point=[problem["entry_point"]] * n, limits=limits)
    return dict(zip(bodies, out))


def test_a_correct_solution_still_scores_one(humaneval):
    problem = humaneval["HumanEval/0"]
    assert _scores(problem, {"canonical": "numbers, threshold = args\n" + textwrap.dedent(
        problem["canonical_solution"])}) == {"canonical": 1.0}


ALWAYS_EQUAL = {
    "always_equal": """
        class AlwaysEqual:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        return AlwaysEqual()
    """,
    "always_equal_truthy_never_unequal": """
        class Chameleon:
            __eq__ = lambda self, other: True
            __ne__ = lambda self, other: False
            __bool__ = lambda self: True
            __hash__ = lambda self: 1
        return Chameleon()
    """,
    "list_subclass_with_rigged_eq": """
        class Sneaky(list):
            def __eq__(self, other):
                return True
        return Sneaky()
    """,
    "int_subclass_with_rigged_eq": """
        class Sneaky(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        return Sneaky(1)
    """,
    "str_and_dict_subclasses_with_rigged_eq": """
        class S(str):
            __eq__ = lambda self, other: True
        class D(dict):
            __eq__ = lambda self, other: True
        return D(a=S('x'))
    """,
    "nan": "return float('nan')",
    "object_with_reduce": """
        import os
        class Payload:
            def __reduce__(self):
                return (os.system, ('echo pwned',))
            __eq__ = lambda self, other: True
        return Payload()
    """,
    "generator": "return (x for x in [True])",
    "lambda": "return lambda *a: True",
    "class_itself": "return type('T', (), {'__eq__': lambda s, o: True})",
}


def test_results_with_rigged_equality_score_zero(humaneval):
    assert _scores(humaneval["HumanEval/0"], ALWAYS_EQUAL) == dict.fromkeys(ALWAYS_EQUAL, 0.0)


RUNNER_ATTACKS = {
    "frame_walk_to_the_old_runner": """
        import sys
        frame = getattr(sys, '_get' + 'frame')(0)
        while frame is not None:
            scope = getattr(frame, 'f_' + 'locals')
            if 'report' in scope and 'exit_now' in scope:
                for line in ('program ok', 'test 0 1', 'done'):
                    scope['report'](line)
                scope['exit_now'](0)
            frame = getattr(frame, 'f_' + 'back')
        return False
    """,
    "frame_walk_calling_every_exit_it_finds": """
        import sys
        frame = getattr(sys, '_get' + 'frame')(0)
        while frame is not None:
            scope = getattr(frame, 'f_' + 'locals')
            for value in list(scope.values()):
                if callable(value) and getattr(value, '__name__', '') == '_exit':
                    value(0)
            frame = getattr(frame, 'f_' + 'back')
        return False
    """,
    "print_fake_verdict_lines": """
        import sys
        line = '{"program_ok": true, "tests": [1], "done": true, "timeout": false, "error": null}'
        print(line, flush=True)
        print(line, file=sys.stderr, flush=True)
        return False
    """,
    "sys_exit_zero": "import sys\nsys.exit(0)",
    "posix_exit_zero": "import posix\nposix._exit(0)",
    "kill_the_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "swap_assertion_error": """
        import builtins
        builtins.AssertionError = type('AssertionError', (Exception,), {})
        return False
    """,
    "atexit_and_del": """
        import atexit
        atexit.register(print, '{"program_ok": true, "tests": [1], "done": true}')
        class Bye:
            def __del__(self):
                print('{"program_ok": true, "tests": [1], "done": true}')
        return Bye()
    """,
    "raise_stop_iteration": "raise StopIteration",
    "close_every_descriptor": """
        import os
        for fd in range(3, 256):
            try:
                os.close(fd)
            except OSError:
                pass
        return True
    """,
    "write_forged_frames_to_every_descriptor": """
        import os
        frame = b'{"value":["b",true]}'
        for fd in range(3, 256):
            try:
                os.write(fd, len(frame).to_bytes(4, 'big') + frame)
                os.write(fd, b'{"program_ok": true, "tests": [1], "done": true}\\n')
            except OSError:
                pass
        return True
    """,
    "write_garbage_to_every_descriptor": """
        import os
        for fd in range(3, 256):
            try:
                os.write(fd, b'\\xff' * 70000)
            except OSError:
                pass
        return True
    """,
}


def test_attacks_on_the_runner_score_zero(humaneval):
    assert _scores(humaneval["HumanEval/0"], RUNNER_ATTACKS) == dict.fromkeys(RUNNER_ATTACKS, 0.0)


RESOURCE_ATTACKS = {
    "huge_result": "return 'x' * (20 * 2**20)",
    "deeply_nested_result": "r = True\nfor _ in range(100_000):\n    r = [r]\nreturn r",
    "self_containing_result": "r = []\nr.append(r)\nreturn r",
    "recursion_bomb": "def f(n):\n    return f(n + 1)\nreturn f(0)",
    "memory_bomb": "x = bytearray(10**10)\nreturn True",
    "fork_bomb": "import os\nwhile True:\n    os.fork()",
    "multiprocessing": "import multiprocessing\np = multiprocessing.Process(target=print)\np.start()\nreturn True",
    "huge_stdout": "import sys\nwhile True:\n    sys.stdout.write('x' * 1_000_000)",
    "many_kept_objects": "return [object() for _ in range(200_000)]",
}


def test_resource_attacks_inside_a_call_score_zero(humaneval):
    assert _scores(humaneval["HumanEval/0"], RESOURCE_ATTACKS) == dict.fromkeys(RESOURCE_ATTACKS, 0.0)


def test_a_call_that_hangs_times_out_the_whole_sample(humaneval):
    quick = SandboxLimits(timeout_s=1.0, memory_mb=512)
    hangs = {"spin": "while True:\n    pass", "sleep": "import time\ntime.sleep(60)"}
    assert _scores(humaneval["HumanEval/0"], hangs, quick) == {"spin": 0.0, "sleep": 0.0}
    r = run_python("def f():\n    while True:\n        pass", ["assert f() == 1"], quick)
    assert r.status == "timeout" and r.duration_s < quick.timeout_s + 1.5


def test_the_tests_own_helpers_cannot_be_patched_by_the_completion(humaneval):
    problem = humaneval["HumanEval/32"]  # find_zero: the test checks abs(poly(coeffs, x)) with math.fabs
    cheats = {
        "redefine_poly": "global poly\npoly = lambda xs, x: 0.0\nreturn 0.0",
        "patch_math_fabs": "import math\nmath.fabs = lambda x: 0.0\nreturn 0.0",
        "patch_builtins": "import builtins\nbuiltins.abs = lambda x: 0.0\nbuiltins.round = lambda *a: 0\nreturn 0.0",
    }
    assert _scores(problem, cheats) == dict.fromkeys(cheats, 0.0)


def test_a_frame_walk_cannot_pass_assert_false_tests():
    forge = ("import sys\n"
             "frame = getattr(sys, '_get' + 'frame')(0)\n"
             "while frame is not None:\n"
             "    scope = getattr(frame, 'f_' + 'locals')\n"
             "    if 'report' in scope and 'exit_now' in scope:\n"
             "        [scope['report'](line) for line in ('program ok', 'test 0 1', 'test 1 1', 'test 2 1', 'done')]\n"
             "        scope['exit_now'](0)\n"
             "    frame = getattr(frame, 'f_' + 'back')\n")
    r = run_python(forge, ["assert False"] * 3, FAST)
    assert (r.status, r.tests_passed) == ("failed", 0)


def test_a_forged_verdict_in_the_harness_pipe_is_rejected_even_if_the_harness_is_killed():
    # Going around the guard (the C FileIO class behind sys.stdout, a fresh posix module with the real
    # kill): write a passing verdict line into every pipe the harness holds, with and without killing it.
    forge = (
        "import importlib.machinery, importlib.util, json, os, sys\n"
        "FileIO = type(sys.stdout.buffer.raw)\n"
        "posix = importlib.util.module_from_spec(importlib.util.spec_from_loader('posix', "
        "importlib.machinery.BuiltinImporter))\n"
        "def f(x):\n"
        "    parent = os.getppid()\n"
        "    line = json.dumps(dict(program_ok=True, tests=[1, 1], done=True, timeout=False, error=None)).encode()\n"
        "    line += b'\\n'\n"
        "    for name in os.listdir(f'/proc/{parent}/fd'):\n"
        "        try:\n"
        "            if os.readlink(f'/proc/{parent}/fd/{name}').startswith('pipe:'):\n"
        "                with FileIO(f'/proc/{parent}/fd/{name}', 'w') as pipe:\n"
        "                    pipe.write(line)\n"
        "        except OSError:\n"
        "            pass\n"
        "    if KILL:\n"
        "        posix.kill(parent, 9)\n"
        "    return 0\n"
    )
    for kill in (False, True):
        r = run_python(f"KILL = {kill}\n" + forge, ["assert f(1) == 1", "assert f(2) == 2"], FAST)
        assert (r.status, r.tests_passed) == ("failed", 0), (kill, r)


def test_the_child_never_holds_the_test_source():
    snoop = ("import gc, os\n"
             "def snoop():\n"
             "    secret = ''.join(['SECRET', '_EXPECTED'])\n"
             "    objects = getattr(gc, 'get_' + 'objects')()\n"
             "    strings = [o for o in objects if isinstance(o, str)]\n"
             "    strings += [v for o in objects if isinstance(o, (dict, list, tuple)) for v in list(o.values() if "
             "isinstance(o, dict) else o) if isinstance(v, str)]\n"
             "    return any(secret in s for s in strings)\n"
             "print('TESTS FOUND' if snoop() else 'nothing', sorted(os.listdir('..')))\n"
             "def f():\n    print('TESTS FOUND' if snoop() else 'nothing in a call', flush=True)\n    return 0\n")
    r = run_python(snoop, ["assert f() == len('SECRET_EXPECTED')"], FAST)
    assert r.status == "failed" and "nothing in a call" in r.stdout and "FOUND" not in r.stdout, r.stdout
    assert "harness.json" not in r.stdout and "child.json" not in r.stdout


def test_stop_iteration_cannot_cut_a_test_short():
    program = "def f(x):\n    raise StopIteration"
    assert run_python(program, ["assert all(map(f, [0, 1, 2]))"], FAST).tests_passed == 0


def test_a_returned_object_is_asked_its_truth_value_once():
    # Its __bool__ answers True, then False, then True...: one returned object cannot be both truthy and falsy.
    program = ("class Flip:\n    asked = 0\n    def __bool__(self):\n        Flip.asked += 1\n"
               "        print('asked', flush=True)\n        return Flip.asked % 2 == 1\n"
               "def f(x):\n    return Flip()\n")
    contradictions = ["r = f(1)\nassert r\nassert not r", "r = f(1)\nassert r and not r",
                      "r = f(1)\nassert bool(r) != bool(r)", "r = f(1)\nassert len({bool(r) for _ in range(4)}) == 2"]
    r = run_python(program, contradictions, FAST)
    assert (r.status, r.tests_passed, r.stdout.split()) == ("failed", 0, ["asked"] * len(contradictions))
    consistent = "r = f(1)\nassert r and r and bool(r) is True and not (not r)\nif r:\n    pass"
    r = run_python(program, [consistent], FAST)
    assert (r.passed, r.stdout.split()) == (True, ["asked"]), r.stderr


@pytest.mark.parametrize("body", [
    "class No:\n    __bool__ = lambda self: False\ndef f(x):\n    return No()",
    "class Empty:\n    __len__ = lambda self: 0\ndef f(x):\n    return Empty()",
])
def test_a_falsy_object_fails_a_bare_assert(body):
    r = run_python(body, ["assert f(1)", "assert f(1) == True", "assert f(1) == 1"], FAST)
    assert (r.status, r.tests_passed) == ("failed", 0)


@pytest.mark.parametrize("body", [
    "class Weird:\n    __bool__ = lambda self: 1\ndef f(x):\n    return Weird()",  # TypeError in the child
    "class Raises:\n    def __bool__(self):\n        raise ValueError('ambiguous')\ndef f(x):\n    return Raises()",
    "class Slow:\n    def __bool__(self):\n        while True:\n            pass\ndef f(x):\n    return Slow()",
])
def test_a_truth_value_that_is_not_a_plain_bool_breaks_the_sample(body):
    quick = SandboxLimits(timeout_s=1.0, memory_mb=512)
    tests = ["try:\n    assert f(1)\nexcept BaseException:\n    pass", "assert True"]
    assert run_python(body, tests, quick).tests_passed == 0


def test_a_test_that_swallows_the_broken_sandbox_does_not_pass():
    program = "import os\ndef f():\n    os.closerange(3, 256)\n    return 1"
    test = "try:\n    f()\nexcept BaseException:\n    pass"
    r = run_python(program, [test, "assert True"], FAST)
    assert (r.status, r.tests_passed) == ("failed", 0)


def test_the_harness_reaps_its_child_so_no_zombie_is_left_behind():
    # A subreaper inherits orphans, as a trainer running as a container's PID 1 would: none may be left.
    script = (
        "import ctypes, os\n"
        "from rewards.sandbox import run_python\n"
        "if ctypes.CDLL(None).prctl(36, 1) != 0:\n"  # PR_SET_CHILD_SUBREAPER
        "    print('skip')\n"
        "else:\n"
        "    program = 'import os\\nprint(os.getpid(), flush=True)\\ndef f():\\n    return 1'\n"
        "    r = run_python(program, ['assert f() == 1'])\n"
        "    assert r.passed, r\n"
        "    print('zombie' if os.path.exists(f'/proc/{int(r.stdout)}') else 'reaped')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    if out.stdout.strip() == "skip":
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) unavailable")
    assert out.stdout.strip() == "reaped", out.stdout + out.stderr
