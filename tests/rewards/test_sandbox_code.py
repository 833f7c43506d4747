"""Code sandbox (adversarial programs) and code rewards (HumanEval canonical solutions, MBPP-style)."""
from __future__ import annotations

import os
import random
import tempfile
import time

import pytest

from unmask.rewards.code import code_humaneval, code_tests, extract_code, humaneval_program, run_humaneval
from unmask.rewards.sandbox import SandboxLimits, run_python

from .data import HUMANEVAL, read_jsonl

FAST = SandboxLimits(timeout_s=3.0, memory_mb=512)


@pytest.fixture
def no_leftover_dirs(tmp_path_factory, monkeypatch):
    """Point the sandbox's temp root at a test-owned folder and check it is empty afterwards."""
    root = tmp_path_factory.mktemp("sandbox-root")
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield
    assert list(root.iterdir()) == [], "sandbox temp dirs were not removed"


def test_ok_and_failing_programs(no_leftover_dirs):
    assert run_python("print('hi')", limits=FAST).passed
    r = run_python("assert 1 == 2", limits=FAST)
    assert r.status == "failed" and "AssertionError" in r.stderr
    assert run_python("import sys; sys.exit(0)", limits=FAST).status == "failed"  # exiting early is no pass
    assert run_python("raise SystemExit", limits=FAST).status == "failed"
    assert run_python("def f(:", limits=FAST).status == "failed"


def test_infinite_loop_is_killed(no_leftover_dirs):
    start = time.monotonic()
    r = run_python("while True:\n    pass", limits=SandboxLimits(timeout_s=1.0))
    assert r.status == "timeout" and time.monotonic() - start < 5


def test_sleeping_children_are_killed_with_the_group(no_leftover_dirs):
    r = run_python("import time\ntime.sleep(60)", limits=SandboxLimits(timeout_s=0.5))
    assert r.status == "timeout" and r.duration_s < 5


def _failed_within_limits(r, limits=FAST) -> bool:
    """A failed (or timed-out) sample that ended within its wall-clock limit (plus reaping slack)."""
    return not r.passed and r.status in ("failed", "timeout") and r.duration_s < limits.timeout_s + 2


def test_timeout_kills_the_whole_process_group(no_leftover_dirs):
    # Start a grandchild by going around the Python guard (a fresh _posixsubprocess + subprocess copy,
    # the kind of escape sandbox.py documents), then spin: the timeout must kill the grandchild too.
    program = (
        "import importlib.machinery, importlib.util, os, sys\n"
        "if '_posixsubprocess' in sys.builtin_module_names:\n"  # compiled into the interpreter (e.g. Ubuntu's 3.12)
        "    loader, path = importlib.machinery.BuiltinImporter, 'built-in'\n"
        "else:\n"
        "    dynload = os.path.dirname(importlib.util.find_spec('select').origin)\n"
        "    path = os.path.join(dynload, next(f for f in os.listdir(dynload) if f.startswith('_posixsubprocess.')))\n"
        "    loader = importlib.machinery.ExtensionFileLoader('_posixsubprocess', path)\n"
        "spec = importlib.machinery.ModuleSpec('_posixsubprocess', loader, origin=path)\n"
        "sys.modules['_posixsubprocess'] = importlib.util.module_from_spec(spec)\n"
        "loader.exec_module(sys.modules['_posixsubprocess'])\n"
        "spec = importlib.util.spec_from_file_location('fresh_subprocess', "
        "importlib.util.find_spec('subprocess').origin)\n"
        "fresh = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(fresh)\n"
        "print(fresh.Popen(['sleep', '60']).pid, flush=True)\n"
        "while True:\n    pass\n"
    )
    r = run_python(program, limits=SandboxLimits(timeout_s=2.0))
    assert r.status == "timeout" and r.duration_s < 6
    if not r.stdout.strip().isdigit():
        pytest.skip(f"could not start a grandchild on this Python: {r.stderr[-300:]}")
    pid = int(r.stdout)
    time.sleep(0.2)
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except FileNotFoundError:
        return  # killed and reaped
    assert "Z" in state, f"grandchild {pid} survived the timeout: {state}"  # killed, awaiting its reaper


def test_memory_bomb(no_leftover_dirs):
    for bomb in ("x = bytearray(10**10)", "x = [0] * (10**9)", "s = 'a'\nwhile True:\n    s = s + s"):
        r = run_python(bomb, limits=FAST)
        assert _failed_within_limits(r), bomb
    # the memory limit is what stops it: the same 300 MB allocation passes under a larger limit
    alloc = "x = bytearray(300 * 2**20)\nx[-1] = 1"
    assert run_python(alloc, limits=SandboxLimits(timeout_s=3.0, memory_mb=256)).status == "failed"
    assert run_python(alloc, limits=SandboxLimits(timeout_s=3.0, memory_mb=1024)).passed


