"""The benchmarks: where each loads from, how its rows become prompts (the training templates of
``rl.data``), and how a completion is scored (``rewards`` verifiers only — nothing is re-implemented).

| name | Hub id (config, split) | id column | template | scored by (primary first) |
|---|---|---|---|---|
| ``gsm8k`` | openai/gsm8k (main, test) | row index | ``d1`` | ``gsm8k_correct``; lm-eval's strict-match; d1's parser |
| ``math500`` | HuggingFaceH4/MATH-500 (test) | ``unique_id`` or index | ``boxed`` | math-verify; d1's ``is_equiv`` |
| ``humaneval`` | openai/openai_humaneval (test) | ``task_id`` | ``code`` | ``code_humaneval`` (sandbox) |
| ``mbpp`` | google-research-datasets/mbpp (full, test) | ``task_id`` | ``mbpp`` | ``code_tests`` (sandbox) |
| ``countdown`` | Jiayi-Pan/Countdown-Tasks-3to4 (train) | row index | ``countdown`` | ``countdown``; d1's parser |
| ``sudoku`` | local files only (d1's 4×4 CSV: ``puzzle``) | row index | ``sudoku`` | solved grids; d1's cell accuracy |

Beside its primary grader, a benchmark reports the graders behind the published numbers it is compared
with (``reproduces``: grader -> whose numbers), so a table can quote both; ``unmask score`` re-grades files
of completions with all of them. ``size`` is the standard test set's number of problems (coverage of
``unmask score``), where there is one.

``--template`` picks another prompt style, e.g. lm-eval's few-shot ``gsm8k_cot`` / ``gsm8k_cot_5shot`` and
``minerva_math`` (``rl/fewshot.py``: the styles behind the public LLaDA reproductions), whose stop strings
cut each completion before it is graded.

``--data-files`` loads the same sets from local files (e.g. ``../shared/data``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from rewards import (code_humaneval, code_tests, countdown, extract_code, gsm8k_correct, gsm8k_gold, gsm8k_prediction,
                     gsm8k_strict_match, math_correct, math_correct_d1, math_prediction, sudoku, tag_content)
from rewards.gsm8k import gsm8k_correct_d1
from rewards.puzzles import countdown_d1, countdown_equation, sudoku_cells_d1
from rl.data import load_rows
from rl.registry import Registry


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


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")

D1 = "d1's published numbers (eval/parse_and_get_acc.py; d1's tables and the papers that copy them)"


def register_benchmark(b: Benchmark) -> Benchmark:
    BENCHMARKS.register(b.name)(b)
    return b


register_benchmark(Benchmark(
    "gsm8k", "openai/gsm8k", "main", "test", "d1", None,
    gold=lambda row: str(gsm8k_gold(row["answer"])),
    extract=lambda text, row: "" if (v := gsm8k_prediction(text)) is None else str(v),
    graders={"gsm8k_correct": gsm8k_correct, "lm_eval_strict": gsm8k_strict_match, "d1_parser": gsm8k_correct_d1},
    size=1319, reproduces={"lm_eval_strict": "lm-eval's gsm8k_cot strict-match", "d1_parser": D1}))

register_benchmark(Benchmark(
    "math500", "HuggingFaceH4/MATH-500", None, "test", "boxed", "unique_id",
    gold=lambda row: str(row["answer"]), extract=lambda text, row: math_prediction(text),
    graders={"math_verify": math_correct, "d1_is_equiv": math_correct_d1}, default_length=512, size=500,
    reproduces={"d1_is_equiv": D1}))

register_benchmark(Benchmark(
    "humaneval", "openai/openai_humaneval", None, "test", "code", "task_id",
    gold=lambda row: row["prompt"] + row["canonical_solution"],
    extract=lambda text, row: extract_code(text, row.get("entry_point")),
    graders={"pass": lambda p, c, **cols: code_humaneval(p, c, code_prompt=cols["prompt"], **cols)},
    default_length=512, size=164))

register_benchmark(Benchmark(
    "mbpp", "google-research-datasets/mbpp", "full", "test", "mbpp", "task_id",
    gold=lambda row: row["code"], extract=lambda text, row: extract_code(text),
    graders={"pass": code_tests}, default_length=512, size=500))

register_benchmark(Benchmark(
    "countdown", "Jiayi-Pan/Countdown-Tasks-3to4", None, "train", "countdown", None,
    gold=lambda row: f"{row['target']} from {row.get('nums', row.get('numbers'))}",
    extract=lambda text, row: countdown_equation(text) or "",
    graders={"countdown": countdown, "d1_parser": countdown_d1}, reproduces={"d1_parser": D1}))

register_benchmark(Benchmark(
    "sudoku", None, None, "test", "sudoku", None,
    gold=lambda row: str(row.get("solution", row.get("Solution", ""))),
    extract=lambda text, row: tag_content(text, "answer") or "",
    graders={"sudoku": sudoku, "d1_cell_accuracy": sudoku_cells_d1}, default_length=128,
    reproduces={"d1_cell_accuracy": D1 + ", a cell accuracy over the blanks, not solved grids"}))
