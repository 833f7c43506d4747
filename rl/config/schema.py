"""Strict parsing of YAML data into typed dataclasses, and dotted ``key=value`` overrides.

Generic over any dataclass whose fields are annotated with bool/int/float/str, Literal, X | None, unions,
list[...], dict[...] or nested dataclasses; errors name the dotted field, what was expected, and the
closest valid key. The recipe schema itself: the other modules of ``rl/config/``.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import MISSING
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from unmask.rewards.registry import suggest


class ConfigError(ValueError):
    """Any problem with a recipe: unreadable file, unknown key, wrong type, inconsistent values."""


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_data(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_data(v) for k, v in value.items()}
    return copy.deepcopy(value)


# ----------------------------------------------------------------------------- generic strict parsing

_SCI_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")  # YAML 1.1 reads `3e-6` as a string


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        return " or ".join(_type_name(a) for a in [a for a in args if a is not type(None)]
                           + [a for a in args if a is type(None)])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is list or tp is list:
        return "list"
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", repr(tp))


def _got(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _coerce(tp: Any, value: Any, where: str, source: str | None, expected: str | None = None) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (int->float, mappings->dataclasses)."""
    def mismatch() -> ConfigError:
        return ConfigError(f"{where}: expected {expected or _type_name(tp)}, got {_got(value)}")

    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return copy.deepcopy(value)
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: keep X's precise messages, but say null is allowed too
            return _coerce(options[0], value, where, source, expected=_type_name(tp))
        errors = []
        for option in options:
            try:
                return _coerce(option, value, where, source)
            except ConfigError as exc:
                errors.append(exc)
        deeper = [e for e in errors if not str(e).startswith(f"{where}: expected")]  # e.g. a bad list item
        raise deeper[0] if deeper else mismatch()
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        close = suggest(value, [a for a in args if isinstance(a, str)])
        got = repr(value) if isinstance(value, str) else _got(value)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: expected {expected or _type_name(tp)}, got {got}{hint}")
    if tp in (bool, str):
        if isinstance(value, tp):
            return value
        raise mismatch()
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        if numeric and (isinstance(value, int) or value.is_integer()):
            return int(value)
        raise mismatch()
    if tp is float:
        if numeric or (isinstance(value, str) and _SCI_FLOAT.match(value.strip())):
            return float(value)
        raise mismatch()
    if dataclasses.is_dataclass(tp):
        if value is None:  # an empty YAML section (`rollout:`) means "all defaults"
            value = {}
        if not isinstance(value, Mapping):
            raise mismatch()
        return _build(tp, value, where, source)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise mismatch()
        item = args[0] if args else Any
        return [_coerce(item, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise mismatch()
        key_tp, val_tp = args if args else (Any, Any)
        return {_coerce(key_tp, k, f"{where} key", source): _coerce(val_tp, v, _join(where, str(k)), source)
                for k, v in value.items()}
    raise TypeError(f"unsupported annotation {tp!r} for {where or 'top level'}")


def _unknown_key(key: Any, where: str, valid: Sequence[str], context: str) -> ConfigError:
    close = suggest(key, valid)
    if close:
        hint = f"did you mean {_join(where, close[0])!r}?"
    else:
        hint = f"valid keys of {where}: " if where else "valid top-level keys: "
        hint += ", ".join(valid)
    return ConfigError(f"unknown key {_join(where, str(key))!r}{context}; {hint}")


def _build(cls: type, data: Mapping, where: str, source: str | None) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'recipe'}: expected a mapping of {cls.__name__} fields, got {_got(data)}")
    hints = get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            raise _unknown_key(key, where, names, f" in {source}" if source else "")
    kwargs = {}
    for f in fields:
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], _join(where, f.name), source)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{_join(where, f.name)}: required field is missing")
    return cls(**kwargs)


