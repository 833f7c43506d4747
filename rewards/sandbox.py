"""Run untrusted Python in a fresh, limited child interpreter (the code-reward sandbox).

Each run gets its own ``python -I -B`` process (never ``exec`` in the caller's process), in a new
session, with:

* a fresh temporary working directory (also ``HOME``/``TMPDIR``), removed afterwards;
* a scrubbed environment (nothing inherited from the parent, so no secrets) and stdin closed;
* a wall-clock limit, after which the whole process group is killed (also after a normal exit, to
  reap any stray descendants);
* RLIMITs on address space, CPU seconds and file size (which also caps stdout/stderr, written to
  files of which only the first ``max_output_bytes`` are read back), and no core dumps;
* the reliability guard of :mod:`rewards.sandbox_child`: no fork/exec/subprocess/kill, no sockets,
  no writes/removals outside the working directory (``io.FileIO``, sqlite/dbm included), no ctypes, and no
  reading of the runner's own files (e.g. the result file via ``/proc/self/fd``) or of process memory,
  so the nonce that marks verdicts stays secret from plain Python code.

What it does NOT give (as nanochat says of its own sandbox): a real security boundary. There is no
seccomp, namespace or container isolation; files readable by this user stay readable, and a
determined program can undo Python-level guards. In particular the verdict is decided inside the
child: programs naming frame/``gc`` introspection attributes are failed outright, but one using
``getattr`` with computed names can still reach the runner's objects and forge a "passed" verdict
(as with openai/human-eval's in-process check). RLIMIT_NPROC is ignored for root. Run
untrusted code at scale inside a container, and watch for reward hacking.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Sequence

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")

Status = Literal["passed", "failed", "timeout", "error"]


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one sandboxed run."""

    timeout_s: float = 5.0  #: wall-clock seconds before the process group is killed
    memory_mb: int = 1024  #: RLIMIT_AS (address space), in MiB
    cpu_s: int | None = None  #: RLIMIT_CPU seconds; default: the wall-clock limit rounded up, plus 1
    max_file_mb: int = 16  #: RLIMIT_FSIZE: largest file (stdout/stderr included) the child may write
    max_output_bytes: int = 64 * 1024  #: bytes of stdout and of stderr read back
    extra_processes: int = 8  #: RLIMIT_NPROC headroom (threads count) above the user's current count; non-root only


@dataclass
class SandboxResult:
    """Outcome of one sandboxed run."""

    status: Status  #: "passed" (ran to the end; every test passed), "failed", "timeout", "error" (sandbox)
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    tests_passed: int = 0
    tests_total: int = 0
    program_ok: bool = False  #: the program itself (before any tests) ran without error
    output_truncated: bool = False

    @property
    def passed(self) -> bool:
        """Whether the program ran to completion and every test passed."""
        return self.status == "passed"

    @property
    def pass_fraction(self) -> float:
        """Fraction of tests passed (for a run without tests: 1.0 if passed else 0.0)."""
        if self.tests_total == 0:
            return float(self.passed)
        return self.tests_passed / self.tests_total if self.program_ok else 0.0


def _scrubbed_env(workdir: str) -> dict[str, str]:
    """The child's whole environment: nothing is inherited from the parent."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _read_capped(path: str, limit: int) -> tuple[str, bool]:
    """First ``limit`` bytes of ``path`` as text, and whether there was more."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return "", False
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def _kill_group(pgid: int) -> None:
    """SIGKILL every process in the group (ignored when the group is already gone)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rmtree(path: str) -> None:
    """Remove ``path`` even if the child made parts of it read-only."""

    def make_writable_and_retry(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
            func(target)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=make_writable_and_retry)


def run_python(program: str, tests: Sequence[str] | None = None, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``program`` (then each snippet of ``tests``, in the same namespace) in a sandboxed child.

    Without ``tests`` the run passes when the program runs to its end without raising (``SystemExit``
    counts as failure). With ``tests`` each snippet is scored separately (see ``tests_passed``).
    Never raises for anything the program does.
    """
    limits = limits or SandboxLimits()
    tests = [str(t) for t in (tests or [])]
    root = tempfile.mkdtemp(prefix="unmask-sandbox-")
    workdir = os.path.join(root, "work")
    os.mkdir(workdir)
    nonce = secrets.token_hex(16)
    paths = {name: os.path.join(root, name) for name in ("job.json", "result", "stdout", "stderr")}
    start = time.monotonic()
    proc = None
    try:
        job = {
            "program": str(program),
            "tests": tests,
            "nonce": nonce,
            "workdir": workdir,
            "result_path": paths["result"],
            "limits": {
                "memory_bytes": limits.memory_mb * 1024 * 1024,
                "cpu_s": limits.cpu_s or int(limits.timeout_s) + 2,
                "file_bytes": limits.max_file_mb * 1024 * 1024,
                "extra_processes": limits.extra_processes,
            },
        }
        with open(paths["job.json"], "w", encoding="utf-8") as f:
            json.dump(job, f)
        with open(paths["stdout"], "wb") as out, open(paths["stderr"], "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-X", "utf8", _CHILD, paths["job.json"]],
                cwd=workdir,
                env=_scrubbed_env(workdir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        timed_out = False
        try:
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)
        proc.wait()
        duration = time.monotonic() - start
        stdout, cut_out = _read_capped(paths["stdout"], limits.max_output_bytes)
        stderr, cut_err = _read_capped(paths["stderr"], limits.max_output_bytes)
        marks, _ = _read_capped(paths["result"], 1024 * 1024)
        lines = {line[len(nonce) + 1 :] for line in marks.splitlines() if line.startswith(nonce + " ")}
        program_ok = "program ok" in lines
        tests_passed = sum(f"test {i} 1" in lines for i in range(len(tests)))
        finished = "done" in lines and proc.returncode == 0
        if timed_out and not finished:
            status: Status = "timeout"
        elif finished and tests_passed == len(tests):
            status = "passed"
        else:
            status = "failed"
        return SandboxResult(
            status=status,
            returncode=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            duration_s=duration,
            tests_passed=tests_passed if program_ok else 0,
            tests_total=len(tests),
            program_ok=program_ok,
            output_truncated=cut_out or cut_err,
        )
    except Exception as exc:  # the sandbox itself failed (e.g. no disk space): a failed sample, loudly labelled
        return SandboxResult(status="error", stderr=f"sandbox error: {exc!r}", duration_s=time.monotonic() - start,
                             tests_total=len(tests))
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
        _rmtree(root)


def run_many(
    programs: Sequence[str],
    tests: Sequence[Sequence[str] | None] | None = None,
    limits: SandboxLimits | None = None,
    max_workers: int | None = None,
) -> list[SandboxResult]:
    """Run several programs concurrently (a thread pool over sandboxed subprocesses), results in order."""
    tests = list(tests) if tests is not None else [None] * len(programs)
    workers = max(1, min(len(programs), max_workers or os.cpu_count() or 1))
    if not programs:
        return []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda pt: run_python(pt[0], pt[1], limits), zip(programs, tests)))
