"""Registry, reward contract (TRL convention), module hygiene (docstrings, no torch)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

import pytest

import unmask.rewards as rewards
from unmask.rewards import UnknownNameError, build_rewards, get_reward, list_rewards, register_reward
from unmask.rewards.contract import completion_text, per_item
from unmask.rewards.registry import RewardArgumentError, check_reward_args

EXPECTED = {
    "gsm8k_correct", "math_correct", "math_correct_d1", "code_humaneval", "code_tests", "countdown", "sudoku",
    "xml_format_strict", "xml_format", "xml_count", "answer_is_int", "length_penalty",
    "gsm8k_correct_d1", "countdown_d1", "sudoku_cells_d1",
}


def test_builtin_rewards_registered():
    assert EXPECTED <= set(list_rewards())


def test_unknown_name_suggests_closest():
    with pytest.raises(KeyError) as info:
        get_reward("gsm8k_corect")
    assert isinstance(info.value, ValueError) and isinstance(info.value, UnknownNameError)
    assert "gsm8k_correct" in str(info.value)


def test_build_rewards_from_recipe_specs():
    specs = [{"name": "gsm8k_correct", "weight": 2.0}, {"name": "xml_format", "weight": 0.5}, "xml_count",
             {"name": "length_penalty", "args": {"max_completion_length": 4, "unit": "chars"}}]
    built = build_rewards(specs)
    assert [(n, w) for n, _, w in built] == [("gsm8k_correct", 2.0), ("xml_format", 0.5), ("xml_count", 1.0),
                                            ("length_penalty", 1.0)]
    assert built[0][1](None, ["#### 5"], answer=["#### 5"]) == [1.0]
    with pytest.raises(ValueError):
        build_rewards([{"name": "xml_count", "wieght": 1}])
    with pytest.raises(TypeError):
        get_reward("xml_count", foo=1)


def test_reward_arguments_are_checked_naming_the_reward_the_bad_argument_and_the_valid_ones():
    valid = "its arguments are max_completion_length, penalty, closing, eos, unit"
    with pytest.raises(RewardArgumentError, match=re.escape(
            f"reward 'length_penalty' has no argument 'max_len' (did you mean 'max_completion_length'?); {valid}")):
        get_reward("length_penalty", max_len=4)
    with pytest.raises(RewardArgumentError, match=re.escape(
            f"reward 'length_penalty' needs the argument max_completion_length in its args; {valid}")):
        build_rewards([{"name": "length_penalty", "args": {"penalty": -2.0}}])
    with pytest.raises(RewardArgumentError, match=r"reward 'length_penalty': unit must be 'tokens' or 'chars'"):
        get_reward("length_penalty", max_completion_length=4, unit="token")
    with pytest.raises(ValueError, match=r"reward 'xml_count' takes no arguments, got foo; remove its args"):
        build_rewards([{"name": "xml_count", "args": {"foo": 1}}])
    check_reward_args("length_penalty", {"max_completion_length": 4, "unit": "chars"})  # fits: no error


def test_length_penalty_penalises_completions_that_fill_the_canvas_without_closing():
    fn = get_reward("length_penalty", max_completion_length=3, penalty=-0.5)
    completions = ["abc", "ab", "<answer>7</answer>", "no ids"]
    ids = [[1, 2, 3], [1, 2], [1, 2, 3], None]
    assert fn(["q"] * 4, completions, completion_ids=ids) == [-0.5, 0.0, 0.0, 0.0]


def test_register_custom_and_duplicate():
    @register_reward("_test_const")
    def const(prompts, completions, **kwargs):
        """Constant."""
        return [1.0] * len(completions)

    assert get_reward("_test_const") is const
    with pytest.raises(ValueError):
        register_reward("_test_const")(lambda prompts, completions, **kw: [])


def test_chat_completions_and_extra_kwargs():
    fn = get_reward("gsm8k_correct")
    chat = [[{"role": "assistant", "content": "so \\boxed{12}"}],
            [{"role": "user", "content": "#### 12"}, {"role": "assistant", "content": "#### 13"}],
            [{"role": "assistant", "content": [{"type": "text", "text": "The answer is 12."}]}]]
    out = fn([[{"role": "user", "content": "q"}]] * 3, chat, answer=["#### 12"] * 3,
             trainer_state=object(), completion_ids=[[1], [2], [3]], log_extra=None, log_metric=None)
    assert out == [1.0, 0.0, 1.0]


def test_trl_keyword_call_and_weighted_combination():
    from unmask.rewards import weighted_rewards

    completions = ["<reasoning>\nr\n</reasoning>\n<answer>\n7\n</answer>", "#### 8", "no"]
    answers = ["#### 7", "#### 7", "unparseable"]
    fn = get_reward("gsm8k_correct")
    assert fn(prompts=["q"] * 3, completions=completions, completion_ids=[[1]] * 3, answer=answers) == [1.0, 0.0, None]
    out = weighted_rewards([{"name": "gsm8k_correct", "weight": 2.0}, {"name": "xml_format", "weight": 0.5},
                            "xml_format"], ["q"] * 3, completions, answer=answers)
    assert out.total == [3.5, 0.0, 0.0]  # 2*1 + 0.5*1 + 1*1; None is skipped, as TRL does with NaN
    assert list(out.per_reward) == ["gsm8k_correct", "xml_format", "xml_format#2"]
    assert out.weights == {"gsm8k_correct": 2.0, "xml_format": 0.5, "xml_format#2": 1.0}


def test_scalar_columns_are_broadcast():
    assert get_reward("gsm8k_correct")(None, ["#### 5", "#### 6"], answer="#### 5") == [1.0, 0.0]
    assert get_reward("math_correct")(None, ["\\boxed{5}", "\\boxed{6}"], answer="5") == [1.0, 0.0]
    one_problem_asserts = ["assert f() == 1", "assert f() != 2"]  # a list of another length: broadcast
    assert get_reward("code_tests")(None, ["def f():\n    return 1"], test_list=one_problem_asserts) == [1.0]


def test_completion_text_shapes():
    assert completion_text(None) == ""
    assert completion_text(b"ab\xff") == "ab\ufffd"
    assert completion_text({"role": "assistant", "content": "x"}) == "x"
    assert completion_text([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"},
                            {"role": "user", "content": "u"}]) == "a"


def test_per_item_never_raises():
    @per_item
    def boom(text, row):
        """Always fails."""
        raise RuntimeError("x")

    assert boom(None, ["a", "b"]) == [0.0, 0.0]


def _modules():
    return [importlib.import_module(f"unmask.rewards.{m.name}") for m in pkgutil.iter_modules(rewards.__path__)]


def test_every_module_and_public_function_documented():
    for module in [rewards, *_modules()]:
        assert module.__doc__ and module.__doc__.strip(), module.__name__
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert obj.__doc__ and obj.__doc__.strip(), f"{module.__name__}.{name}"


def test_rewards_does_not_import_torch():
    code = ("import sys, unmask.rewards, unmask.rewards.bench_sandbox; "
            "bad = [m for m in ('torch', 'transformers', 'unmask.rl', 'unmask.rollouts') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- rewards by import path


def test_a_reward_named_by_import_path_is_called_with_trl_keywords():
    from unmask.rewards import weighted_rewards

    from .user_rewards import length_bonus

    (name, fn, weight), = build_rewards([{"name": "tests.rewards.user_rewards:length_bonus", "weight": 0.5}])
    assert (name, fn, weight) == ("tests.rewards.user_rewards:length_bonus", length_bonus, 0.5)
    scaled = get_reward("tests.rewards.user_rewards:length_bonus", scale=2.0)
    assert scaled(prompts=["p"], completions=["abc"]) == [6.0]
    breakdown = weighted_rewards([{"name": "tests.rewards.user_rewards:strict", "weight": 2.0}, "answer_tag_exact"],
                                 ["q1", "q2"], ["4", "<answer>5</answer>"], answer=["4", "5"])
    assert breakdown.per_reward == {"tests.rewards.user_rewards:strict": [1.0, 0.0], "answer_tag_exact": [0.0, 1.0]}
    assert breakdown.total == [2.0, 1.0]


def test_reward_functions_given_directly_and_trl_rewards_work_unchanged():
    from trl.rewards import think_format_reward

    from unmask.rewards import weighted_rewards

    completions = [[{"role": "assistant", "content": "<think>\nsteps\n</think>\n42"}],
                   [{"role": "assistant", "content": "42"}]]
    breakdown = weighted_rewards([think_format_reward, "trl.rewards:think_format_reward"], ["q", "q"], completions,
                                 completion_ids=[[1], [2]], trainer_state=None)
    assert breakdown.per_reward == {"think_format_reward": [1.0, 0.0],
                                    "trl.rewards:think_format_reward": [1.0, 0.0]}


@pytest.mark.parametrize("spec, message", [
    ({"name": "tests.rewards.no_such_module:fn"}, r"cannot import 'tests\.rewards\.no_such_module' \(No module"),
    ({"name": "tests.rewards.user_rewards:missing"}, r"'tests\.rewards\.user_rewards' has no attribute 'missing'"),
    ({"name": "tests.rewards.user_rewards:NOT_A_FUNCTION"}, r"is a int, not a function"),
    ({"name": "tests.rewards.user_rewards:strict", "args": {"scale": 2}},
     r"reward 'tests\.rewards\.user_rewards:strict' has no argument 'scale'; its arguments are prompts, completions, "
     r"answer"),
    ({"name": "tests.rewards.user_rewards:"}, r"is not an import path; write package\.module:name"),
])
def test_bad_import_paths_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        build_rewards([spec])
