"""The wire between the sandbox harness and its untrusted child: plain values in tagged JSON, in length-prefixed frames.

Only plain values cross: None, bool, int, float, complex, str, bytes, bytearray, list, tuple, set,
frozenset, dict. A subclass of one of these crosses as its base type, read through the base type's own
methods (``list.__iter__``, ``dict.items``, ``str.__str__``...), so a rigged ``__eq__``, ``__iter__`` or
``__hash__`` stays behind. Tags keep what JSON loses: tuple vs list, sets, bool vs int vs float, big
ints (as hex: no digit limit), NaN, infinities and -0.0 (floats travel as ``float.hex``). Anything else
is a reference ``["R", id]`` (or ``["N", name]``, a top-level name of the child) to an object that stays
in the process that made it. Decoding is strict; no pickle, no code, no objects are ever rebuilt.

Stdlib only: the harness loads this file by path (it runs isolated, ``-I``).
"""
import json
import os
import select
import time

MAX_DEPTH = 100  #: deepest nesting of containers that crosses (a self-containing list stops here)
MAX_FRAME_BYTES = 16 * 2**20  #: largest frame either side sends or accepts


class WireError(ValueError):
    """A value or a frame that does not follow the wire format."""


_SEQUENCES = ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "F"))


def encode(value, make_ref, depth: int = 0):
    """The tagged JSON form of ``value``; ``make_ref(obj)`` gives the form of anything not plain."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None:
        return ["n"]
    if value is True or value is False:
        return ["b", value]
    kind = type(value)  # not isinstance: an object can claim any ``__class__``
    if issubclass(kind, int):
        return ["i", hex(int.__int__(value))]
    if issubclass(kind, float):
        return ["f", float.hex(float.__float__(value))]
    if kind is complex:
        return ["c", value.real.hex(), value.imag.hex()]
    if issubclass(kind, str):
        return ["s", str.__str__(value)]
    if issubclass(kind, bytes):
        return ["y", bytes.hex(value)]
    if issubclass(kind, bytearray):
        return ["Y", bytearray.hex(value)]
    if issubclass(kind, dict):
        return ["d", [[encode(k, make_ref, depth + 1), encode(v, make_ref, depth + 1)] for k, v in dict.items(value)]]
    for base, tag in _SEQUENCES:
        if issubclass(kind, base):
            return [tag, [encode(item, make_ref, depth + 1) for item in base.__iter__(value)]]
    return make_ref(value)


def decode(data, resolve_ref, depth: int = 0):
    """The value of a tagged JSON form; ``resolve_ref(["R", id] or ["N", name])`` gives a reference's object."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if type(data) is not list or not data or type(data[0]) is not str:
        raise WireError("not a tagged value")
    tag, args = data[0], data[1:]
    try:
        if tag == "n" and not args:
            return None
        if tag == "b" and len(args) == 1 and type(args[0]) is bool:
            return args[0]
        if tag in ("i", "f", "s", "y", "Y") and len(args) == 1 and type(args[0]) is str:
            return {"i": lambda s: int(s, 16), "f": float.fromhex, "s": str, "y": bytes.fromhex,
                    "Y": bytearray.fromhex}[tag](args[0])
        if tag == "c" and len(args) == 2 and all(type(a) is str for a in args):
            return complex(float.fromhex(args[0]), float.fromhex(args[1]))
        if tag in ("l", "t", "S", "F") and len(args) == 1 and type(args[0]) is list:
            items = [decode(item, resolve_ref, depth + 1) for item in args[0]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and len(args) == 1 and type(args[0]) is list:
            pairs = args[0]
            if not all(type(p) is list and len(p) == 2 for p in pairs):
                raise WireError("a dict entry is not a pair")
            return {decode(k, resolve_ref, depth + 1): decode(v, resolve_ref, depth + 1) for k, v in pairs}
        if (tag == "R" and len(args) == 1 and type(args[0]) is int) or (tag == "N" and len(args) == 1
                                                                          and type(args[0]) is str):
            return resolve_ref(data)
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. an unhashable set item, a malformed hex string
        raise WireError(f"bad {tag!r} value: {exc}") from None
    raise WireError(f"unknown tag {tag!r}")


def dumps(message: dict) -> bytes:
    """One frame: a 4-byte big-endian length, then the message as compact ASCII JSON."""
    body = json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    if len(body) > MAX_FRAME_BYTES:
        raise WireError(f"message of {len(body)} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    return len(body).to_bytes(4, "big") + body


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the sandbox's time limit passed")
    return left


def write_frame(fd: int, frame: bytes, deadline: float | None = None) -> None:
    """Write all of ``frame`` to ``fd`` (non-blocking when ``deadline`` is set: TimeoutError after it)."""
    view = memoryview(frame)
    while view:
        if deadline is not None:
            _, writable, _ = select.select([], [fd], [], _remaining(deadline))
            if not writable:
                continue
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            readable, _, _ = select.select([fd], [], [], _remaining(deadline))
            if not readable:
                continue
        try:
            chunk = os.read(fd, min(n - got, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            if got:
                raise WireError("the other side closed the pipe mid-frame")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> dict | None:
    """The next message from ``fd`` (a JSON object), or None at end of file; strict about sizes and shape."""
    header = _read_exact(fd, 4, deadline)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME_BYTES:
        raise WireError(f"frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    body = _read_exact(fd, size, deadline)
    if body is None:
        raise WireError("the other side closed the pipe mid-frame")
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"frame is not JSON: {exc}") from None
    if type(message) is not dict:
        raise WireError("frame is not a JSON object")
    return message
