"""Prompt templates: the record every task's styles are, and the helpers they are written with.

A template turns a dataset row into chat messages, names the columns it reads (each entry: alternatives,
the first present is used) and may carry stop strings (lm-eval's ``until``): completions are cut at the
first of them before any reward or grader sees the text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

QUESTION = ("question", "prompt", "problem")  # the question column of the generic styles, by preference


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    columns: tuple[tuple[str, ...], ...]   # each entry: alternatives, the first present is used
    render: Callable[[dict, str | None], list[dict]]
    stop: tuple[str, ...] = ()             # completions are cut at the first of these before grading

    def cut(self, text: str) -> str:
        """The part of a completion that rewards and graders see."""
        return cut_at(text, self.stop) if self.stop else text


def cut_at(text: str, stops: tuple[str, ...]) -> str:
    """``text`` up to the first of ``stops`` (lm-eval's ``until``), whole when none occurs."""
    cut = min((i for s in stops if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def first_column(row: dict, names: tuple[str, ...]) -> str:
    return str(next(row[n] for n in names if n in row))


def messages(user: str, system: str | None) -> list[dict]:
    """Chat messages: the system turn when given, then the user turn."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
