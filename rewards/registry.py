"""Reward registry: rewards are looked up by name, so a recipe can say
``rewards: [{name: gsm8k_correct, weight: 2.0}, {name: xml_format, weight: 0.5}]``.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Iterable

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


def get_reward(name: str, **kwargs: Any) -> RewardFn:
    """The reward registered as ``name``; a factory is called with ``kwargs``."""
    _load_builtins()
    fn, factory = _lookup(name)
    if factory:
        return fn(**kwargs)
    if kwargs:
        raise TypeError(f"reward {name!r} takes no arguments (got {sorted(kwargs)})")
    return fn


def build_rewards(specs: Iterable[str | dict]) -> list[tuple[str, RewardFn, float]]:
    """Resolve recipe entries (``"name"`` or ``{name, weight=1.0, args={}}``) to ``(name, fn, weight)``."""
    out = []
    for spec in specs:
        if isinstance(spec, str):
            spec = {"name": spec}
        unknown = set(spec) - {"name", "weight", "args"}
        if unknown:
            raise ValueError(f"reward spec {spec!r}: unknown keys {sorted(unknown)}")
        out.append((spec["name"], get_reward(spec["name"], **(spec.get("args") or {})), float(spec.get("weight", 1.0))))
    return out
