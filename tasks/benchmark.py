"""The benchmark record: where a benchmark loads from, its default prompt template, and how a completion
is scored (``rewards`` verifiers only — nothing is re-implemented). Each benchmark's own file
(``tasks/gsm8k.py``, ...) fills one in and registers it.

Beside its primary grader, a benchmark reports the graders behind the published numbers it is compared
with (``reproduces``: grader -> whose numbers), so a table can quote both; ``unmask score`` re-grades files
of completions with all of them. ``size`` is the standard test set's number of problems (coverage of
``unmask score``), where there is one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .loading import load_rows

D1_PUBLISHED = "d1's published numbers (eval/parse_and_get_acc.py; d1's tables and the papers that copy them)"


@dataclass(frozen=True)
class Benchmark:
    name: str
    hub_id: str | None
    config: str | None
    split: str
    template: str
    id_column: str | None                   # None: the row's index
    gold: Callable[[dict], str]
    extract: Callable[[str, dict], str]
    graders: dict[str, Callable] = field(default_factory=dict)  # name -> TRL reward; the first is the score
    default_length: int = 256
    size: int | None = None                 # problems in the standard test set; None: no standard set
    reproduces: dict[str, str] = field(default_factory=dict)  # grader -> the published numbers it reproduces

    def load(self, data_files=None, limit: int | None = None) -> list[dict]:
        if self.hub_id is None and data_files is None:
            raise ValueError(f"benchmark {self.name!r} has no Hub copy; pass its local file with --data-files")
        rows = load_rows(self.hub_id if data_files is None else "json", self.config, self.split, data_files)
        for i, row in enumerate(rows):
            row["id"] = f"{self.name}/{row.get(self.id_column, i) if self.id_column else i}"
        ids = [r["id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.name}: {len(ids) - len(set(ids))} duplicate ids in the loaded data")
        return rows[:limit] if limit else rows

    def score(self, prompts: list[str], completions: list[str], rows: list[dict]) -> list[dict[str, float | None]]:
        """Every grader's verdict for each completion: [{grader: 1.0 / 0.0 / None}]."""
        columns = {k: [r.get(k) for r in rows] for k in rows[0]}
        verdicts = {name: fn(prompts, completions, **columns) for name, fn in self.graders.items()}
        return [{name: v[i] for name, v in verdicts.items()} for i in range(len(completions))]
