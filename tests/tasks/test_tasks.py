"""The task layer: torch-free, one registry lookup sees every task, each benchmark's template exists, the
built-in dataset and the resumable prompt order."""
from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import unmask.tasks as tasks
from unmask.tasks import BENCHMARKS, DATASETS, TEMPLATES, PromptOrder, load_checked_rows, load_rows
from unmask.tasks.registry import TASK_MODULES

MODULES = sorted(f"unmask.tasks.{m.name}" for m in pkgutil.iter_modules(tasks.__path__))


def test_tasks_import_neither_torch_nor_the_layers_above():
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {MODULES!r}]; "
            "import unmask.tasks as t; t.TEMPLATES.names(); t.BENCHMARKS.names(); "
            "bad = [m for m in ('torch', 'transformers', 'unmask.rl', 'unmask.eval', 'unmask.rollouts') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_module_says_what_it_is_for_and_every_task_file_is_registered():
    for name in MODULES:
        assert (importlib.import_module(name).__doc__ or "").strip(), f"{name} has no module docstring"
    shared = {"benchmark", "loading", "order", "prompts", "registry"}
    assert set(TASK_MODULES) == {m for m in MODULES if m.rsplit(".", 1)[1] not in shared}


def test_every_benchmark_is_its_own_file_with_a_registered_template():
    assert BENCHMARKS.names() == ["countdown", "gsm8k", "humaneval", "math500", "mbpp", "sudoku"]
    for name, bench in BENCHMARKS.entries().items():
        assert bench.template in TEMPLATES, name
        assert importlib.import_module(f"unmask.tasks.{name}").__doc__, name
        assert bench.graders, name


def test_synthetic_addition_is_a_built_in_dataset():
    assert "synthetic_addition" in DATASETS
    train = load_rows("synthetic_addition", None, "train")
    held = load_rows("synthetic_addition", "3", "test", limit=10, seed=1)
    assert len(train) == 5000 and len(held) == 10
    assert set(train[0]) == {"question", "answer", "completion"} and len(held[0]["question"]) == len("123+456=")
    assert {r["question"] for r in train}.isdisjoint(r["question"] for r in load_rows("synthetic_addition", None, "x"))
    with pytest.raises(ValueError, match="operand width in digits"):
        load_rows("synthetic_addition", "two", "train")


def test_checked_rows_name_the_missing_columns_and_the_fix(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"question": "q", "other": 1}) + "\n")
    assert load_checked_rows("data.dataset", "json", None, "train", str(path), None, 0, (("question",),), "x", "y")
    with pytest.raises(ValueError, match=r"data\.dataset 'json' has no column answer\|solution \(needed by the "
                                         r"rewards\); its columns are \['other', 'question'\]: fix it"):
        load_checked_rows("data.dataset", "json", None, "train", str(path), None, 0,
                          (("question",), ("answer", "solution")), "the rewards", "fix it")


def test_prompt_order_visits_every_row_each_epoch_and_resumes_exactly():
    order = PromptOrder(7, seed=3)
    first = order.take(7)
    assert sorted(first) == list(range(7)) and order.epochs_done == 1.0
    resumed = PromptOrder(7, seed=3)
    resumed.load_state_dict(order.state_dict())
    assert order.take(10) == resumed.take(10) and sorted(PromptOrder(7, seed=3).take(14)[7:]) == list(range(7))


def test_datasets_named_by_import_path():
    from .user_data import ROWS

    assert load_rows("tests.tasks.user_data:ROWS", None, "train") == ROWS
    assert load_rows("tests.tasks.user_data:SPLITS", None, "test") == ROWS[:1]
    assert load_rows("tests.tasks.user_data:make_rows", "main", "test", limit=5) == ROWS[:1]
    assert load_rows("tests.tasks.user_data:hub_style", None, "train") == ROWS
    with pytest.raises(ValueError, match=r"dataset 'tests\.tasks\.user_data:SPLITS' has no split 'eval'; its "
                                         r"splits are \['test', 'train'\]"):
        load_rows("tests.tasks.user_data:SPLITS", None, "eval")
    with pytest.raises(ValueError, match=r"rows that are not dicts of columns \(e\.g\. 1\)"):
        load_rows("tests.tasks.user_data:NOT_ROWS", None, "train")
    with pytest.raises(ValueError, match=r"dataset 'tests\.tasks\.nowhere:ROWS': cannot import"):
        load_rows("tests.tasks.nowhere:ROWS", None, "train")
