"""The sandbox harness: the trusted process :func:`rewards.sandbox.run_python` starts for each run
(``python -I -S -B -c BOOT ROOT VERDICT_FD``, with this module and its two siblings compiled by the runner).

It reads (and deletes) ``ROOT/child.json`` (program, limits) and ``ROOT/harness.json`` (the trusted
``setup`` and ``tests``), sets the limits and forks the untrusted child (:mod:`rewards.sandbox_child`),
which drops its reference to the tests at once, so no frame or ``gc`` walk there reaches them. The
harness runs the trusted code itself, in its own namespace: ``setup`` first (a HumanEval prompt's
helpers, MBPP's imports), then each test, with the child's top-level names that the trusted code uses
but does not define (and every name in ``bind``, e.g. the entry point) bound to :class:`Remote`
references. Calling one sends plain values to the child and gets plain
values back (:mod:`rewards.sandbox_wire`), so every comparison a test makes is Python's own, between
values the harness built: an object with a rigged ``__eq__`` cannot cross, and a frame walk in the
child finds no verdict to forge. The verdict goes to ``VERDICT_FD``, a pipe the child never holds, as
one JSON line; the runner trusts nothing else.

Stdlib only: it runs isolated (``-I``), without ``site`` (``-S``).
"""
import _thread
import ast
import builtins
import importlib
import json
import os
import sys
import traceback


class SandboxBroken(BaseException):
    """The child stopped answering (exited, timed out, or broke the wire): no later call can succeed.

    A BaseException, so ``except Exception`` in a test cannot swallow it.
    """


class CandidateError(Exception):
    """The sandboxed code raised an exception that is not re-raised under its own type (see RAISABLE)."""


class Channel:
    """The harness's end of the call pipes, with the whole sample's deadline."""

    def __init__(self, wire, request_fd: int, reply_fd: int, deadline: float, raisable: dict):
        self.wire, self.request_fd, self.reply_fd, self.deadline = wire, request_fd, reply_fd, deadline
        self.raisable = raisable
        self.broken: str | None = None
        self.timed_out = False
        self.lock = _thread.allocate_lock()  # one call at a time, even from a test's threads
        os.set_blocking(request_fd, False)
        os.set_blocking(reply_fd, False)

    def _receive(self) -> dict:
        try:
            message = self.wire.read_frame(self.reply_fd, self.deadline)
            if message is None:
                raise self.wire.WireError("the sandboxed program exited")
        except TimeoutError:
            self.timed_out = True
            self.broken = "the sandboxed program ran past its time limit"
        except (self.wire.WireError, OSError) as exc:
            self.broken = str(exc)
        if self.broken:
            raise SandboxBroken(self.broken)
        return message

    def ready(self) -> tuple[list[str], dict[str, str]]:
        """Wait for the program to finish: its top-level names, and which of them name modules (by module
        name); SandboxBroken if it failed or hung."""
        message = self._receive()
        names, modules = message.get("ready"), message.get("modules")
        if (set(message) != {"ready", "modules"} or type(names) is not list or not all(type(n) is str for n in names)
                or type(modules) is not dict or not all(type(m) is str for m in modules.values())):
            self.broken = "the sandboxed program broke the wire protocol"
            raise SandboxBroken(self.broken)
        return names, modules

    def request(self, op: str, target: list, **fields):
        """Send one request about ``target`` and return its plain (or Remote) result, or raise its error."""
        with self.lock:
            return self._request(op, target, fields)

    def _request(self, op: str, target: list, fields: dict):
        if self.broken:
            raise SandboxBroken(self.broken)
        message = {"op": op, "target": target, **fields}
        try:
            self.wire.write_frame(self.request_fd, self.wire.dumps(message), self.deadline)
        except TimeoutError:
            self.timed_out, self.broken = True, "the sandboxed program ran past its time limit"
        except OSError as exc:
            self.broken = f"the sandboxed program hung up: {exc}"
        if self.broken:
            raise SandboxBroken(self.broken)
        reply = self._receive()
        try:
            if set(reply) == {"value"}:
                return self.wire.decode(reply["value"], self._remote)
            error = reply.get("raise")
            if set(reply) == {"raise"} and type(error) is list and [type(e) for e in error] == [str, str]:
                name, message = error
                raise self.raisable[name](message) if name in self.raisable else CandidateError(f"{name}: {message}")
        except self.wire.WireError as exc:
            self.broken = f"the sandboxed program sent a bad value: {exc}"
            raise SandboxBroken(self.broken) from None
        self.broken = "the sandboxed program broke the wire protocol"
        raise SandboxBroken(self.broken)

    def _remote(self, ref: list) -> "Remote":
        if ref[0] != "R":
            raise self.wire.WireError("the child may not send names")
        return Remote(self, ref, f"object #{ref[1]}")

    def encode_argument(self, value):
        """The wire form of an argument built by the trusted code (plain values and Remotes only)."""
        def make_ref(obj):
            if type(obj) is Remote:
                return object.__getattribute__(obj, "_ref")
            raise TypeError(f"a {type(obj).__name__} cannot be passed to the sandboxed program (plain values only)")

        return self.wire.encode(value, make_ref)


