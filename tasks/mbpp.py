"""MBPP (short Python programs): google-research-datasets/mbpp (full, test; 500 problems), its prompt and the
reward that grades it.

Style: the task text, its first three tests and a request for a code block (``mbpp``). Graded by
``code_tests`` (the row's ``test_list`` in the sandbox, ``rewards/code.py``); the id is the ``task_id``
column.
"""
from __future__ import annotations

from unmask.rewards import code_tests, extract_code

from .benchmark import Benchmark
from .prompts import PromptTemplate, messages
from .registry import register_benchmark, register_template


def _mbpp(row: dict, system: str | None) -> list[dict]:
    tests = row["test_list"] if isinstance(row["test_list"], list) else str(row["test_list"]).splitlines()
    return messages(f"{row['text']}\nYour code should pass these tests:\n" + "\n".join(tests[:3])
                    + "\nReply with the code in a ```python code block.", system)


register_template(PromptTemplate("mbpp", (("text",), ("test_list",)), _mbpp))

register_benchmark(Benchmark(
    "mbpp", "google-research-datasets/mbpp", "full", "test", "mbpp", "task_id",
    gold=lambda row: row["code"], extract=lambda text, row: extract_code(text),
    graders={"pass": code_tests}, default_length=512, size=500))
