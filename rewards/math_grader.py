"""Math equivalence through math-verify, safe off the main thread and bounded in time.

math-verify's own timeouts use ``signal.alarm`` (main thread only), so here ``parse``/``verify`` are
called with their timeouts disabled and the time limit is enforced by us:

* :func:`math_verdict` grades one pair in the current process (no time limit; use it in workers);
* :class:`MathVerifyPool` grades batches in worker processes (fresh interpreters). Each item gets a soft
  limit (``SIGALRM`` inside the worker's main thread) and a hard one: a worker that overruns it (e.g.
  stuck in C code) is killed and replaced, and its item is reported as ``"timeout"``. A hung item
  therefore never hangs the batch.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Iterable, Literal

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Verdict = Literal["equal", "different", "bad_gold", "timeout", "error"]

#: Seconds a worker may overrun the soft limit before it is killed.
HARD_KILL_GRACE_S = 2.0
#: Seconds a new worker may take to start (import math-verify) before it is killed.
STARTUP_LIMIT_S = 60.0
#: Workers dying before they are ready, in one batch, before the pool gives up loudly.
MAX_STARTUP_FAILURES = 3


def _quiet_math_verify() -> None:
    """Silence math-verify's per-call "timeout is disabled" warnings."""
    for name in ("math_verify", "math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


def math_verdict(gold: str, pred: str) -> Verdict:
    """Grade ``pred`` against ``gold`` with ``verify(parse(gold), parse(pred))`` (gold first), no time limit."""
    from math_verify import parse, verify

    _quiet_math_verify()
    try:
        gold_parsed = parse(gold, parsing_timeout=None)
    except Exception:
        return "bad_gold"
    if not gold_parsed:
        return "bad_gold"
    try:
        pred_parsed = parse(pred, parsing_timeout=None)
        if not pred_parsed:
            return "different"
        return "equal" if verify(gold_parsed, pred_parsed, timeout_seconds=None) else "different"
    except Exception:
        return "error"


def math_equal(gold: str, pred: str) -> bool:
    """Whether ``pred`` is equivalent to ``gold`` (in-process, any thread; no time limit)."""
    return math_verdict(gold, pred) == "equal"


class _SoftTimeout(BaseException):
    """Raised by the worker's SIGALRM handler (a BaseException, so no ``except Exception`` swallows it)."""


def _alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _SoftTimeout()


def _worker_main(conn: Connection) -> None:
    """Worker loop: receive ``(gold, pred, timeout_s)``, send back a :data:`Verdict`; ``None`` stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _alarm)
    import math_verify  # noqa: F401 - import once, before the first item's clock starts

    _quiet_math_verify()
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        gold, pred, timeout_s = job
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
            verdict = math_verdict(gold, pred)
        except _SoftTimeout:
            verdict = "timeout"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            conn.send(verdict)
        except (BrokenPipeError, OSError):
            return


def _worker_entry(fd: int) -> None:
    """Entry point of a worker process: serve jobs over the socket ``fd`` inherited from the parent."""
    _worker_main(Connection(fd))


class _Worker:
    """One worker process (a fresh ``python -c``) and the parent's end of its socket.

    Plain subprocesses rather than multiprocessing's spawn/forkserver: those re-import the caller's
    ``__main__``, which breaks scripts without an ``if __name__ == "__main__"`` guard and stdin scripts.
    """

    def __init__(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        code = f"from rewards.math_grader import _worker_entry; _worker_entry({child_sock.fileno()})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=[child_sock.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal is the parent's to handle
        )
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.job: int | None = None  # index of the item in flight
        self.deadline = 0.0
        self.ready = False  # set when the worker reports it has imported math-verify

    def kill(self) -> None:
        """Kill the process and close the socket."""
        self.process.kill()
        self.process.wait(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        """Ask the worker to exit, killing it if it does not."""
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.conn.close()


class MathVerifyPool:
    """A pool of math-verify worker processes with a per-item time limit.

    Usable from any thread (one batch runs at a time). Workers start lazily and are reused.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0) -> None:
        self.n_workers = max(1, workers or min(4, os.cpu_count() or 1))
        self.timeout_s = float(timeout_s)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._startup_failures = 0

    def verify(self, pairs: Iterable[tuple[str, str]], timeout_s: float | None = None) -> list[Verdict]:
        """Grade ``(gold, pred)`` pairs; returns one :data:`Verdict` per pair, in order."""
        pairs = [(str(g), str(p)) for g, p in pairs]
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        results: list[Verdict | None] = [None] * len(pairs)
        if not pairs:
            return []
        with self._lock:
            try:
                self._run(pairs, limit, results)
            except BaseException:  # leave no worker with a stale job behind
                for w in self._workers:
                    w.kill()
                self._workers = []
                raise
        return [r or "error" for r in results]

    def _run(self, pairs: list[tuple[str, str]], limit: float, results: list) -> None:
        """Dispatch loop of :meth:`verify` (called with the lock held); fills ``results`` in place."""
        while len(self._workers) < min(self.n_workers, len(pairs)):
            self._workers.append(_Worker())
        pending = list(range(len(pairs)))[::-1]
        self._startup_failures = 0
        while pending or any(w.job is not None for w in self._workers):
            for w in self._workers:
                if w.job is None and pending:
                    i = pending.pop()
                    w.job = i
                    w.deadline = time.monotonic() + (limit + HARD_KILL_GRACE_S if w.ready else STARTUP_LIMIT_S)
                    try:
                        w.conn.send((pairs[i][0], pairs[i][1], limit))
                    except (BrokenPipeError, OSError):
                        self._replace(w, results, "error")
            busy = [w for w in self._workers if w.job is not None]
            if not busy:
                continue
            next_deadline = min(w.deadline for w in busy)
            ready = wait([w.conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for w in busy:
                if w.conn in ready:
                    try:
                        message = w.conn.recv()
                    except (EOFError, OSError):
                        self._replace(w, results, "error")
                        continue
                    if message == "ready":
                        w.ready = True
                        w.deadline = time.monotonic() + limit + HARD_KILL_GRACE_S
                    else:
                        results[w.job] = message
                        w.job = None
                elif time.monotonic() >= w.deadline:
                    self._replace(w, results, "timeout")

    def _replace(self, worker: _Worker, results: list, verdict: Verdict) -> None:
        """Record ``verdict`` for the worker's item, kill it and start a fresh one in its place.

        Raises RuntimeError when workers keep dying before they are ready (a broken environment,
        e.g. math-verify not importable), instead of failing every item silently.
        """
        if worker.job is not None:
            results[worker.job] = verdict
        worker.kill()
        if not worker.ready:
            self._startup_failures += 1
            if self._startup_failures >= MAX_STARTUP_FAILURES:
                self._workers.remove(worker)
                raise RuntimeError(
                    "math-verify worker processes die at startup (is math-verify installed for "
                    f"{sys.executable}?)"
                )
        self._workers[self._workers.index(worker)] = _Worker()

    def close(self) -> None:
        """Stop all workers."""
        with self._lock:
            for w in self._workers:
                w.stop()
            self._workers = []

    def __enter__(self) -> "MathVerifyPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_default_pool: MathVerifyPool | None = None
_default_pool_pid: int | None = None
_default_pool_lock = threading.Lock()


def default_pool() -> MathVerifyPool:
    """The process-wide pool used by the math rewards (created on first use, closed at exit).

    A forked child (e.g. a data-loader worker) gets its own pool instead of sharing the parent's sockets.
    """
    global _default_pool, _default_pool_pid
    with _default_pool_lock:
        if _default_pool is None or _default_pool_pid != os.getpid():
            _default_pool, _default_pool_pid = MathVerifyPool(), os.getpid()
            atexit.register(_default_pool.close)
        return _default_pool


def verify_batch(golds: list[str], preds: list[str], timeout_s: float = 5.0) -> list[Verdict]:
    """Grade aligned ``golds``/``preds`` in the default pool with a per-item limit of ``timeout_s``."""
    return default_pool().verify(zip(golds, preds), timeout_s=timeout_s)
