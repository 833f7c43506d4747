"""Name → implementation registries (verl style), the one kind every part of unmask uses: rewards (here),
log-prob estimators, advantages, policy losses and methods (``rl/algorithms/``), prompt templates and
benchmarks. New entries are added with a decorator, never by editing the caller; an unknown name raises
:class:`UnknownNameError` naming the closest valid one. Torch-free, so recipes validate fast.

Rewards are looked up by name, so a recipe can say
``rewards: [{name: gsm8k_correct, weight: 2.0}, {name: xml_format, weight: 0.5}]``; a reward may be a
factory taking arguments (``args:`` in the recipe), and declares the dataset columns it reads.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from unmask.rewards.contract import RewardFn

T = TypeVar("T")


def _segments(name: str) -> list[str]:
    return [s for s in re.split(r"[\s_./-]+", name.lower()) if s]


def suggest(word, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The valid names closest to a mistyped ``word``, best first: the same name with other separators or
    case (``cj-grpo`` → ``cj_grpo``), then names holding it as whole segments, in the order of ``choices``
    (``grpo`` → ``diffu_grpo``), then difflib's closest spellings (``gpro`` → ``grpo``)."""
    if not isinstance(word, str) or not _segments(word):
        return []
    choices, typed = list(choices), _segments(word)
    parts = {c: _segments(c) for c in choices}
    same = [c for c in choices if parts[c] == typed]
    inside = [c for c in choices if any(parts[c][i:i + len(typed)] == typed for i in range(len(parts[c])))]
    spelled = difflib.get_close_matches(word, choices, n=n, cutoff=cutoff)
    return list(dict.fromkeys(same + inside + spelled))[:n]


