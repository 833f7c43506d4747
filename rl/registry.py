"""Name → implementation registries (verl style): new estimators, advantages, losses and methods are
added with a decorator, never by editing the training loop. Torch-free, so recipes validate fast.
"""
from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

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
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj
        return decorator

    def _load(self) -> None:
        for module in self._modules:
            importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str, field: str | None = None) -> T:
        """The entry called ``name``; an unknown name raises naming ``field`` and the closest valid name."""
        self._load()
        if name in self._items:
            return self._items[name]
        where = f"{field} " if field else ""
        close = suggest(name, self._items, cutoff=0.5)  # in registration order: diffu_grpo before cj_grpo
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownNameError(f"{where}{name!r} is not a registered {self.kind}; {hint}"
                               f"choose one of {', '.join(sorted(self._items))}")

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items
