"""Every registered reward survives malformed completions and columns (hypothesis + fixed nasties)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unmask.rewards import get_reward, list_rewards
from unmask.rewards.registry import is_factory
from unmask.rewards.sandbox import SandboxLimits


class EchoJudge:
    """An ``openai.OpenAI``-shaped judge client that answers with the end of what it was asked."""

    def __init__(self):
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, messages, **request):
        content = SimpleNamespace(content=messages[-1]["content"][-20:])
        return SimpleNamespace(choices=[SimpleNamespace(message=content)])


FACTORY_ARGS = {"length_penalty": {"max_completion_length": 16, "unit": "chars"},
                "llm_judge": {"base_url": "http://unused/v1", "model": "judge", "client": EchoJudge(),
                              "prompt_template": "{prompt} {completion} {answer} {0}"}}
SANDBOXED = {"code_humaneval", "code_tests"}
QUICK = SandboxLimits(timeout_s=2.0, memory_mb=256)

TEXT_PIECES = st.sampled_from([
    "\\boxed{", "}", "{", "\\boxed{\\frac{1}{2}", "\\fbox", "<answer>", "</answer>", "<reasoning>", "\n", "####",
    "The answer is", "-", "1,000", ".", "$", "\\", "```python\n", "```", "def f(", "\x00", "\udcff", "9" * 50,
    "(", ")", "*", "/0", "**", "\\left(", "𝔘", "1234", "=",
])
COMPLETION = st.one_of(
    st.none(),
    st.just(""),
    st.binary(max_size=64),
    st.text(max_size=64),
    st.lists(TEXT_PIECES, max_size=30).map("".join),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["assistant", "user"]), "content": st.text(max_size=20)}),
             max_size=3),
    st.integers(),
)
NASTY = [
    None, "", b"\xff\xfe\x00garbage", "\\boxed{" * 5000, "}" * 5000 + "\\boxed{1}", "{" * 100_000,
    "x" * 1_000_000, "<answer>" + "(" * 300 + "1" + ")" * 300 + "</answer>", "9" * 10_000,
    "```python\n" + "while True: pass\n" * 3, [{"role": "assistant"}], [{"content": None}], {"content": 5},
    "<answer>9**9**9**9</answer>", "<answer>" + "1+" * 400 + "1</answer>",
]


def _columns(n: int) -> dict:
    """Plausible (and a few broken) dataset columns for every reward, aligned to ``n``."""
    cycle = lambda values: [values[i % len(values)] for i in range(n)]  # noqa: E731
    return {
        "answer": cycle(["#### 5", "\\frac{1}{2}", None, "", "\\boxed{", "\x00"]),
        "test": cycle(["def check(c):\n    assert c() == 1", None, "def check(c): pass"]),
        "entry_point": cycle(["f", "f", None]),
        "test_list": cycle([["assert f() == 1"], None, "assert True"]),
        "numbers": cycle([[1, 2, 3], "[4, 5]", None, "abc"]),
        "target": cycle([6, "9", None, [1, 2]]),
        "puzzle": cycle(["1034300201430000", None, "xyz", [0] * 16]),
        "completion_ids": cycle([[1] * 20, [], None]),
        "trainer_state": object(),
    }


def _reward(name: str):
    return get_reward(name, **FACTORY_ARGS.get(name, {})) if is_factory(name) else get_reward(name)


def _check(name: str, completions: list) -> None:
    kwargs = {"limits": QUICK} if name in SANDBOXED else {}
    out = _reward(name)(["prompt"] * len(completions), completions, **_columns(len(completions)), **kwargs)
    assert isinstance(out, list) and len(out) == len(completions), name
    for value in out:
        assert value is None or (isinstance(value, float) and math.isfinite(value)), (name, value)


@pytest.mark.parametrize("name", sorted(set(list_rewards()) - SANDBOXED))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completions=st.lists(COMPLETION, min_size=0, max_size=4))
def test_rewards_never_raise(name, completions):
    _check(name, completions)


@pytest.mark.parametrize("name", sorted(SANDBOXED))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completions=st.lists(COMPLETION, min_size=1, max_size=3))
def test_sandboxed_rewards_never_raise(name, completions):
    _check(name, completions)


@pytest.mark.parametrize("name", sorted(list_rewards()))
def test_rewards_survive_nasty_inputs(name):
    _check(name, NASTY)