def test_fork_bomb_and_subprocess(no_leftover_dirs):
    for bomb in ("import os\nwhile True:\n    os.fork()",
                 "import subprocess\nsubprocess.run(['sleep', '100'])",
                 "import os\nos.system('echo pwned')",
                 "import multiprocessing\np = multiprocessing.Process(target=print)\np.start()\np.join()",
                 "import ctypes\nctypes.CDLL(None).fork()"):
        r = run_python(bomb, limits=FAST)
        assert r.status == "failed" and _failed_within_limits(r), bomb
        assert "pwned" not in r.stdout


def test_writes_outside_the_temp_dir_are_blocked(tmp_path, no_leftover_dirs):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    attacks = [
        f"open({str(victim)!r}, 'w').write('pwned')",
        f"import pathlib\npathlib.Path({str(victim)!r}).write_text('pwned')",
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nfd = os.open({str(victim)!r}, os.O_WRONLY | os.O_TRUNC)",
        f"import os\nos.symlink({str(victim)!r}, 'link')\nopen('link', 'w').write('pwned')",
        f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')",
        f"import io\nio.FileIO({str(victim)!r}, 'w').write(b'pwned')",  # the FileIO class, not open()
        f"import _io\n_io.open({str(victim)!r}, 'w').write('pwned')",
        f"import _pyio\n_pyio.open({str(victim)!r}, 'w').write('pwned')",
        f"import sqlite3\nsqlite3.connect({str(tmp_path / 'x.db')!r}).execute('create table t(a)')",  # C-level writer
    ]
    for attack in attacks:
        r = run_python(attack, limits=FAST)
        assert r.status == "failed" and _failed_within_limits(r), attack
    assert victim.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]


def test_writes_inside_the_temp_dir_work_and_vanish(no_leftover_dirs):
    program = "import os\nopen('a.txt', 'w').write('x')\nos.mkdir('d')\nos.remove('a.txt')\nprint(os.getcwd())"
    r = run_python(program, limits=FAST)
    assert r.passed
    assert not os.path.exists(r.stdout.strip())


def test_parent_environment_secrets_are_invisible(monkeypatch, no_leftover_dirs):
    monkeypatch.setenv("UNMASK_TEST_SECRET", "hunter2")
    r = run_python("import os\nprint(dict(os.environ))", limits=FAST)
    assert r.passed and "hunter2" not in r.stdout and "UNMASK_TEST_SECRET" not in r.stdout
    r = run_python(f"print(open('/proc/{os.getpid()}/environ', 'rb').read())", limits=FAST)
    assert r.status == "failed" and "hunter2" not in r.stdout


def test_kill_parent_is_blocked(no_leftover_dirs):
    for attack in ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
                   f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)",
                   f"import os, signal\nos.killpg(os.getpgid({os.getpid()}), signal.SIGKILL)"):
        r = run_python(attack, limits=FAST)
        assert r.status == "failed" and _failed_within_limits(r), attack
    assert os.getpid() > 0  # still here


def test_network_is_blocked(no_leftover_dirs):
    for attack in ("import socket\nsocket.socket()",
                   "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=1)",
                   "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:1', timeout=1)"):
        assert run_python(attack, limits=FAST).status == "failed"


def test_huge_output_is_capped(no_leftover_dirs):
    r = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 1_000_000)", limits=FAST)
    assert _failed_within_limits(r) and len(r.stdout) <= FAST.max_output_bytes and r.output_truncated
    r = run_python("import sys\nwhile True:\n    sys.stderr.write('e' * 1_000_000)", limits=FAST)
    assert _failed_within_limits(r) and len(r.stderr) <= FAST.max_output_bytes and r.output_truncated
    r = run_python("print('y' * 200_000)", limits=FAST)
    assert r.passed and len(r.stdout) == FAST.max_output_bytes and r.output_truncated


def test_child_is_isolated_from_the_package_dir(no_leftover_dirs):
    # -I: the runner's folder (rewards/, which has a code.py) is not on the child's sys.path
    r = run_python("import code, sys\nassert 'rewards' not in code.__file__\nassert 'rewards' not in ''.join(sys.path)",
                   limits=FAST)
    assert r.passed, r.stderr


def test_runner_introspection_cannot_forge_a_pass(no_leftover_dirs):
    forge = ("import sys\nrunner = sys._getframe(1).f_locals\nrunner['report']('program ok')\n"
             "runner['report']('done')\nrunner['exit_now'](0)\n")
    for attack in (forge, "import gc\nobjs = gc.get_objects()",
                   "try:\n    1/0\nexcept Exception as e:\n    f = e.__traceback__"):
        r = run_python(attack + "\nraise AssertionError('tests would fail')", limits=FAST)
        assert r.status == "failed" and "introspection" in r.stderr, attack


