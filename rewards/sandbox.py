"""Run untrusted Python in fresh, limited processes, with verdicts decided outside the untrusted one.

Each run starts a trusted *harness* (``python -I -S -B``, :mod:`rewards.sandbox_harness`; never ``exec``
in the caller's process) in a new session; the harness forks the untrusted *child*
(:mod:`rewards.sandbox_child`), which runs the program and then answers calls. The tests run in the
harness, never in the child: the program's top-level names are bound there to references whose calls
cross a pipe as plain values (numbers, strings, bytes, lists, tuples, sets, dicts, None:
:mod:`rewards.sandbox_wire`, tagged JSON, no pickle), so every comparison is Python's own, between
values the harness built. An object with a rigged ``__eq__`` cannot cross, a frame walk in the child
finds no verdict to forge, and the child holds no handle on the verdict pipe: the runner accepts one
well-formed verdict line from a harness that exited 0, and nothing else.

Both processes get:

* a fresh temporary working directory (also ``HOME``/``TMPDIR``), removed afterwards;
* a scrubbed environment (nothing inherited from the parent, so no secrets) and stdin closed;
* a wall-clock limit for the whole sample (the harness fails a call that outlives it), after which the
  whole process group is killed (also after a normal exit, to reap any stray descendants);
* RLIMITs on address space, CPU seconds and file size (which also caps stdout/stderr, written to
  files of which only the first ``max_output_bytes`` are read back), and no core dumps;
* the reliability guard of :mod:`rewards.sandbox_child`: no fork/exec/subprocess/kill, no sockets,
  no writes/removals outside the working directory (``io.FileIO``, sqlite/dbm included), no ctypes, and no
  reading of the runner's own files, pipes (``/proc/self/fd``) or process memory.

What it does NOT give (as nanochat says of its own sandbox): a real security boundary. There is no
seccomp, namespace or container isolation; files readable by this user stay readable, and a
determined program can undo Python-level guards. Undoing them lets it kill its harness or spoil the
verdict line (the sample then fails), but forging a pass would take native code that attaches to the
harness (ptrace), open to a program running as the same user (as root: any process). RLIMIT_NPROC is
ignored for root. Run untrusted code at scale inside a container, as an unprivileged user, and watch
for reward hacking.
"""
from __future__ import annotations

import functools
import json
import marshal
import os
import select
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

_HERE = os.path.dirname(os.path.abspath(__file__))
_MODULES = ("sandbox_wire", "sandbox_child", "sandbox_harness")
#: ``python -c _BOOT ROOT VERDICT_FD``: load the modules the runner compiled (ROOT/harness.code) and run the harness.
_BOOT = (
    "import marshal, sys\n"
    "with open(sys.argv[1] + '/harness.code', 'rb') as f:\n    code = marshal.load(f)\n"
    "mods = {}\n"
    "for name, c in code:\n    mods[name] = type(sys)(name)\n    exec(c, mods[name].__dict__)\n"
    "mods['sandbox_harness'].main(sys.argv[1], int(sys.argv[2]), mods['sandbox_wire'], mods['sandbox_child'])\n"
)
_GRACE_S = 1.0  #: seconds past the deadline the runner waits for the harness to report it

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


@functools.lru_cache(maxsize=1)
def _harness_code() -> bytes:
    """The harness's modules, compiled once per process (16 ms saved a run) and marshalled: trusted code, read
    by the harness before it forks; later edits of the files on disk do not reach running trainers."""
    code = []
    for name in _MODULES:
        path = os.path.join(_HERE, name + ".py")
        with open(path, encoding="utf-8") as f:
            code.append((name, compile(f.read(), path, "exec", dont_inherit=True)))
    return marshal.dumps(code)


def _site_packages() -> list[str]:
    """This interpreter's site-packages folders: the harness runs without ``site`` (``-S``: its ``.pth`` hooks,
    e.g. an editable install's import finder, cost 20 ms a start), so it puts these on ``sys.path`` itself."""
    return [p for p in site.getsitepackages() if os.path.isdir(p)]


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


def _read_until_eof(fd: int, deadline: float, limit: int = 1024 * 1024) -> tuple[bytes, bool]:
    """What the harness writes on the verdict pipe (at most ``limit`` bytes), and whether ``deadline`` passed first."""
    chunks, size = [], 0
    poller = select.poll()  # not select.select: a trainer's descriptors can be numbered past FD_SETSIZE
    poller.register(fd, select.POLLIN)
    while size <= limit:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return b"".join(chunks), True
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _parse_verdict(data: bytes, n_tests: int) -> dict | None:
    """The harness's verdict: exactly one well-formed JSON line, else None."""
    lines = data.splitlines()
    try:
        verdict = json.loads(lines[0]) if len(lines) == 1 and data.endswith(b"\n") else None
    except ValueError:
        return None
    fields = {"program_ok": bool, "tests": list, "done": bool, "timeout": bool}
    if type(verdict) is not dict or set(verdict) != {*fields, "error"}:
        return None
    if verdict["error"] is not None and type(verdict["error"]) is not str:
        return None
    if any(type(verdict[k]) is not t for k, t in fields.items()):
        return None
    if len(verdict["tests"]) != n_tests or any(v not in (0, 1) or type(v) is not int for v in verdict["tests"]):
        return None
    return verdict


