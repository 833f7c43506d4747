"""Reward registry: rewards are looked up by name, so a recipe can say
``rewards: [{name: gsm8k_correct, weight: 2.0}, {name: xml_format, weight: 0.5}]``.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rewards.contract import RewardFn

# name -> (function or factory, is_factory)
_REGISTRY: dict[str, tuple[Callable, bool]] = {}
# name -> dataset columns the reward reads: each entry lists alternatives, one of which must be present
_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {}

# Modules whose import registers the built-in rewards.
_BUILTIN_MODULES = ("rewards.gsm8k", "rewards.math_rewards", "rewards.code", "rewards.puzzles", "rewards.format")


class UnknownRewardError(KeyError, ValueError):
    """Raised by :func:`get_reward` for a name that is not registered (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RewardArgumentError(TypeError, ValueError):
    """Arguments a reward does not take, a required one missing, or a value its factory rejects."""


def register_reward(name: str, *, factory: bool = False,
                    columns: tuple[tuple[str, ...], ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator registering a reward function under ``name``.

    With ``factory=True`` the decorated callable builds a reward from keyword arguments
    (``get_reward(name, **kwargs)`` calls it), for configurable rewards such as ``length_penalty``.
    ``columns`` names the dataset columns it reads (each entry: alternatives), so a trainer can reject
    a dataset that lacks them before loading a model.
    """

    def decorator(fn: Callable) -> Callable:
        existing = _REGISTRY.get(name)
        if existing is not None and existing[0] is not fn:
            raise ValueError(f"reward {name!r} is already registered (by {existing[0].__module__})")
        _REGISTRY[name] = (fn, factory)
        _COLUMNS[name] = tuple(tuple(alternatives) for alternatives in columns)
        return fn

    return decorator


def _load_builtins() -> None:
    """Import the modules that register the built-in rewards."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_rewards() -> list[str]:
    """Sorted names of all registered rewards."""
    _load_builtins()
    return sorted(_REGISTRY)


def reward_columns(name: str) -> tuple[tuple[str, ...], ...]:
    """The dataset columns reward ``name`` reads (each entry: alternatives, one must be present)."""
    _load_builtins()
    _lookup(name)
    return _COLUMNS.get(name, ())


def is_factory(name: str) -> bool:
    """Whether ``name`` is a reward factory (needs or accepts keyword arguments)."""
    _load_builtins()
    return _lookup(name)[1]


def _lookup(name: str) -> tuple[Callable, bool]:
    """Registry entry for ``name``, or :class:`UnknownRewardError` naming the closest matches."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownRewardError(
            f"unknown reward {name!r}{hint} (registered: {', '.join(sorted(_REGISTRY))})"
        ) from None


def check_reward_args(name: str, args: Mapping[str, Any]) -> None:
    """Raise :class:`RewardArgumentError` unless ``args`` fit reward ``name``: a plain reward takes none;
    a factory takes its own parameters, the required ones included. Messages name the reward, the bad
    argument and the valid ones."""
    _load_builtins()
    fn, factory = _lookup(name)
    if not factory:
        if args:
            raise RewardArgumentError(f"reward {name!r} takes no arguments, got {', '.join(map(str, args))}; "
                                      f"remove its args")
        return
    params = inspect.signature(fn).parameters
    named = [p for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [p.name for p in named]
    valid = ", ".join(names) or "none"
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in args:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise RewardArgumentError(f"reward {name!r} has no argument {key!r}{hint}; its arguments are {valid}")
    missing = [p.name for p in named if p.default is p.empty and p.name not in args]
    if missing:
        raise RewardArgumentError(f"reward {name!r} needs the argument{'s' * (len(missing) > 1)} "
                                  f"{', '.join(missing)} in its args; its arguments are {valid}")


def get_reward(name: str, **kwargs: Any) -> RewardFn:
    """The reward registered as ``name``; a factory is called with ``kwargs`` (checked first, see
    :func:`check_reward_args`; a value it rejects raises :class:`RewardArgumentError` naming the reward)."""
    check_reward_args(name, kwargs)
    fn, factory = _lookup(name)
    if not factory:
        return fn
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as e:
        raise RewardArgumentError(f"reward {name!r}: {e}") from e


def build_rewards(specs: Iterable[str | dict]) -> list[tuple[str, RewardFn, float]]:
    """Resolve recipe entries (``"name"`` or ``{name, weight=1.0, args={}}``) to ``(name, fn, weight)``."""
    out = []
    for spec in specs:
        if isinstance(spec, str):
            spec = {"name": spec}
        unknown = set(spec) - {"name", "weight", "args"}
        if unknown:
            raise ValueError(f"reward spec {spec!r}: unknown keys {sorted(unknown)}; valid keys: name, weight, args")
        out.append((spec["name"], get_reward(spec["name"], **(spec.get("args") or {})), float(spec.get("weight", 1.0))))
    return out
