"""unmask.tasks — the tasks and benchmarks, one file each: where the data loads from (Hub id, local files),
the prompt templates and styles (with their stop strings), and which rewards grade it. Torch-free: it
imports nothing of the project but ``unmask.rewards``.

Each benchmark is the file of its name (``gsm8k.py``, ...):

| name | Hub id (config, split) | id column | template | scored by (primary first) |
|---|---|---|---|---|
| ``gsm8k`` | openai/gsm8k (main, test) | row index | ``d1`` | ``gsm8k_correct``; lm-eval's strict-match; d1's parser |
| ``math500`` | HuggingFaceH4/MATH-500 (test) | ``unique_id`` or index | ``boxed`` | math-verify; d1's ``is_equiv`` |
| ``humaneval`` | openai/openai_humaneval (test) | ``task_id`` | ``code`` | ``code_humaneval`` (sandbox) |
| ``mbpp`` | google-research-datasets/mbpp (full, test) | ``task_id`` | ``mbpp`` | ``code_tests`` (sandbox) |
| ``countdown`` | Jiayi-Pan/Countdown-Tasks-3to4 (train) | row index | ``countdown`` | ``countdown``; d1's parser |
| ``sudoku`` | local files only (d1's 4×4 CSV: ``puzzle``) | row index | ``sudoku`` | solved grids; d1's cell accuracy |

Other prompt styles: ``d1`` and ``plain`` for any question column (``styles.py``), and lm-eval's few-shot
``gsm8k_cot`` / ``gsm8k_cot_5shot`` (``gsm8k.py``), ``minerva_math`` (``math500.py``) and
``humaneval_instruct`` (``humaneval.py``): the styles behind the public LLaDA reproductions, whose stop
strings cut each completion before it is graded. ``synthetic.py`` is the bundled addition task of the
demo (``data.dataset: synthetic_addition``, nothing downloaded).

Shared machinery: ``prompts.py`` (the template record, ``cut_at``), ``benchmark.py`` (the benchmark record),
``loading.py`` (rows from the Hub, local files or a built-in set; column checks), ``order.py`` (the
resumable prompt order) and ``registry.py`` (``TEMPLATES``, ``BENCHMARKS``, ``DATASETS``: a lookup imports
every task file, so each registers its own entries).
"""
from .benchmark import Benchmark
from .loading import check_columns, load_checked_rows, load_rows, missing_columns
from .order import PromptOrder
from .prompts import PromptTemplate, cut_at
from .registry import (
    BENCHMARKS,
    DATASETS,
    TEMPLATES,
    register_benchmark,
    register_dataset,
    register_template,
)

__all__ = [
    "BENCHMARKS", "DATASETS", "TEMPLATES", "Benchmark", "PromptOrder", "PromptTemplate", "cut_at", "load_checked_rows",
    "check_columns", "load_rows", "missing_columns", "register_benchmark", "register_dataset", "register_template",
]
