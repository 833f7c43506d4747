"""``unmask eval --backend openai``'s generator and flags, with the client replaced by a recorder (the real server is
the slow end-to-end test's): requests are prompt-major with samples consecutive, each its own seed, the template's
stop strings and the settings sent, the server's token counts kept; bad flags fail before anything loads."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from unmask.eval.openai_backend import ServerSettings, openai_generator
from unmask.rl import cli


class RecordingClient:
    """What ``openai.OpenAI`` offers the generator (``chat.completions.create``), answering from the request."""

    def __init__(self):
        self.requests = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **request):
        self.requests.append(request)
        text = f"{request['messages'][-1]['content']}|{request['seed']}"
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=text))],
                               usage=SimpleNamespace(completion_tokens=len(text)))


def test_requests_are_prompt_major_with_one_seed_per_sample():
    settings = ServerSettings(base_url="http://127.0.0.1:1/v1", model="tiny", max_tokens=32, temperature=0.7,
                              stop=["\n\n"], concurrency=3)
    api = RecordingClient()
    prompts = [[{"role": "user", "content": q}] for q in ("a", "b")]
    gens = openai_generator(settings, api)(prompts, 2, 10)
    assert [g.text for g in gens] == ["a|10", "a|11", "b|10", "b|11"]
    assert [g.tokens for g in gens] == [4, 4, 4, 4] and all(g.nfe == 4.0 for g in gens)
    assert gens[0].prompt == "user: a"
    for r in api.requests:
        assert (r["model"], r["max_tokens"], r["temperature"], r["stop"], r["n"]) == ("tiny", 32, 0.7, ["\n\n"], 1)
    assert "api_key" not in settings.as_dict()


@pytest.mark.parametrize("flags, message", [
    ([], "--backend openai needs --base-url"),
    (["--base-url", "localhost:8000"], "--backend openai needs --base-url"),
    (["--base-url", "http://127.0.0.1:8000/v1", "--adapter", "x"], "--adapter and --tokenizer apply to a model"),
    (["--base-url", "http://127.0.0.1:8000/v1", "--concurrency", "0"], "--concurrency must be >= 1"),
])
def test_bad_server_flags_fail_before_any_data_loads(tmp_path, capsys, flags, message):
    assert cli.main(["eval", "--backend", "openai", "--model", "tiny", "--benchmark", "gsm8k", "--data-files",
                     str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err  # named before the (missing) data file is read