class UnknownNameError(KeyError, ValueError):
    """A registry lookup for a name that is not registered (message names the closest valid one)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A named collection of implementations of one concern (``kind``, e.g. "log-prob estimator").

    ``modules`` are imported on first lookup: importing them registers the built-in entries, so a
    torch-free caller (recipe validation) only pays for them when it asks for one.
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = ()):
        self.kind = kind
        self._modules = modules
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] != obj:
                raise ValueError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
            self._items[name] = obj
            return obj
        return decorator

    def _load(self) -> None:
        for module in self._modules:
            importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def entries(self) -> dict[str, T]:
        """All registered entries by name, in registration order (built-ins loaded first)."""
        self._load()
        return dict(self._items)

    def get(self, name: str, field: str | None = None) -> T:
        """The entry called ``name``; an unknown name raises naming ``field`` and the closest valid name."""
        self._load()
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        where = f"{field} " if field else ""
        close = suggest(name, self._items, cutoff=0.5)  # in registration order: diffu_grpo before cj_grpo
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownNameError(f"{where}{name!r} is not a registered {self.kind}; {hint}"
                               f"choose one of {', '.join(sorted(self._items))}")

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name in self._items


def is_import_path(name: object) -> bool:
    """Whether ``name`` is an import path ``package.module:attribute`` rather than a registered name."""
    return isinstance(name, str) and ":" in name


def import_object(path: str, what: str) -> Any:
    """The object an import path ``package.module:attribute`` names (``what`` says what it should be, for the
    errors: a module that cannot be imported or an attribute it lacks)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownNameError(f"{what} {path!r} is not an import path; write package.module:name")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise UnknownNameError(f"{what} {path!r}: cannot import {module_name!r} ({e}); the module must be importable "
                               f"(installed, or on PYTHONPATH)") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownNameError(f"{what} {path!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- rewards

@dataclass(frozen=True)
class RegisteredReward:
    """A reward function, or a factory building one from keyword arguments, and the dataset columns it reads
    (each entry lists alternatives, one of which must be present)."""

    fn: Callable
    factory: bool
    columns: tuple[tuple[str, ...], ...]


# Importing these modules registers the built-in rewards.
REWARDS: Registry[RegisteredReward] = Registry("reward", (
    "unmask.rewards.gsm8k", "unmask.rewards.math_rewards", "unmask.rewards.code", "unmask.rewards.puzzles",
    "unmask.rewards.format"))


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
        REWARDS.register(name)(RegisteredReward(fn, factory, tuple(tuple(alt) for alt in columns)))
        return fn

    return decorator


def reward_entry(name: str) -> RegisteredReward:
    """The registered reward ``name``, or the function an import path ``package.module:function`` names (TRL's
    reward signature; it declares no columns and takes every dataset column as a keyword argument)."""
    if not is_import_path(name):
        return REWARDS.get(name)
    fn = import_object(name, "reward")
    if not callable(fn):
        raise RewardArgumentError(f"reward {name!r} is a {type(fn).__name__}, not a function")
    return RegisteredReward(fn, factory=False, columns=())


def list_rewards() -> list[str]:
    """Sorted names of all registered rewards."""
    return REWARDS.names()


def reward_columns(name: str) -> tuple[tuple[str, ...], ...]:
    """The dataset columns reward ``name`` reads (each entry: alternatives, one must be present)."""
    return reward_entry(name).columns


def is_factory(name: str) -> bool:
    """Whether ``name`` is a reward factory (needs or accepts keyword arguments)."""
    return reward_entry(name).factory


def check_reward_args(name: str, args: Mapping[str, Any]) -> None:
    """Raise :class:`RewardArgumentError` unless ``args`` fit reward ``name``: a plain registered reward takes
    none; a factory takes its own parameters, the required ones included; a function named by import path takes
    keyword arguments it accepts (they are bound to every call). Messages name the reward, the bad argument and
    the valid ones."""
    entry = reward_entry(name)
    fn, factory = entry.fn, entry.factory
    if is_import_path(name):
        params = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            for key in args:
                if key not in params:
                    raise RewardArgumentError(f"reward {name!r} has no argument {key!r}; its arguments are "
                                              f"{', '.join(params) or 'none'}")
        return
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
                close = suggest(key, names, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise RewardArgumentError(f"reward {name!r} has no argument {key!r}{hint}; its arguments are {valid}")
    missing = [p.name for p in named if p.default is p.empty and p.name not in args]
    if missing:
        raise RewardArgumentError(f"reward {name!r} needs the argument{'s' * (len(missing) > 1)} "
                                  f"{', '.join(missing)} in its args; its arguments are {valid}")


def get_reward(name: str, **kwargs: Any) -> RewardFn:
    """The reward registered as ``name`` (or named by import path: ``kwargs`` are bound to it); a factory is
    called with ``kwargs`` (checked first, see :func:`check_reward_args`; a value it rejects raises
    :class:`RewardArgumentError` naming the reward)."""
    check_reward_args(name, kwargs)
    entry = reward_entry(name)
    if is_import_path(name):
        return functools.partial(entry.fn, **kwargs) if kwargs else entry.fn
    if not entry.factory:
        return entry.fn
    try:
        return entry.fn(**kwargs)
    except (TypeError, ValueError) as e:
        raise RewardArgumentError(f"reward {name!r}: {e}") from e


def build_rewards(specs: Iterable[str | dict | Callable]) -> list[tuple[str, RewardFn, float]]:
    """Resolve recipe entries (``"name"``, ``"package.module:function"`` or ``{name, weight=1.0, args={}}``) and
    reward functions given directly (TRL's ``reward_funcs``) to ``(name, fn, weight)``."""
    out = []
    for spec in specs:
        if callable(spec):
            out.append((getattr(spec, "__name__", type(spec).__name__), spec, 1.0))
            continue
        if isinstance(spec, str):
            spec = {"name": spec}
        unknown = set(spec) - {"name", "weight", "args"}
        if unknown:
            raise ValueError(f"reward spec {spec!r}: unknown keys {sorted(unknown)}; valid keys: name, weight, args")
        out.append((spec["name"], get_reward(spec["name"], **(spec.get("args") or {})), float(spec.get("weight", 1.0))))
    return out
