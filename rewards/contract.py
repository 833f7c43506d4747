"""The reward-function contract (TRL convention) and helpers every reward shares.

A reward is ``fn(prompts, completions, **columns) -> list[float | None]``: dataset columns arrive
as keyword lists aligned with ``completions``; ``None`` means "no opinion" (e.g. the gold answer cannot
be parsed). Completions are plain strings or chat-message lists. As in TRL, the trainer also passes
``completion_ids`` (each completion's token ids, up to and including its first EOS) and
``trainer_state`` (a ``transformers.TrainerState``: ``global_step``, ``max_steps``, ``epoch``); a reward
that does not use a keyword argument accepts and ignores it.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list]

#: Completions longer than this (characters) are cut before scoring, so a runaway 100 MB string
#: cannot stall a regex or a parser. Far above any real completion length.
MAX_TEXT_CHARS = 200_000


def completion_text(completion: Any) -> str:
    """Return the text of one completion: a string, or the last assistant content of a chat list."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (bytes, bytearray)):
        return bytes(completion).decode("utf-8", errors="replace")
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        if not messages:
            return "".join(completion_text(m) for m in completion)
        assistant = [m for m in messages if m.get("role") == "assistant"]
        return _content_text((assistant or messages)[-1].get("content"))
    return str(completion)


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else completion_text(p) for p in content)
    return completion_text(content)


def completion_texts(completions: Sequence[Any] | None) -> list[str]:
    """Texts of a batch of completions, each cut to :data:`MAX_TEXT_CHARS`."""
    return [completion_text(c)[:MAX_TEXT_CHARS] for c in (completions or [])]


def column(columns: dict, n: int, *names: str) -> list:
    """The first of ``names`` present in ``columns`` as a list aligned with ``n`` completions, else ``[None]*n``.

    A list/tuple of length ``n`` is a per-completion column; any other value (a scalar, or a list of
    another length such as one problem's asserts) is broadcast to every completion.
    """
    for name in names:
        if columns.get(name) is not None:
            return _aligned(columns[name], n)
    return [None] * n


def _aligned(value: Any, n: int) -> list:
    """``value`` itself when it is a list/tuple of length ``n``, else ``[value] * n``."""
    return list(value) if isinstance(value, (list, tuple)) and len(value) == n else [value] * n


def rows(columns: dict, n: int) -> list[dict]:
    """The keyword arguments as ``n`` per-completion dicts (see :func:`column` for broadcasting)."""
    aligned = {k: _aligned(v, n) for k, v in columns.items()}
    return [{k: values[i] for k, values in aligned.items()} for i in range(n)]


def first_present(row: dict, *names: str):
    """The value of the first of ``names`` in ``row`` that is not None, else None."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


def per_item(score: Callable[[str, dict], float | None]) -> RewardFn:
    """Turn ``score(text, row) -> float | None`` into a batch reward that never raises.

    ``row`` is a dict of the completion's own values of the list-valued columns, plus ``prompt``.
    An exception while scoring one completion is logged and gives ``0.0`` for that completion.
    """

    @functools.wraps(score)
    def reward(prompts=None, completions=None, **columns) -> list[float | None]:
        texts = completion_texts(completions)
        prompt_list = column({"prompts": prompts}, len(texts), "prompts")
        out: list[float | None] = []
        for i, (text, row) in enumerate(zip(texts, rows(columns, len(texts)))):
            try:
                row.setdefault("prompt", prompt_list[i])
                value = score(text, row)
                out.append(None if value is None else float(value))
            except Exception:  # a reward must never take the training step down
                logger.exception("reward %s failed on completion %d; scoring 0.0", score.__name__, i)
                out.append(0.0)
        return out

    return reward
