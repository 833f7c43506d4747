"""Prompt datasets for training and evaluation: loading, prompt templates, and a resumable order.

Sources (``data.dataset``): a Hub dataset (``datasets.load_dataset(dataset, dataset_config)``), local
files (``data_files`` with the ``json``/``csv``/``parquet`` builder), or a built-in generated set
(``synthetic_addition``: the bundled addition task, no download; ``dataset_config`` "2" = operand
width in digits; any split other than "train" is its held-out split). A prompt template turns a row
into chat messages and names the columns it reads; rewards receive every column of the row (TRL's
convention).

Order: epoch e visits the rows in a permutation drawn from (seed, e); the position (epoch, index) is
the whole state, saved with each checkpoint, so a resumed run sees exactly the prompts it would have.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from .fewshot import (GSM8K_COT_STOP, HUMANEVAL_INSTRUCT_PREFIX, HUMANEVAL_INSTRUCT_USER, HUMANEVAL_STOP, MINERVA_MATH_STOP,
                      cut_at, gsm8k_cot_prompt, minerva_math_prompt)
from .registry import Registry

D1_SYSTEM_PROMPT = """Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>"""
BOXED_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    columns: tuple[tuple[str, ...], ...]   # each entry: alternatives, the first present is used
    render: Callable[[dict, str | None], list[dict]]
    stop: tuple[str, ...] = ()             # completions are cut at the first of these before grading

    def cut(self, text: str) -> str:
        """The part of a completion that rewards and graders see."""
        return cut_at(text, self.stop) if self.stop else text


TEMPLATES: Registry[PromptTemplate] = Registry("prompt template")


def register_template(template: PromptTemplate) -> PromptTemplate:
    TEMPLATES.register(template.name)(template)
    return template


def first_column(row: dict, names: tuple[str, ...]) -> str:
    return str(next(row[n] for n in names if n in row))


def _messages(user: str, system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


QUESTION = ("question", "prompt", "problem")
register_template(PromptTemplate(
    "d1", (QUESTION,),
    # d1 puts its format instructions before the question in the user turn (LLaDA has no system default)
    lambda row, system: _messages(f"{system or D1_SYSTEM_PROMPT}\n\n{first_column(row, QUESTION)}", None)))
register_template(PromptTemplate(
    "plain", (QUESTION,), lambda row, system: _messages(first_column(row, QUESTION), system)))
register_template(PromptTemplate(
    "boxed", (QUESTION,),  # MDPO's instruction
    lambda row, system: _messages(f"{first_column(row, QUESTION)}\n{system or BOXED_INSTRUCTION}", None)))


HUMANEVAL_INSTRUCTION = ("Complete the following Python function. Reply with the whole function in a "
                         "```python code block.")
register_template(PromptTemplate(
    "code", (("prompt",),),  # HumanEval-style: the function signature and docstring to complete
    lambda row, system: _messages(f"{system or HUMANEVAL_INSTRUCTION}\n\n```python\n{row['prompt']}```", None)))


def _mbpp(row: dict, system: str | None) -> list[dict]:
    tests = row["test_list"] if isinstance(row["test_list"], list) else str(row["test_list"]).splitlines()
    return _messages(f"{row['text']}\nYour code should pass these tests:\n" + "\n".join(tests[:3])
                     + "\nReply with the code in a ```python code block.", system)


def _countdown(row: dict, system: str | None) -> list[dict]:
    nums = first_column(row, ("nums", "numbers"))
    return _messages(f"Using the numbers {nums}, create an equation that equals {row['target']}. You can use basic "
                     f"arithmetic operations (+, -, *, /) and each number can only be used once. Show your work in "
                     f"<reasoning> </reasoning> tags and return the final equation in <answer> </answer> tags, "
                     f"for example <answer> (1 + 2) / 3 </answer>.", system)


def _sudoku(row: dict, system: str | None) -> list[dict]:
    puzzle = first_column(row, ("puzzle", "Puzzle"))
    return _messages(f"Solve this 4x4 Sudoku (0 marks an empty cell; each row, column and 2x2 box holds 1-4 "
                     f"once). Puzzle, row by row: {puzzle}\nReturn the 16 digits of the solved grid in "
                     f"<answer> </answer> tags.", system)


# lm-evaluation-harness styles (rl/fewshot.py): the public reproductions of LLaDA's numbers use them
register_template(PromptTemplate(
    "gsm8k_cot", (QUESTION,), lambda row, system: _messages(gsm8k_cot_prompt(first_column(row, QUESTION)), system),
    stop=GSM8K_COT_STOP))
register_template(PromptTemplate(
    "gsm8k_cot_5shot", (QUESTION,),  # dllm's LLaDA-8B-Instruct reproduction: --num_fewshot 5
    lambda row, system: _messages(gsm8k_cot_prompt(first_column(row, QUESTION), shots=5), system),
    stop=GSM8K_COT_STOP))
register_template(PromptTemplate(
    "minerva_math", (QUESTION,), lambda row, system: _messages(minerva_math_prompt(first_column(row, QUESTION)), system),
    stop=MINERVA_MATH_STOP))
register_template(PromptTemplate(
    "humaneval_instruct", (("prompt",),),  # the model continues a pre-filled assistant turn: the function's body
    lambda row, system: _messages(HUMANEVAL_INSTRUCT_USER.format(prompt=row["prompt"]), system)
    + [{"role": "assistant", "content": HUMANEVAL_INSTRUCT_PREFIX.format(prompt=row["prompt"])}],
    stop=HUMANEVAL_STOP))
register_template(PromptTemplate("mbpp", (("text",), ("test_list",)), _mbpp))
register_template(PromptTemplate("countdown", (("nums", "numbers"), ("target",)), _countdown))
register_template(PromptTemplate("sudoku", (("puzzle", "Puzzle"),), _sudoku))


def load_checked_rows(field: str, dataset: str, config: str | None, split: str, data_files, limit: int | None,
                      seed: int, needed: tuple[tuple[str, ...], ...], needed_by: str, fix: str) -> list[dict]:
    """:func:`load_rows`, failing with the recipe field, the missing columns and the fix when a needed
    column (``needed``: alternatives per entry) is absent."""
    rows = load_rows(dataset, config, split, data_files, limit, seed=seed)
    missing = missing_columns(list(rows[0]), needed)
    if missing:
        raise ValueError(f"{field} {dataset!r} has no column {', '.join(missing)} (needed by {needed_by}); its "
                         f"columns are {sorted(rows[0])}: {fix}")
    return rows


def missing_columns(columns: list[str], needed: tuple[tuple[str, ...], ...]) -> list[str]:
    """The needed column sets none of whose alternatives is present, written ``a|b``."""
    return ["|".join(alt) for alt in needed if not any(a in columns for a in alt)]


# ---- loading ------------------------------------------------------------------------------------

def _synthetic_addition(config: str | None, split: str, seed: int) -> list[dict]:
    from .synthetic import make_addition_dataset
    try:
        width = int(config) if config else 2
    except ValueError:
        raise ValueError(f"data.dataset_config for synthetic_addition is the operand width in digits "
                         f"(e.g. '2'), got {config!r}") from None
    which = "train" if split == "train" else "held_out"
    size = 5000 if which == "train" else 500
    return [{"question": ex.prompt, "answer": ex.answer, "completion": ex.completion}
            for ex in make_addition_dataset(size, seed=seed, width=width, split=which)]


BUILTIN_DATASETS: dict[str, Callable[[str | None, str, int], list[dict]]] = {
    "synthetic_addition": _synthetic_addition,
}
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def load_rows(dataset: str, config: str | None, split: str, data_files=None, limit: int | None = None,
              seed: int = 0) -> list[dict]:
    """Rows (dicts of columns) of a Hub dataset, local files or a built-in set."""
    if dataset in BUILTIN_DATASETS:
        rows = BUILTIN_DATASETS[dataset](config, split, seed)
    else:
        import datasets
        if data_files is not None:
            files = [data_files] if isinstance(data_files, str) else list(data_files)
            builder = dataset if dataset in ("json", "csv", "parquet", "text") else next(
                (b for ext, b in FILE_BUILDERS.items() if str(files[0]).endswith(ext)), "json")
            ds = datasets.load_dataset(builder, data_files=files, split="train")
        else:
            ds = datasets.load_dataset(dataset, config, split=split)
        rows = [dict(r) for r in ds]
    if not rows:
        raise ValueError(f"dataset {dataset!r} (split {split!r}) has no rows")
    return rows[:limit] if limit else rows


# ---- order ----------------------------------------------------------------------------------------

class PromptOrder:
    """Deterministic, resumable order over ``n`` rows: a fresh permutation each epoch."""

    def __init__(self, n: int, seed: int, epoch: int = 0, index: int = 0):
        self.n, self.seed, self.epoch, self.index = n, seed, epoch, index
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> list[int]:
        perm = list(range(self.n))
        random.Random(f"prompts:{self.seed}:{epoch}").shuffle(perm)
        return perm

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.index == self.n:
                self.epoch, self.index = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            out.append(self._perm[self.index])
            self.index += 1
        return out

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.index / self.n

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._perm = self._permutation(self.epoch)