def run_python(program: str, tests: Sequence[str] | None = None, limits: SandboxLimits | None = None,
               setup: str = "", bind: Sequence[str] = ()) -> SandboxResult:
    """Run ``program`` in a sandboxed child, then each snippet of ``tests`` in the trusted harness.

    Without ``tests`` the run passes when the program runs to its end without raising (``SystemExit``
    counts as failure). With ``tests`` each snippet is scored separately (see ``tests_passed``): the
    snippets run in the harness process after the trusted ``setup`` code, where the program's top-level
    names (and every name in ``bind``, whatever ``setup`` defines) call into the child with plain values.
    Never raises for anything the program does.
    """
    limits = limits or SandboxLimits()
    tests = [str(t) for t in (tests or [])]
    root = tempfile.mkdtemp(prefix="unmask-sandbox-")
    workdir = os.path.join(root, "work")
    os.mkdir(workdir)
    start = time.monotonic()
    proc = verdict_r = None
    try:
        child_job = {
            "program": str(program),
            "workdir": workdir,
            "sys_path": _site_packages(),
            "deadline": start + limits.timeout_s,
            "limits": {
                "memory_bytes": limits.memory_mb * 1024 * 1024,
                "cpu_s": limits.cpu_s or int(limits.timeout_s) + 2,
                "file_bytes": limits.max_file_mb * 1024 * 1024,
                "extra_processes": limits.extra_processes + 1,  # the harness forks the child
            },
        }
        harness_job = {"tests": tests, "setup": str(setup or ""), "bind": [str(b) for b in bind]}
        for name, job in (("child.json", child_job), ("harness.json", harness_job)):
            with open(os.path.join(root, name), "w", encoding="utf-8") as f:
                json.dump(job, f)
        with open(os.path.join(root, "harness.code"), "wb") as f:
            f.write(_harness_code())
        verdict_r, verdict_w = os.pipe()
        try:
            with open(os.path.join(root, "stdout"), "wb") as out, open(os.path.join(root, "stderr"), "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", _BOOT, root, str(verdict_w)],
                    cwd=workdir,
                    env=_scrubbed_env(workdir),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(verdict_w,),
                )
        finally:
            os.close(verdict_w)
        # The harness stops at the deadline itself (the grace is for it to say so); its verdict pipe reaches
        # end of file when it exits. (select, not Popen.wait(timeout), which polls in sleeps of up to 50 ms.)
        data, timed_out = _read_until_eof(verdict_r, start + limits.timeout_s + _GRACE_S)
        _kill_group(proc.pid)
        proc.wait()
        duration = time.monotonic() - start
        stdout, cut_out = _read_capped(os.path.join(root, "stdout"), limits.max_output_bytes)
        stderr, cut_err = _read_capped(os.path.join(root, "stderr"), limits.max_output_bytes)
        # Only a harness that exited 0 wrote the verdict: a killed one leaves at most lines someone else wrote.
        verdict = _parse_verdict(data, len(tests)) if proc.returncode == 0 else None
        program_ok = bool(verdict and verdict["program_ok"])
        tests_passed = sum(verdict["tests"]) if program_ok else 0
        finished = bool(verdict and verdict["done"] and program_ok)
        if verdict is not None and verdict.get("error"):
            status: Status = "error"
            stderr = f"{stderr}\nsandbox error: {verdict['error']}"
        elif (timed_out or (verdict is not None and verdict["timeout"])) and not finished:
            status = "timeout"
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
            tests_passed=tests_passed,
            tests_total=len(tests),
            program_ok=program_ok,
            output_truncated=cut_out or cut_err,
        )
    except Exception as exc:  # noqa: BLE001 - the sandbox itself failed (e.g. no disk space): a failed sample, loudly labelled
        return SandboxResult(status="error", stderr=f"sandbox error: {exc!r}", duration_s=time.monotonic() - start,
                             tests_total=len(tests))
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
        if verdict_r is not None:
            os.close(verdict_r)
        _rmtree(root)


def run_many(
    programs: Sequence[str],
    tests: Sequence[Sequence[str] | None] | None = None,
    limits: SandboxLimits | None = None,
    max_workers: int | None = None,
    setups: Sequence[str] | None = None,
    binds: Sequence[Sequence[str]] | None = None,
) -> list[SandboxResult]:
    """Run several programs concurrently (a thread pool over sandboxed subprocesses), results in order.

    ``tests``, ``setups`` and ``binds`` align with ``programs`` (see :func:`run_python`).
    """
    if not programs:
        return []
    n = len(programs)
    jobs = list(zip(programs, tests if tests is not None else [None] * n, setups or [""] * n, binds or [()] * n))
    workers = max(1, min(n, max_workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run_python(job[0], job[1], limits, job[2], job[3]), jobs))