class Remote:
    """A reference to an object living in the child. It has no value here: it compares equal to nothing but
    itself, and can be called, iterated, asked for an attribute (each answered by the child with a plain
    value or another Remote) or truth-tested.

    Its truth value is ``bool(obj)`` asked of the child once (under the sample's deadline; an answer that
    is not a plain bool, an exception included, breaks the sample) and kept: every later truth test of
    this reference gives the same answer. That gives the program no power a plain value lacks: a test
    that truth-tests a result is already satisfied by whatever plain truthy or falsy value (1, 0) the
    program returns for that input; asking once takes away the one thing more an object could do,
    answering ``assert r`` and ``assert not r`` differently.
    """

    __slots__ = ("_channel", "_label", "_ref", "_truth")

    def __init__(self, channel: Channel, ref: list, label: str):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_label", label)

    def __call__(self, *args, **kwargs):
        channel = object.__getattribute__(self, "_channel")
        return channel.request("call", object.__getattribute__(self, "_ref"),
                               args=[channel.encode_argument(a) for a in args],
                               kwargs=[[str(k), channel.encode_argument(v)] for k, v in kwargs.items()])

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return object.__getattribute__(self, "_channel").request("getattr", object.__getattribute__(self, "_ref"),
                                                                  name=name)

    def __iter__(self):
        return iter(object.__getattribute__(self, "_channel").request("iter", object.__getattribute__(self, "_ref")))

    def __bool__(self):
        channel = object.__getattribute__(self, "_channel")
        with channel.lock:  # asked once, even by a test's threads
            try:
                return object.__getattribute__(self, "_truth")
            except AttributeError:
                pass
            try:
                truth = channel._request("bool", object.__getattribute__(self, "_ref"), {})
            except Exception as exc:  # noqa: BLE001 - the object's __bool__ (or __len__) raised
                truth = exc
            if type(truth) is not bool:
                channel.broken = f"the truth value of {self!r} is not a plain bool: {truth!r}"[:1000]
                raise SandboxBroken(channel.broken)
            object.__setattr__(self, "_truth", truth)
            return truth

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<sandboxed {object.__getattribute__(self, '_label')}>"


def _trusted_module(module_name: str | None):
    """The harness's own copy of a standard-library module the program imported (``math`` in ``math.isclose``
    stays honest), or None."""
    if not module_name or module_name.split(".")[0] not in sys.stdlib_module_names:
        return None
    try:
        return importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - e.g. a module the guard disabled
        return None


