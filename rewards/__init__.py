"""unmask.rewards — verifiers and reward functions: ``fn(prompts, completions, **columns) -> list[float | None]``.

Rewards are registered by name (``list_rewards()``, ``get_reward(name)``, ``build_rewards(specs)``).
Modules: ``contract`` (the reward contract), ``registry``, ``combine`` (weighted sum), ``extract`` (answer extraction),
``gsm8k``, ``math_grader`` (math-verify in worker processes), ``math_d1`` (Hendrycks/d1 string grader),
``math_rewards``, ``sandbox`` (+ ``sandbox_child``), ``code``, ``puzzles``, ``format``,
``bench_sandbox`` (HumanEval sandbox timing), ``judge`` (an LLM judge behind an OpenAI-compatible server). Nothing
here imports torch or model code.
"""
from unmask.rewards.code import code_humaneval, code_tests, extract_code, humaneval_program, run_humaneval
from unmask.rewards.combine import RewardBreakdown, weighted_rewards
from unmask.rewards.contract import completion_text, completion_texts, per_item
from unmask.rewards.extract import hash_answer, last_boxed, parse_number, tag_content, the_answer_is
from unmask.rewards.format import answer_is_int, length_penalty, xml_count, xml_format, xml_format_strict
from unmask.rewards.gsm8k import (
    answer_tag_exact,
    gsm8k_correct,
    gsm8k_gold,
    gsm8k_prediction,
    gsm8k_score,
    gsm8k_strict_match,
)
from unmask.rewards.judge import llm_judge
from unmask.rewards.math_d1 import is_equiv, last_boxed_only_string, remove_boxed, strip_string
from unmask.rewards.math_grader import MathVerifyPool, math_equal, math_verdict, verify_batch
from unmask.rewards.math_rewards import math_correct, math_correct_d1, math_prediction, score_math, score_math_batch
from unmask.rewards.puzzles import countdown, countdown_score, safe_arithmetic, sudoku, sudoku_score
from unmask.rewards.registry import (
    UnknownNameError,
    build_rewards,
    get_reward,
    list_rewards,
    register_reward,
    reward_columns,
)
from unmask.rewards.sandbox import SandboxLimits, SandboxResult, run_many, run_python

__all__ = [
    "MathVerifyPool", "RewardBreakdown", "SandboxLimits", "SandboxResult", "UnknownNameError", "answer_is_int",
    "answer_tag_exact", "build_rewards", "code_humaneval", "code_tests", "completion_text", "completion_texts",
    "countdown", "countdown_score", "extract_code", "get_reward", "gsm8k_correct", "gsm8k_gold", "gsm8k_prediction",
    "gsm8k_score", "llm_judge", "gsm8k_strict_match", "hash_answer", "humaneval_program", "is_equiv", "last_boxed",
    "last_boxed_only_string", "length_penalty", "list_rewards", "math_correct", "math_correct_d1", "math_equal",
    "math_prediction", "math_verdict", "parse_number", "per_item", "register_reward", "remove_boxed", "reward_columns",
    "run_humaneval", "run_many", "run_python", "safe_arithmetic", "score_math", "score_math_batch", "strip_string",
    "sudoku", "sudoku_score", "tag_content", "the_answer_is", "verify_batch", "weighted_rewards", "xml_count",
    "xml_format", "xml_format_strict",
]
