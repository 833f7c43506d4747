"""Math equivalence through math-verify, safe off the main thread and bounded in time.

math-verify's own timeouts use ``signal.alarm`` (main thread only), so here ``parse``/``verify`` are
called with their timeouts disabled and the time limit is enforced by us:

* :func:`math_verdict` grades one pair in the current process (no time limit; use it in workers);
* :class:`MathVerifyPool` grades batches in worker processes (forkserver/spawn). Each item gets a soft
  limit (``SIGALRM`` inside the worker's main thread) and a hard one: a worker that overruns it (e.g.
  stuck in C code) is killed and replaced, and its item is reported as ``"timeout"``. A hung item
  therefore never hangs the batch.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Iterable, Literal

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


class _SoftTimeout(Exception):
    """Raised by the worker's SIGALRM handler."""


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


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child_conn,), daemon=True)
        self.process.start()
        child_conn.close()
        self.job: int | None = None  # index of the item in flight
        self.deadline = 0.0
        self.ready = False  # set when the worker reports it has imported math-verify

    def kill(self) -> None:
        """Kill the process and close the pipe."""
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        """Ask the worker to exit, killing it if it does not."""
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=1)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def _default_context() -> str:
    """``forkserver`` where available (Linux), else ``spawn``; never plain fork of a threaded parent."""
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class MathVerifyPool:
    """A pool of math-verify worker processes with a per-item time limit.

    Usable from any thread (one batch runs at a time). Workers start lazily and are reused.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, start_method: str | None = None) -> None:
        self.n_workers = max(1, workers or min(4, os.cpu_count() or 1))
        self.timeout_s = float(timeout_s)
        self._ctx = mp.get_context(start_method or _default_context())
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
            self._workers.append(_Worker(self._ctx))
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
                    "math-verify worker processes die at startup (is math-verify importable, and is the "
                    f"main module importable by a {self._ctx.get_start_method()} child?)"
                )
        self._workers[self._workers.index(worker)] = _Worker(self._ctx)

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
_default_pool_lock = threading.Lock()


def default_pool() -> MathVerifyPool:
    """The process-wide pool used by the math rewards (created on first use, closed at exit)."""
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = MathVerifyPool()
            atexit.register(_default_pool.close)
        return _default_pool


def verify_batch(golds: list[str], preds: list[str], timeout_s: float = 5.0) -> list[Verdict]:
    """Grade aligned ``golds``/``preds`` in the default pool with a per-item limit of ``timeout_s``."""
    return default_pool().verify(zip(golds, preds), timeout_s=timeout_s)