def _names_used(code) -> set[str]:
    """Global names a compiled snippet (and every function or class inside it) may look up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_used(const)
    return names


def _compiled(source: str, filename: str):
    """``source`` compiled, or the exception that compiling it raised (the test then fails as it runs)."""
    try:
        return compile(source, filename, "exec")
    except (SyntaxError, ValueError) as exc:
        return exc


def _top_level_functions(program: str) -> set[str]:
    """Names of the functions ``program`` defines with a top-level ``def`` (empty when it does not parse)."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def run_tests(spec: dict, channel: Channel, program: str = "") -> dict:
    """Run the trusted ``setup`` and ``tests`` of ``spec`` against the child (which runs ``program``);
    the verdict fields.

    Names the trusted code uses and does not define itself (nor builtins do) are bound to the harness's
    own copy of a standard-library module the program imported under that name, else to a Remote of
    the program's top-level name; names in ``spec["bind"]`` (the entry point) always to a Remote.
    Builtins stay the harness's own (``abs`` in ``abs(area(2) - 12.56) < 0.01`` cannot be the program's),
    but for the one unambiguous case where the builtin-named function is the one under test (MBPP's
    ``def sum(a, b)``, tested as ``sum(10, 15) == 6``): the program defines it with a top-level ``def``,
    the tests (not ``setup``) use it, it is the only program name shadowing a builtin that the trusted
    code uses, and the trusted code uses no other name of the program's (a stdlib module aside).
    """
    tests = [_compiled(str(t), f"<test {i}>") for i, t in enumerate(spec.get("tests") or [])]
    verdict = {"program_ok": False, "tests": [0] * len(tests), "done": False}
    namespace = {"__name__": "__test__", "__builtins__": builtins}
    setup = _compiled(spec.get("setup") or "", "<setup>")
    if not isinstance(setup, BaseException):  # a prompt that does not compile alone gives no trusted names
        exec(setup, namespace)  # noqa: S102 - trusted code (a benchmark's prompt or imports)
    try:
        names, modules = channel.ready()
    except SandboxBroken:
        return verdict
    verdict["program_ok"] = True
    bind = {str(n) for n in spec.get("bind") or []}
    setup_used = set() if isinstance(setup, BaseException) else _names_used(setup)
    tests_used = set().union(*(_names_used(c) for c in tests if not isinstance(c, BaseException)))
    remote, shadowing = set(), set()
    for name in bind | ((setup_used | tests_used) & set(names)):
        if name in bind:
            namespace[name] = Remote(channel, ["N", name], name)
            remote.add(name)
        elif name in namespace:  # the trusted code's own (a test import, a prompt helper)
            continue
        elif hasattr(builtins, name):  # builtins stay trusted...
            shadowing.add(name)
        else:
            namespace[name] = _trusted_module(modules.get(name))
            if namespace[name] is None:
                namespace[name] = Remote(channel, ["N", name], name)
                remote.add(name)
    if len(shadowing) == 1 and not remote:  # ...but for a builtin-named function under test
        name = next(iter(shadowing))
        if name in tests_used and name not in setup_used and name in _top_level_functions(program):
            namespace[name] = Remote(channel, ["N", name], name)
    for i, test in enumerate(tests):
        try:
            if isinstance(test, BaseException):
                raise test
            exec(test, namespace)  # noqa: S102 - trusted test code
            verdict["tests"][i] = 1
        except BaseException:  # noqa: BLE001 - SystemExit included: a test cannot pass by exiting
            traceback.print_exc()
        if channel.broken:
            verdict["tests"][i] = 0  # a test that swallowed the break does not pass
            return verdict
    verdict["done"] = True
    return verdict


def main(root: str, verdict_fd: int, wire, child) -> None:
    """Fork the child, run the tests, write the verdict line, exit 0 (the runner then kills the group).

    ``wire`` and ``child`` are the :mod:`rewards.sandbox_wire` and :mod:`rewards.sandbox_child` modules.
    """
    exit_now, kill, reap = os._exit, os.kill, os.waitpid  # the guard below disables the first two
    verdict: dict = {"program_ok": False, "tests": [], "done": False, "timeout": False, "error": None}
    pid = 0
    try:
        job = _read_job(os.path.join(root, "child.json"))
        spec = _read_job(os.path.join(root, "harness.json"))  # before the fork: no race to rewrite the tests
        verdict["tests"] = [0] * len(spec.get("tests") or [])
        sys.path.extend(p for p in job["sys_path"] if p not in sys.path)  # run with -S: see rewards.sandbox
        child.set_limits(job["limits"])
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                spec = None  # the tests stay out of the child's reach
                os.close(verdict_fd)
                os.close(request_w)
                os.close(reply_r)
                child.run_child(job, request_r, reply_w, wire, exit_now)
            finally:
                exit_now(1)
        os.close(request_r)
        os.close(reply_w)
        child.guard(job["workdir"])  # the trusted code gets no more reach than the program
        raisable = {name: getattr(builtins, name) for name in child.RAISABLE}
        channel = Channel(wire, request_w, reply_r, float(job["deadline"]), raisable)
        verdict.update(run_tests(spec, channel, str(job["program"])))
        verdict["timeout"] = channel.timed_out
    except BaseException as exc:  # noqa: BLE001 - the harness itself failed: an "error" verdict
        verdict["error"] = f"{type(exc).__name__}: {exc}"[:1000]
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 - a test may have closed them
            pass
    os.write(verdict_fd, json.dumps(verdict).encode("ascii") + b"\n")
    if pid > 0:  # reap the child here: orphaned, it would be a zombie under an init that does not reap
        try:
            kill(pid, 9)
            reap(pid, 0)
        except OSError:
            pass
    exit_now(0)


def _read_job(path: str) -> dict:
    """Read and delete one of the runner's job files."""
    with open(path, encoding="utf-8") as f:
        os.unlink(path)
        return json.load(f)

