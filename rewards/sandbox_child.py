"""Program run *inside* a sandboxed child interpreter (never imported by the parent process).

``python -I -B sandbox_child.py JOB.json``: reads the job, sets resource limits, installs the
reliability guard (a best-effort set of Python-level restrictions written for this project after
openai/human-eval's idea), then executes the untrusted program and the optional test snippets,
reporting progress as ``<nonce> ...`` lines in a result file opened before the guard went up.

Stdlib only: the child runs isolated (``-I``) and cannot import the ``rewards`` package.
"""
import builtins
import json
import os
import sys
import traceback


def _set_limits(limits: dict) -> None:
    """Apply RLIMITs (address space, CPU seconds, file size, no core dumps, process count)."""
    import resource

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


def _guard(workdir: str) -> None:
    """Disable destructive and escaping calls: processes, signals, network, writes outside ``workdir``.

    This is not a security boundary (ctypes-free Python can still find ways out); the process
    isolation, limits and scrubbed environment set up by the parent are the other layers.
    """
    import io
    import posix
    import shutil
    import socket
    import subprocess

    workdir = os.path.realpath(workdir)
    sandbox_root = os.path.dirname(workdir)  # holds the runner's result/stdout/stderr files
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
        if real.startswith(sandbox_root + os.sep) and not inside:
            # e.g. /proc/self/fd/N -> the result file: reading it would reveal the nonce that marks verdicts
            raise PermissionError("the sandbox runner's files are disabled in the sandbox")
        if writing and not inside:
            raise PermissionError(f"writing outside the sandbox directory is disabled: {path!r}")

    def path_guarded(fn, n_paths: int = 1):
        def wrapper(*args, **kwargs):
            if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None or kwargs.get("dst_dir_fd") is not None:
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

    import _io

    class GuardedFileIO(_io.FileIO):
        """``io.FileIO`` that checks its path like ``open`` (``open`` itself uses the C type directly)."""

        def __init__(self, file, mode="r", closefd=True, opener=None):
            check_path(file, writing=any(c in str(mode) for c in "wax+"))
            super().__init__(file, mode, closefd, opener)

    builtins.open = io.open = _io.open = guarded_open
    io.FileIO = _io.FileIO = GuardedFileIO
    for module in (os, posix):
        setattr(module, "open", guarded_os_open)
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
    import _posixsubprocess
    import _socket

    _socket.socket = denied
    _posixsubprocess.fork_exec = denied
    for name in ("exit", "quit", "help", "copyright", "credits", "license"):
        setattr(builtins, name, None)
    for name in ("ctypes", "_ctypes", "resource", "psutil", "tkinter", "ipdb", "joblib", "pty", "_posixsubprocess",
                 "sqlite3", "_sqlite3", "_dbm", "_gdbm"):  # C-level file writers that bypass the path checks
        sys.modules[name] = None


#: Attributes that reach interpreter frames or the object graph: with them a program could find this
#: runner's own objects and forge a "passed" verdict. Programs using them fail (a deterrent against
#: reward hacking, not a proof: ``getattr`` with a computed name goes around it).
INTROSPECTION_ATTRIBUTES = frozenset({
    "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "tb_frame", "tb_next", "gi_frame", "cr_frame",
    "ag_frame", "_getframe", "currentframe", "get_referrers", "get_referents", "get_objects", "__traceback__",
    "__subclasses__",
})


def introspection_used(source: str) -> list[str]:
    """Sorted frame/object-graph attributes that ``source`` accesses (empty when it does not parse)."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    found |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return sorted(found & INTROSPECTION_ATTRIBUTES)


def main(job_path: str) -> None:
    """Run the job described in ``job_path`` (a JSON file the parent wrote and this child deletes)."""
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    os.unlink(job_path)
    nonce, exit_now = job["nonce"], os._exit
    result = open(job["result_path"], "w", encoding="utf-8", buffering=1)

    def report(line: str) -> None:
        result.write(f"{nonce} {line}\n")
        result.flush()

    _set_limits(job["limits"])
    used = introspection_used("\n".join([job["program"], *(job.get("tests") or [])]))
    if used:
        print(f"sandbox: frame/object-graph introspection is not allowed: {', '.join(used)}", file=sys.stderr)
        sys.stderr.flush()
        exit_now(1)
    _guard(job["workdir"])
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    code = 0
    try:
        exec(compile(job["program"], "<program>", "exec"), namespace)  # noqa: S102 - this *is* the sandbox
        report("program ok")
        for i, test in enumerate(job.get("tests") or []):
            try:
                exec(compile(test, f"<test {i}>", "exec"), namespace)  # noqa: S102
                report(f"test {i} 1")
            except BaseException:  # noqa: BLE001 - SystemExit included: a test cannot pass by exiting
                traceback.print_exc()
                report(f"test {i} 0")
        report("done")
    except BaseException:  # noqa: BLE001 - SystemExit included: the program cannot pass by exiting
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    exit_now(code)  # skip atexit hooks and non-daemon threads the program may have left behind


if __name__ == "__main__":
    main(sys.argv[1])