def parse_section(cls: type, data: Mapping | None, where: str = "", *, source: str | None = None) -> Any:
    """Build dataclass ``cls`` from ``data`` strictly (unknown keys and wrong types raise ConfigError),
    then call its ``validate(where)`` if it has one. ``where`` is the dotted prefix used in messages;
    ``source`` (a file name) is quoted in unknown-key messages. Works for any dataclass whose fields
    are annotated with bool/int/float/str, Literal, X | None, unions, list[...], dict[...] or dataclasses."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"parse_section needs a dataclass type, got {cls!r}")
    obj = _build(cls, {} if data is None else data, where, source)
    if callable(getattr(obj, "validate", None)):
        obj.validate(where)
    return obj


# ----------------------------------------------------------------------------- overrides

def apply_overrides(data: Mapping, overrides: Sequence[str], schema: type) -> dict:
    """Return a deep copy of ``data`` with each ``a.b.c=value`` override applied (value parsed by
    ``yaml.safe_load``; numeric segments index lists). Keys are checked against dataclass ``schema``
    (default: RecipeConfig; pass ``object`` for no checking) and missing parents are filled from defaults."""
    result = copy.deepcopy(dict(data))
    for override in overrides:
        if not isinstance(override, str) or "=" not in override:
            raise ConfigError(f"malformed override {override!r}: expected KEY=VALUE, e.g. rollout.block_length=64")
        key_text, value_text = override.split("=", 1)
        keys = key_text.strip().split(".")
        if not all(k.strip() for k in keys):
            raise ConfigError(f"malformed override {override!r}: empty key segment in {key_text.strip()!r}")
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {override!r}: value is not valid YAML ({exc})") from None
        _set_path(result, [k.strip() for k in keys], value, schema, override)
    return result


def _set_path(node: Any, keys: list[str], value: Any, tp: Any, override: str) -> None:
    context, where = f" in override {override!r}", ""
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if get_origin(tp) in (Union, types.UnionType):  # X | None: walk into X when it is a container
            containers = [a for a in get_args(tp) if a is not type(None)]
            tp = containers[0] if len(containers) == 1 else Any
        if dataclasses.is_dataclass(tp):
            fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
            if key not in fields:
                raise _unknown_key(key, where, list(fields), context)
            child_tp, child_where, default = get_type_hints(tp)[key], _join(where, key), fields[key]
        elif get_origin(tp) is list or tp is list:
            if not key.isdigit():
                raise ConfigError(f"override {override!r}: {where} is a list; index it with a number, e.g. {where}.0")
            key = int(key)
            child_tp, child_where, default = (get_args(tp) or (Any,))[0], f"{where}[{key}]", None
        elif tp is Any or tp is object or get_origin(tp) is dict or tp is dict:
            child_tp = (get_args(tp) or (Any, Any))[1] if get_origin(tp) is dict else Any
            child_where, default = _join(where, key), None
            if isinstance(node, list) and key.isdigit():
                key = int(key)
        else:
            raise ConfigError(f"override {override!r}: {where} is a value, not a section; it has no key {key!r}")
        if isinstance(key, int):
            if not isinstance(node, list):
                raise ConfigError(f"override {override!r}: {where} is {_got(node)}, not a list")
            if key > len(node):
                raise ConfigError(f"override {override!r}: index {key} out of range for {where} ({len(node)} items)")
            if key == len(node):  # one past the end appends
                node.append({})
        elif not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {where} is {_got(node)}, not a mapping")
        if last:
            if tp is not Any and child_tp is not Any:
                try:
                    _coerce(child_tp, value, child_where, None)
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (from override {override!r})") from None
            node[key] = value
            return
        if isinstance(node, dict) and (key not in node or node[key] is None):
            value_default = None  # fill a missing parent from the schema default, or start an empty mapping
            if isinstance(default, dataclasses.Field):
                value_default = default.default_factory() if default.default_factory is not MISSING else default.default
            if dataclasses.is_dataclass(value_default):
                node[key] = {}  # a section: its defaults (and the method's) are filled when it is parsed
            elif value_default is None:
                is_list = any(t is list or get_origin(t) is list for t in (child_tp, *get_args(child_tp)))
                node[key] = [] if is_list else {}
            else:
                node[key] = _to_data(value_default)
        node, tp, where = node[key], child_tp, child_where


# ----------------------------------------------------------------------------- validation helpers

def _bound(obj: Any, where: str, names: str | tuple[str, ...], lo: float, *, strict: bool = False,
           hi: float | None = None, below: float | None = None) -> None:
    """Check ``lo <= value`` (``<`` if strict), ``value <= hi``, ``value < below``; None (unset) passes."""
    for name in (names,) if isinstance(names, str) else names:
        value = getattr(obj, name)
        if value is None:
            continue
        if (value <= lo) if strict else (value < lo):
            raise ConfigError(f"{_join(where, name)} must be {'>' if strict else '>='} {lo}, got {value!r}")
        if (hi is not None and value > hi) or (below is not None and value >= below):
            limit = f"<= {hi}" if hi is not None else f"< {below}"
            raise ConfigError(f"{_join(where, name)} must be {limit}, got {value!r}")


def _nonempty(obj: Any, where: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not str(value).strip():
            raise ConfigError(f"{_join(where, name)} must be a non-empty string")