def test_result_file_cannot_be_read_to_forge_test_passes(no_leftover_dirs):
    # Without introspection: read the runner's result file through /proc/self/fd to learn the nonce,
    # then append forged "test i 1" lines to that descriptor while the first test runs.
    program = (
        "import os\n"
        "def add(a, b):\n"
        "    for fd in range(3, 32):\n"
        "        for path in (f'/proc/self/fd/{fd}', "
        "os.readlink(f'/proc/self/fd/{fd}') if os.path.exists(f'/proc/self/fd/{fd}') else ''):\n"
        "            try:\n"
        "                data = open(path).read()\n"
        "            except Exception:\n"
        "                continue\n"
        "            if ' program ok' in data:\n"
        "                nonce = data.split()[0]\n"
        "                os.write(fd, ''.join(f'{nonce} test {i} 1\\n' for i in range(3)).encode())\n"
        "                return 0\n"
        "    return 0\n"
    )
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 5) == 5"]
    r = run_python(program, tests, limits=FAST)
    assert (r.status, r.tests_passed) == ("failed", 0), r.stderr
    memory = "data = open('/proc/self/mem', 'rb')"  # scanning own memory for the nonce
    assert run_python(memory, limits=FAST).status == "failed"


def test_stdin_is_closed(no_leftover_dirs):
    r = run_python("import sys\nprint(repr(sys.stdin.read()))", limits=FAST)
    assert r.passed and r.stdout.strip() == "''"


def test_tests_and_pass_fraction(no_leftover_dirs):
    r = run_python("def add(a, b):\n    return a + b", ["assert add(1, 2) == 3", "assert add(1, 1) == 3",
                                                         "import sys; sys.exit(0)"], limits=FAST)
    assert (r.status, r.tests_passed, r.tests_total) == ("failed", 1, 3)
    assert r.pass_fraction == pytest.approx(1 / 3)


def test_extract_code_and_signature_repeat():
    assert extract_code("text\n```python\ndef f():\n    return 1\n```\nmore") == "def f():\n    return 1\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```python\ndef g(): pass\n```\n```python\ndef f(): pass\n```", "f") == "def f(): pass\n"
    assert extract_code("```python\ndef f():\n    return 2") == "def f():\n    return 2"  # unclosed fence
    assert extract_code("    return 1\n") == "    return 1\n"
    prompt = "def f(x):\n    \"\"\"doc\"\"\"\n"
    test = "def check(c):\n    assert c(2) == 4"
    body = humaneval_program(prompt, "    return x * 2\n", test, "f")
    full = humaneval_program(prompt, "```python\ndef f(x):\n    return x + x\n```", test, "f")
    assert run_python(body, limits=FAST).passed and run_python(full, limits=FAST).passed


def test_code_tests_reward():
    completions = ["```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a - b", "oops("]
    tests = [["assert add(1, 2) == 3", "assert add(0, 0) == 0"]] * 3
    assert code_tests(None, completions, test_list=tests) == [1.0, 0.0, 0.0]
    assert code_tests(None, completions, test_list=tests, pass_fraction=True) == [1.0, 0.5, 0.0]
    assert code_tests(None, ["x = 1"], test_list=[None]) == [None]


def _humaneval():
    return read_jsonl(HUMANEVAL)


def test_humaneval_canonical_solutions_pass_sample():
    problems = random.Random(0).sample(_humaneval(), 20)
    out = code_humaneval([p["prompt"] for p in problems], [p["canonical_solution"] for p in problems],
                         test=[p["test"] for p in problems], entry_point=[p["entry_point"] for p in problems])
    assert out == [1.0] * 20
    empty = code_humaneval([p["prompt"] for p in problems], [""] * 20,
                           test=[p["test"] for p in problems], entry_point=[p["entry_point"] for p in problems])
    assert empty == [0.0] * 20
    chat_prompt = [[{"role": "user", "content": "write it"}]]
    whole = "```python\n" + problems[0]["prompt"] + problems[0]["canonical_solution"] + "```"
    assert code_humaneval(chat_prompt, [whole], test=[problems[0]["test"]],
                          entry_point=[problems[0]["entry_point"]]) == [1.0]


@pytest.mark.slow
def test_humaneval_all_canonical_pass_and_empty_fail(capsys):
    problems = _humaneval()
    assert len(problems) == 164
    start = time.perf_counter()
    results = run_humaneval(problems, [p["canonical_solution"] for p in problems])
    wall = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nHumanEval sandbox: 164 canonical solutions in {wall:.2f} s wall "
              f"({os.cpu_count()} workers); slowest sample {max(r.duration_s for r in results):.2f} s")
    assert [p["task_id"] for p, r in zip(problems, results) if not r.passed] == []
    empty = run_humaneval(problems, [""] * len(problems))
    assert [p["task_id"] for p, r in zip(problems, empty) if r.passed] == []
