"""Name → implementation registries (verl style): new estimators, advantages, losses and methods are
added with a decorator, never by editing the training loop. Torch-free, so recipes validate fast.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


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
        close = difflib.get_close_matches(str(name), list(self._items), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownNameError(f"{where}{name!r} is not a registered {self.kind}; {hint}"
                               f"choose one of {', '.join(sorted(self._items))}")

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items
