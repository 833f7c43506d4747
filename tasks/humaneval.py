"""HumanEval (Python function completion): openai/openai_humaneval (test; 164 problems), its prompt styles
and the reward that grades it.

Styles: an instruction, then the signature and docstring in a code block (``code``, the default), and
lm-evaluation-harness's ``humaneval_instruct`` (0-shot, dllm's LLaDA-8B-Instruct reproduction): the
assistant turn is pre-filled with the function, the model writes its body, and the completion is cut at
lm-eval's ``until`` strings before grading.

Graded by ``code_humaneval`` (the problem's tests in the sandbox, ``rewards/code.py``); the id is the
``task_id`` column.
"""
from __future__ import annotations

from unmask.rewards import code_humaneval, extract_code

from .benchmark import Benchmark
from .prompts import PromptTemplate, messages
from .registry import register_benchmark, register_template

HUMANEVAL_INSTRUCTION = ("Complete the following Python function. Reply with the whole function in a "
                         "```python code block.")
HUMANEVAL_INSTRUCT_USER = ("Write a solution to the following problem and make sure that it passes the tests:\n"
                           "```{prompt}")
# lm-eval's YAML writes this prefix with escaped newlines ("\\n"); real newlines are what it means
HUMANEVAL_INSTRUCT_PREFIX = "Here is the completed function:\n```python\n{prompt}\n"
HUMANEVAL_STOP = ("\nclass", "\n#", "\nif", "\nprint", "\n```")  # lm-eval humaneval's `until`

register_template(PromptTemplate(
    "code", (("prompt",),),  # HumanEval-style: the function signature and docstring to complete
    lambda row, system: messages(f"{system or HUMANEVAL_INSTRUCTION}\n\n```python\n{row['prompt']}```", None)))
register_template(PromptTemplate(
    "humaneval_instruct", (("prompt",),),  # the model continues a pre-filled assistant turn: the function's body
    lambda row, system: messages(HUMANEVAL_INSTRUCT_USER.format(prompt=row["prompt"]), system)
    + [{"role": "assistant", "content": HUMANEVAL_INSTRUCT_PREFIX.format(prompt=row["prompt"])}],
    stop=HUMANEVAL_STOP))

register_benchmark(Benchmark(
    "humaneval", "openai/openai_humaneval", None, "test", "code", "task_id",
    gold=lambda row: row["prompt"] + row["canonical_solution"],
    extract=lambda text, row: extract_code(text, row.get("entry_point")),
    graders={"pass": lambda p, c, **cols: code_humaneval(p, c, code_prompt=cols["prompt"], **cols)},
    default_length=512, size=164))
