"""What runs *inside* the sandbox's untrusted child process, forked by :mod:`rewards.sandbox_harness`.

The harness sets the resource limits (:func:`set_limits`) and forks; the child closes every descriptor
but its two call pipes, fails programs that name frame/object-graph attributes, installs the
reliability guard (:func:`guard`, a best-effort set of Python-level restrictions written for this
project after openai/human-eval's idea; the harness installs it on itself too), runs the program, then
serves the harness's calls on its top-level names (:func:`serve`). It never sees the tests and holds no
handle on the verdict: what it sends back is plain data (:mod:`rewards.sandbox_wire`).

Stdlib only: the harness runs isolated (``-I``) and loads this file by path.
"""
# Imported once, at load, before the harness forks: neither process pays for the guard's imports again.
import _io
import _posixsubprocess
import _socket
import ast
import builtins
import io
import os
import posix
import resource
import shutil
import socket
import subprocess
import sys
import traceback


def set_limits(limits: dict) -> None:
    """Apply RLIMITs (address space, CPU seconds, file size, no core dumps, process count)."""

    def cap(which: int, value: int) -> None:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    if limits.get("memory_bytes"):
        cap(resource.RLIMIT_AS, int(limits["memory_bytes"]))
        cap(resource.RLIMIT_DATA, int(limits["memory_bytes"]))
    if limits.get("cpu_s"):
        cap(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    if limits.get("file_bytes"):
        cap(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    cap(resource.RLIMIT_CORE, 0)
    if os.getuid() != 0:  # root ignores RLIMIT_NPROC; the guard below is the fork protection there
        cap(resource.RLIMIT_NPROC, _user_process_count() + int(limits.get("extra_processes", 0)))


def _user_process_count() -> int:
    """Number of processes (and threads' tasks) owned by this uid, from /proc (0 when unavailable)."""
    uid, count = os.getuid(), 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        count += len(os.listdir(f"/proc/{entry.name}/task"))
                except OSError:
                    pass
    except OSError:
        return 0
    return count


def guard(workdir: str) -> None:
    """Disable destructive and escaping calls: processes, signals, network, writes outside ``workdir``.

    This is not a security boundary (ctypes-free Python can still find ways out); the process
    isolation, limits and scrubbed environment set up by the runner are the other layers, and no
    verdict depends on it: the tests never run in the child.
    """

    workdir = os.path.realpath(workdir)
    sandbox_root = os.path.dirname(workdir)  # holds the runner's job/stdout/stderr files
    own_proc = f"/proc/{os.getpid()}/"

    def denied(*_args, **_kwargs):
        raise PermissionError("disabled in the sandbox")

    def check_path(path, writing: bool) -> None:
        if isinstance(path, int):
            return  # an already-open descriptor
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        inside = real == workdir or real.startswith(workdir + os.sep)
        if real.startswith("/proc/") and real.split("/")[2].isdigit() and not (real + "/").startswith(own_proc):
            raise PermissionError("other processes' /proc entries are disabled in the sandbox")
        if real.startswith("/proc/") and {"mem", "map_files"} & set(real.split("/")):
            raise PermissionError("process memory is disabled in the sandbox")
        if real.startswith(own_proc + "fd/") or (real.startswith(sandbox_root + os.sep) and not inside):
            # /proc/self/fd/N that resolves to no file is a pipe: the child's call pipes (or, for the harness,
            # the verdict pipe); and nobody needs to reopen the runner's stdout/stderr files by path
            raise PermissionError("the sandbox runner's files are disabled in the sandbox")
        if writing and not inside:
            raise PermissionError(f"writing outside the sandbox directory is disabled: {path!r}")

    def path_guarded(fn, n_paths: int = 1):
        def wrapper(*args, **kwargs):
            if any(kwargs.get(k) is not None for k in ("dir_fd", "src_dir_fd", "dst_dir_fd")):
                raise PermissionError("dir_fd is disabled in the sandbox")
            for path in args[:n_paths]:
                check_path(path, writing=True)
            return fn(*args, **kwargs)

        return wrapper

    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        check_path(file, writing=any(c in str(mode) for c in "wax+"))
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if kwargs.get("dir_fd") is not None:
            raise PermissionError("dir_fd is disabled in the sandbox")
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        check_path(path, writing=writing)
        return real_os_open(path, flags, *args, **kwargs)


    class GuardedFileIO(_io.FileIO):
        """``io.FileIO`` that checks its path like ``open`` (``open`` itself uses the C type directly)."""

        def __init__(self, file, mode="r", closefd=True, opener=None):
            check_path(file, writing=any(c in str(mode) for c in "wax+"))
            super().__init__(file, mode, closefd, opener)

    builtins.open = io.open = _io.open = guarded_open
    io.FileIO = _io.FileIO = GuardedFileIO
    for module in (os, posix):
        module.open = guarded_os_open
        for name in ("remove", "unlink", "rmdir", "mkdir", "chmod", "chown", "lchown", "truncate", "utime",
                     "mkfifo", "mknod", "chflags", "lchflags", "lchmod", "setxattr", "removexattr"):
            if hasattr(module, name):
                setattr(module, name, path_guarded(getattr(module, name)))
        for name in ("rename", "replace", "link", "symlink"):
            if hasattr(module, name):
                setattr(module, name, path_guarded(getattr(module, name), n_paths=2))
        for name in ("kill", "killpg", "system", "popen", "fork", "forkpty", "vfork", "_exit", "abort",
                     "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
                     "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe",
                     "posix_spawn", "posix_spawnp", "pidfd_open",
                     "setuid", "seteuid", "setgid", "setegid", "setreuid", "setregid", "setresuid", "setresgid",
                     "setsid", "setpgid", "setpgrp", "chroot", "fchmod", "fchown", "fchdir", "ftruncate",
                     "plock", "nice", "sched_setaffinity"):
            if hasattr(module, name):
                setattr(module, name, denied)
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, denied)
    for name in ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, denied)
    for name in ("socket", "socketpair", "create_connection", "create_server", "fromfd", "getaddrinfo",
                 "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        if hasattr(socket, name):
            setattr(socket, name, denied)

    _socket.socket = denied
    _posixsubprocess.fork_exec = denied
    for name in ("exit", "quit", "help", "copyright", "credits", "license"):
        setattr(builtins, name, None)
    for name in ("ctypes", "_ctypes", "resource", "psutil", "tkinter", "ipdb", "joblib", "pty", "_posixsubprocess",
                 "sqlite3", "_sqlite3", "_dbm", "_gdbm"):  # C-level file writers that bypass the path checks
        sys.modules[name] = None


#: Attributes that reach interpreter frames or the object graph. Programs naming them fail: a deterrent,
#: not a proof (``getattr`` with a computed name goes around it), and no longer what keeps verdicts honest:
#: the tests run in the harness process, so a frame walk in the child finds nothing that decides one.
INTROSPECTION_ATTRIBUTES = frozenset({
    "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "tb_frame", "tb_next", "gi_frame", "cr_frame",
    "ag_frame", "_getframe", "currentframe", "get_referrers", "get_referents", "get_objects", "__traceback__",
    "__subclasses__",
})


def introspection_used(source: str) -> list[str]:
    """Sorted frame/object-graph attributes that ``source`` accesses (empty when it does not parse)."""

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    found |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return sorted(found & INTROSPECTION_ATTRIBUTES)




#: Exceptions a call may raise in the harness under their own type (so ``except ValueError`` in a test works
#: as in-process); any other (SystemExit, StopIteration, the program's own classes...) becomes CandidateError.
RAISABLE = ("ArithmeticError", "AssertionError", "AttributeError", "IndexError", "KeyError", "LookupError",
            "NameError", "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError", "TypeError",
            "UnicodeError", "ValueError", "ZeroDivisionError")
MAX_HANDLES = 100_000  #: objects the child keeps alive for the harness (results that are not plain values)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 - the program may have closed or replaced its streams
            pass


def _describe(exc: BaseException) -> list:
    """``[type name, message]`` of an exception, as plain strings (whatever its class does)."""
    try:
        name = str(type(exc).__name__)
    except BaseException:  # noqa: BLE001
        name = "Exception"
    try:
        message = str.__str__(str(exc))[:2000]
    except BaseException:  # noqa: BLE001
        message = "<unprintable>"
    return [name, message]


def serve(program: str, request_fd: int, reply_fd: int, wire, exit_now) -> None:
    """Run ``program``, send ``{"ready": names}``, then answer the harness's requests until it hangs up.

    Requests: ``call`` (a top-level name or a kept object, with plain or reference arguments),
    ``getattr``, ``iter`` (materialised as a list) and ``bool``. Replies: ``{"value": tagged}`` or
    ``{"raise": [type name, message]}``. Exits 1 when the program raises (the traceback goes to stderr).
    """
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(compile(program, "<program>", "exec"), namespace)  # noqa: S102 - this *is* the sandbox
    except BaseException:  # noqa: BLE001 - SystemExit included: the program cannot pass by exiting
        traceback.print_exc()
        _flush()
        exit_now(1)
    handles: dict[int, object] = {}

    def make_ref(obj) -> list:
        if len(handles) >= MAX_HANDLES:
            raise RuntimeError("too many objects kept for the harness")
        handles[len(handles)] = obj
        return ["R", len(handles) - 1]

    def resolve(ref: list):
        if ref[0] == "R":
            return handles[ref[1]]
        if ref[1] not in namespace:
            raise NameError(f"name {ref[1]!r} is not defined")
        return namespace[ref[1]]

    def perform(request: dict):
        target = wire.decode(request["target"], resolve)
        if request["op"] == "call":
            args = [wire.decode(a, resolve) for a in request["args"]]
            return target(*args, **{k: wire.decode(v, resolve) for k, v in request["kwargs"]})
        if request["op"] == "getattr":
            return getattr(target, request["name"])
        if request["op"] == "iter":
            return list(target)
        if request["op"] == "bool":
            return bool(target)
        raise ValueError(f"unknown request {request['op']!r}")

    names = [k for k in list(namespace) if type(k) is str and k.isidentifier() and not k.startswith("__")][:10_000]
    modules = {k: namespace[k].__name__ for k in names if type(namespace[k]) is type(sys)}
    reply: dict = {"ready": names, "modules": {k: v for k, v in modules.items() if type(v) is str}}
    while True:
        _flush()
        try:
            frame = wire.dumps(reply)
        except BaseException as exc:  # noqa: BLE001 - e.g. a result over the frame limit
            frame = wire.dumps({"raise": _describe(exc)})
        try:
            wire.write_frame(reply_fd, frame)
            request = wire.read_frame(request_fd)
        except BaseException:  # noqa: BLE001 - the harness hung up (or the program broke the pipe)
            exit_now(0)
        if request is None:
            exit_now(0)
        try:
            reply = {"value": wire.encode(perform(request), make_ref)}
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: a call cannot end the child cleanly
            reply = {"raise": _describe(exc)}


def run_child(job: dict, request_fd: int, reply_fd: int, wire, exit_now) -> None:
    """The forked child's whole life (never returns): keep only its pipes, check, guard, run and serve."""
    keep = {0, 1, 2, request_fd, reply_fd}
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every descriptor this harness could have opened
        open_fds = list(range(3, 256))
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    used = introspection_used(job["program"])
    if used:
        print(f"sandbox: frame/object-graph introspection is not allowed: {', '.join(used)}", file=sys.stderr)
        _flush()
        exit_now(1)
    guard(job["workdir"])
    serve(job["program"], request_fd, reply_fd, wire, exit_now)
    exit_now(1)
