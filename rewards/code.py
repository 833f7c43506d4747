"""Code rewards: HumanEval-style (``check(entry_point)``) and MBPP-style (lists of asserts), executed in
the :mod:`rewards.sandbox`; plus code extraction from markdown fences.

The completion runs in the sandbox's untrusted child; the tests run in its trusted harness, calling the
completion's functions with plain values, so no object the completion makes can decide a verdict.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from unmask.rewards.contract import column, completion_texts
from unmask.rewards.registry import register_reward
from unmask.rewards.sandbox import SandboxLimits, run_many

_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code in a completion: a fenced block if any (unclosed fences too), else the text itself.

    Among several Python blocks the first that defines ``entry_point`` wins, else the first block.
    """
    blocks = [(lang.lower(), body) for lang, body in _FENCE_RE.findall(text)]
    python_blocks = [body for lang, body in blocks if lang in _PYTHON_TAGS] or [body for _, body in blocks]
    if not python_blocks:
        return text
    if entry_point:
        for body in python_blocks:
            if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", body, re.MULTILINE):
                return body
    return python_blocks[0]


def defines_function(code: str, name: str | None) -> bool:
    """Whether ``code`` defines ``name`` at top level (i.e. the completion repeats the signature)."""
    return bool(name) and re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def humaneval_parts(prompt: str, completion: str, test: str, entry_point: str) -> tuple[str, str, str]:
    """``(program, setup, test)`` for the sandbox: ``prompt + completion`` runs in the untrusted child,
    ``prompt`` (its imports and helpers, e.g. ``poly`` for find_zero) and ``test + check(entry_point)`` in
    the trusted harness, with ``entry_point`` bound to the child's function.

    The completion's code is extracted from markdown fences; when it is a whole function (it repeats
    the ``def entry_point(`` signature) it is appended after the prompt as a redefinition, so the
    prompt's imports and helper functions stay available.
    """
    code = extract_code(completion, entry_point)
    body = ("\n" + code) if defines_function(code, entry_point) else code
    return prompt + body, prompt, test + "\n" + f"check({entry_point})"


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The single HumanEval program ``prompt + completion + "\\n" + test + "\\n" + check(entry_point)``
    (openai/human-eval's form, for reading or running outside the reward; the rewards use
    :func:`humaneval_parts`, which keeps the test out of the completion's process)."""
    program, _, check = humaneval_parts(prompt, completion, test, entry_point)
    return program + "\n" + check


def _run_humaneval_parts(parts: list[tuple[str, str, str]], entry_points: list[str], limits, max_workers):
    return run_many([p for p, _, _ in parts], [[t] for _, _, t in parts], limits=limits, max_workers=max_workers,
                    setups=[s for _, s, _ in parts], binds=[[e] for e in entry_points])


def _function_prompt(prompt, entry_point: str | None) -> str:
    """The HumanEval function prompt: a string prompt that defines ``entry_point``, else ``""``."""
    return prompt if isinstance(prompt, str) and defines_function(prompt, entry_point) else ""


@register_reward("code_humaneval", columns=(("test",), ("entry_point",)))
def code_humaneval(prompts=None, completions=None, *, limits: SandboxLimits | None = None,
                   max_workers: int | None = None, **columns) -> list[float | None]:
    """HumanEval: 1.0 when ``check(entry_point)`` passes in the sandbox; columns ``test``, ``entry_point``.

    The function prompt comes from a ``code_prompt`` column if present, else from ``prompts`` when it
    is the raw HumanEval prompt; with a chat prompt the completion must contain the whole function.
    The function prompt also runs in the trusted harness, so the helpers the test uses (``poly`` for
    HumanEval/32) are the benchmark's; without one they come from the completion, so give ``code_prompt``.
    None when the row has no ``test``/``entry_point``.
    """
    texts = completion_texts(completions)
    n = len(texts)
    tests, entry_points = column(columns, n, "test"), column(columns, n, "entry_point")
    code_prompts, raw_prompts = column(columns, n, "code_prompt"), column({"p": prompts}, n, "p")
    todo, parts = [], []
    for i, text in enumerate(texts):
        if not tests[i] or not entry_points[i]:
            continue
        code_prompt = code_prompts[i]
        prompt = code_prompt if isinstance(code_prompt, str) else _function_prompt(raw_prompts[i], entry_points[i])
        todo.append(i)
        parts.append(humaneval_parts(prompt, text, str(tests[i]), str(entry_points[i])))
    out: list[float | None] = [None] * n
    results = _run_humaneval_parts(parts, [str(entry_points[i]) for i in todo], limits, max_workers)
    for i, result in zip(todo, results):
        out[i] = 1.0 if result.passed else 0.0
    return out


def _as_test_list(value) -> list[str] | None:
    """A list of test snippets from a list, or a string holding one snippet per line."""
    if value is None:
        return None
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return [str(v) for v in value]


@register_reward("code_tests", columns=(("test_list", "tests"),))
def code_tests(prompts=None, completions=None, *, pass_fraction: bool = False, limits: SandboxLimits | None = None,
               max_workers: int | None = None, **columns) -> list[float | None]:
    """MBPP-style: run the extracted code, then each assert of ``test_list`` (or ``tests``).

    Optional ``test_setup_code``/``test_imports`` columns run first in the child (they build inputs, e.g.
    a tree); the asserts run in the trusted harness after ``test_imports``, calling the code's functions.
    Reward 1.0 when every test passes (or the fraction passed with ``pass_fraction=True``); None when the
    row has no tests.
    """
    texts = completion_texts(completions)
    n = len(texts)
    test_lists = [_as_test_list(t) for t in column(columns, n, "test_list", "tests")]
    setups = column(columns, n, "test_setup_code")
    imports = column(columns, n, "test_imports")
    todo, programs, suites, trusted = [], [], [], []
    for i, text in enumerate(texts):
        if not test_lists[i]:
            continue
        import_lines = "\n".join(_as_test_list(imports[i]) or [])
        todo.append(i)
        programs.append(import_lines + "\n" + (setups[i] or "") + "\n" + extract_code(text))
        suites.append(test_lists[i])
        trusted.append(import_lines)
    out: list[float | None] = [None] * n
    for i, result in zip(todo, run_many(programs, suites, limits=limits, max_workers=max_workers, setups=trusted)):
        out[i] = result.pass_fraction if pass_fraction else float(result.passed)
    return out


def run_humaneval(problems: Sequence[dict], completions: Sequence[str], limits: SandboxLimits | None = None,
                  max_workers: int | None = None) -> list:
    """Run HumanEval ``problems`` (dicts with prompt/test/entry_point) with aligned completions; SandboxResults."""
    parts = [humaneval_parts(p["prompt"], c, p["test"], p["entry_point"]) for p, c in zip(problems, completions)]
    return _run_humaneval_parts(parts, [p["entry_point"] for p in problems], limits, max_workers)
