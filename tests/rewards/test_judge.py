"""The LLM-judge reward: the judge sees the prompt, the completion and the row's columns; its answer is parsed and
scaled; a timeout, a server error or an unparseable answer is None, never an exception (with the real ``openai``
client against a local HTTP server that answers too late or with 500s); answers are cached on disk and logged."""
from __future__ import annotations

import http.server
import threading
import time
from types import SimpleNamespace

import pytest

from unmask.rewards import get_reward, weighted_rewards
from unmask.rewards.judge import JudgeCache, llm_judge

TEMPLATE = "Q: {prompt}\nA: {completion}\nGold: {answer}\nScore:"


class Judge:
    """An ``openai.OpenAI``-shaped client: answers each request with ``reply(prompt)`` and records it."""

    def __init__(self, reply):
        self.reply, self.prompts = reply, []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, messages, **request):
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=self.reply(prompt)))])


def conversation(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_the_judge_sees_prompt_completion_and_columns_and_its_answer_is_parsed_and_scaled():
    client = Judge(lambda p: "8 out of 10" if "Gold: 4" in p else "I refuse")
    reward = llm_judge("http://unused/v1", "judge", TEMPLATE, scale=0.1, client=client)
    scores = reward(prompts=[conversation("2+2?"), conversation("3+3?")],
                    completions=[[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "7"}]],
                    answer=["4", "6"])
    assert scores == [pytest.approx(0.8), None]  # the second answer has no number: no judgment
    assert client.prompts[0] == "Q: 2+2?\nA: 4\nGold: 4\nScore:"
    assert reward.last_answers == ["8 out of 10", "I refuse"]


def test_missing_columns_and_failing_parsers_give_none():
    reward = llm_judge("http://unused/v1", "judge", TEMPLATE, client=Judge(lambda p: "5"),
                       parse=lambda answer: 1 / 0)
    assert reward(prompts=["q"], completions=["a"], answer=["1"]) == [None]  # the parser raised
    reward = llm_judge("http://unused/v1", "judge", TEMPLATE, client=Judge(lambda p: "5"))
    assert reward(prompts=["q"], completions=["a"]) == [None]  # {answer} is not a column here
    with pytest.raises(ValueError, match="must contain {completion}"):
        llm_judge("http://unused/v1", "judge", "Score {prompt}", client=Judge(lambda p: "5"))


def test_answers_are_cached_on_disk_and_not_asked_again(tmp_path):
    first = Judge(lambda p: "7")
    reward = llm_judge("http://unused/v1", "judge", TEMPLATE, cache_dir=str(tmp_path), client=first)
    assert reward(prompts=["q", "q"], completions=["a", "b"], answer=["1", "1"]) == [7.0, 7.0]
    again = Judge(lambda p: "0")
    reward = llm_judge("http://unused/v1", "judge", TEMPLATE, cache_dir=str(tmp_path), client=again)
    assert reward(prompts=["q", "q", "q"], completions=["a", "b", "c"], answer=["1", "1", "1"]) == [7.0, 7.0, 0.0]
    assert len(again.prompts) == 1  # only the new completion was asked
    other_model = llm_judge("http://unused/v1", "other", TEMPLATE, cache_dir=str(tmp_path), client=Judge(lambda p: "3"))
    assert other_model(prompts=["q"], completions=["a"], answer=["1"]) == [3.0]  # keyed by model too
    assert len(JudgeCache(tmp_path).answers) == 4


def test_the_raw_answers_travel_with_the_rewards_for_logging():
    reward = llm_judge("http://unused/v1", "judge", TEMPLATE, client=Judge(lambda p: "9 - correct"))
    breakdown = weighted_rewards([reward], ["q"], ["a"], answer=["1"])
    assert breakdown.total == [9.0] and breakdown.notes == {"llm_judge": ["9 - correct"]}


class SlowOrBroken(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.mode == "slow":
            time.sleep(1.5)
        self.send_response(500 if self.server.mode == "broken" else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "no"}' if self.server.mode == "broken" else b"{}")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("mode", ["slow", "broken"])
def test_a_judge_that_times_out_or_fails_gives_none_not_an_exception(mode):
    pytest.importorskip("openai")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowOrBroken)
    server.mode = mode
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reward = get_reward("llm_judge", base_url=f"http://127.0.0.1:{server.server_port}/v1", model="judge",
                            prompt_template=TEMPLATE, timeout=0.3, max_retries=1)  # the real openai client
        assert reward(prompts=["q", "q"], completions=["a", "b"], answer=["1", "2"]) == [None, None]
    finally:
        server.shutdown()
