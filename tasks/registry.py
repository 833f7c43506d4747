"""The task registries, by name: prompt templates, benchmarks and built-in datasets.

Each task module registers its own entries (``register_template``, ``register_benchmark``,
``register_dataset``); a lookup first imports every task module (``TASK_MODULES``), so any caller sees
them all without importing them itself. The registry class is the project's one generic
:class:`unmask.rewards.registry.Registry` (unknown names fail with a did-you-mean).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unmask.rewards.registry import Registry

if TYPE_CHECKING:
    from .benchmark import Benchmark
    from .prompts import PromptTemplate

# importing these registers the built-in entries, in this order
TASK_MODULES = tuple(f"unmask.tasks.{name}" for name in (
    "styles", "gsm8k", "math500", "humaneval", "mbpp", "countdown", "sudoku", "synthetic"))

TEMPLATES: Registry[PromptTemplate] = Registry("prompt template", TASK_MODULES)
BENCHMARKS: Registry[Benchmark] = Registry("benchmark", TASK_MODULES)
# built-in datasets, generated rather than downloaded: (dataset_config, split, seed) -> rows
DATASETS: Registry[Callable[[str | None, str, int], list[dict]]] = Registry("built-in dataset", TASK_MODULES)


def register_template(template: PromptTemplate) -> PromptTemplate:
    TEMPLATES.register(template.name)(template)
    return template


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    BENCHMARKS.register(benchmark.name)(benchmark)
    return benchmark


def register_dataset(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a built-in dataset's row builder ``(config, split, seed) -> rows``."""
    return DATASETS.register(name)
