"""The sandbox wire: plain values cross with their Python types intact; nothing else crosses; decoding is strict."""
from __future__ import annotations

import collections
import json
import math
import os
import time

import pytest

from unmask.rewards.sandbox_wire import (
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    WireError,
    decode,
    dumps,
    encode,
    read_frame,
    write_frame,
)


def _no_refs(obj):
    raise TypeError(f"not plain: {type(obj).__name__}")


def _roundtrip(value):
    """Encode, pass through JSON text as the pipe does, decode."""
    return decode(json.loads(json.dumps(encode(value, _no_refs))), _no_refs)


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 10**5000, -(2**200), 1.5, -0.0, float("inf"), float("-inf"), 1e-310, 2 + 3j, "",
    "é\udcff\x00", b"\x00\xff", bytearray(b"ab"), [1, [2, (3,)]], (1, "a"), (), {1, 2}, frozenset({"x"}),
    {"a": [1], (1, 2): {3}, frozenset({1}): None, 1.5: b"x"},
], ids=lambda value: type(value).__name__)
def test_plain_values_cross_with_their_type_and_value(value):
    back = _roundtrip(value)
    assert type(back) is type(value) and back == value
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)  # -0.0 keeps its sign


def test_tuples_and_lists_stay_distinct_as_python_compares_them():
    assert _roundtrip((1, 2)) != [1, 2] and _roundtrip([1, 2]) != (1, 2)
    assert _roundtrip(True) == 1 and type(_roundtrip(True)) is bool and type(_roundtrip(1)) is int
    assert _roundtrip(1) == 1.0 and type(_roundtrip(1.0)) is float
    assert _roundtrip({1, 2}) == frozenset({1, 2})  # Python's own set == frozenset


def test_nan_crosses_as_a_fresh_nan_that_equals_nothing():
    nan = _roundtrip(float("nan"))
    same = nan
    assert math.isnan(nan) and nan != same and [nan] != [float("nan")]


def test_subclasses_cross_as_their_base_value_whatever_they_override():
    class RiggedList(list):
        def __eq__(self, other):
            return True

        def __iter__(self):
            return iter([1, 2, 3])

    class RiggedInt(int):
        def __eq__(self, other):
            return True

        def __int__(self):
            return 99

        __index__ = __int__
        __hash__ = int.__hash__

    class RiggedStr(str):
        def __str__(self):
            return "forged"

    class RiggedDict(dict):
        def items(self):
            return [("forged", 1)]

    point = collections.namedtuple("Point", "x y")(1, 2)
    assert (type(_roundtrip(RiggedList([7]))), _roundtrip(RiggedList([7]))) == (list, [7])
    assert (type(_roundtrip(RiggedInt(5))), _roundtrip(RiggedInt(5))) == (int, 5)
    assert (type(_roundtrip(RiggedStr("ab"))), _roundtrip(RiggedStr("ab"))) == (str, "ab")
    assert _roundtrip(RiggedDict(a=1)) == {"a": 1}
    assert (type(_roundtrip(point)), _roundtrip(point)) == (tuple, (1, 2))
    assert _roundtrip(collections.defaultdict(list, a=[1])) == {"a": [1]}


def test_an_object_claiming_a_plain_class_is_still_a_reference():
    class Impostor:
        __class__ = int  # isinstance(Impostor(), int) is True

    refs = []
    assert encode([Impostor()], lambda obj: refs.append(obj) or ["R", 0]) == ["l", [["R", 0]]]
    assert len(refs) == 1


def test_values_that_are_not_plain_become_references():
    kept = []

    def make_ref(obj):
        kept.append(obj)
        return ["R", len(kept) - 1]

    fn, gen = (lambda: 1), (x for x in [])
    assert encode([fn, {"g": gen}], make_ref) == ["l", [["R", 0], ["d", [[["s", "g"], ["R", 1]]]]]]
    assert kept == [fn, gen]
    assert decode(["l", [["R", 1]]], lambda ref: kept[ref[1]]) == [gen]


def test_self_containing_and_too_deep_values_do_not_cross():
    loop = []
    loop.append(loop)
    deep = 0
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    for value in (loop, deep):
        with pytest.raises(WireError, match="nested deeper"):
            encode(value, _no_refs)


@pytest.mark.parametrize("data", [
    "not a list", [], [1], ["?"], ["i", 5], ["b", 1], ["n", None], ["s"], ["f", "0x1p+1", "extra"], ["S", [["l", []]]],
    ["d", [[["l", []], ["n"]]]], ["d", [["s", "a"]]], ["l", "notalist"], ["i", "zz"], ["y", "0"], ["R", "0"],
    ["N", 3], ["t", [["i", "0x1"], "raw"]],
])
def test_malformed_or_unhashable_values_are_rejected(data):
    with pytest.raises(WireError):
        decode(data, _no_refs)


def test_references_are_only_resolved_by_the_receiver():
    with pytest.raises(WireError):
        decode(["R", 0], _no_refs)
    with pytest.raises(TypeError):
        encode(object(), _no_refs)


def test_frames_carry_messages_and_end_cleanly():
    r, w = os.pipe()
    try:
        write_frame(w, dumps({"value": encode((1, "x"), _no_refs)}))
        os.close(w)
        message = read_frame(r, time.monotonic() + 5)
        assert decode(message["value"], _no_refs) == (1, "x")
        assert read_frame(r, time.monotonic() + 5) is None  # end of file between frames
    finally:
        os.close(r)


def test_oversized_truncated_and_non_object_frames_are_rejected():
    bodies = (b"[]", b"NaN", b"{bad}")
    frames = [(MAX_FRAME_BYTES + 1).to_bytes(4, "big"), *(len(b).to_bytes(4, "big") + b for b in bodies)]
    for raw in [*frames, (10).to_bytes(4, "big") + b"{}"]:  # the last one ends 8 bytes short
        r, w = os.pipe()
        os.write(w, raw)
        os.close(w)
        with pytest.raises(WireError):
            read_frame(r, time.monotonic() + 5)
        os.close(r)
    with pytest.raises(WireError, match="over the"):
        dumps({"value": ["s", "x" * MAX_FRAME_BYTES]})


def test_a_silent_peer_times_out_at_the_deadline():
    r, w = os.pipe()
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            read_frame(r, start + 0.2)
        assert time.monotonic() - start < 2
    finally:
        os.close(r)
        os.close(w)
