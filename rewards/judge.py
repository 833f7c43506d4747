"""``llm_judge``: a reward asked of a judge model behind an OpenAI-compatible server (``vllm serve JUDGE``).

    rewards:
      - name: llm_judge
        args: {base_url: "http://127.0.0.1:8001/v1", model: Qwen/Qwen2.5-7B-Instruct,
               prompt_template: "Question: {prompt}\\nAnswer: {completion}\\nReference: {answer}\\nScore 0-10:",
               scale: 0.1}

Each completion becomes one chat request: ``prompt_template`` formatted with ``prompt`` (the prompt's text),
``completion`` (the completion's text) and the row's other columns (``{answer}``); requests go ``concurrency`` at
a time, greedy by default. The judge's answer is ``parse``d (default: the first number in it) and multiplied by
``scale``. A judgment that times out, fails after the client's retries, or does not parse is ``None`` (the reward
does not apply), never an exception: the training step goes on. Answers are cached on disk (``cache_dir``, one
JSON line per judgment, keyed by a hash of (model, judge prompt), which holds the prompt and the completion), so a
resumed or repeated run asks again only what it has not asked; the raw answers of the last call are kept in the
reward's ``last_answers`` and the trainer logs them with the samples.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from .contract import completion_text, completion_texts
from .registry import register_reward

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def first_number(answer: str) -> float | None:
    """The first number in the judge's answer, else None."""
    match = NUMBER.search(answer)
    return float(match.group()) if match else None


class JudgeCache:
    """Judgments on disk: one JSON line ``{"key", "answer"}`` per judgment, appended as they arrive."""

    def __init__(self, directory: str | Path | None):
        self.path = None if directory is None else Path(directory) / "judgments.jsonl"
        self.answers: dict[str, str] = {}
        self.lock = threading.Lock()
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: asked again
                    continue
                self.answers[record["key"]] = record["answer"]

    @staticmethod
    def key(model: str, prompt: str) -> str:
        return hashlib.sha256(json.dumps([model, prompt]).encode()).hexdigest()

    def put(self, key: str, answer: str) -> None:
        with self.lock:
            self.answers[key] = answer
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "answer": answer}) + "\n")


@register_reward("llm_judge", factory=True)
def llm_judge(base_url: str, model: str, prompt_template: str, parse: Callable[[str], float | None] | None = None,
              scale: float = 1.0, system_prompt: str | None = None, max_tokens: int = 64,
              temperature: float = 0.0, concurrency: int = 8, timeout: float = 60.0, max_retries: int = 2,
              cache_dir: str | None = None, api_key: str = "EMPTY", client=None):
    """Build the judge reward of the module docstring (``client``: an ``openai.OpenAI``-like object, default one
    for ``base_url``)."""
    if "{completion}" not in prompt_template:
        raise ValueError("prompt_template must contain {completion} (and usually {prompt}): the judge has to see "
                         "what it judges")
    if concurrency < 1 or not timeout > 0:
        raise ValueError("concurrency must be >= 1 and timeout > 0")
    parse = parse or first_number
    cache = JudgeCache(cache_dir)
    if client is None:
        try:
            from openai import OpenAI
        except ImportError as e:
            raise ImportError("the llm_judge reward needs the openai client: pip install 'unmask[openai]'") from e
        client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    def ask(prompt: str) -> str | None:
        key = JudgeCache.key(model, prompt)
        if key in cache.answers:
            return cache.answers[key]
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": prompt}]
        try:
            answer = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                    temperature=temperature, n=1).choices[0].message.content or ""
        except Exception:  # timeouts, connection and server errors after the client's retries: no judgment
            return None
        cache.put(key, answer)
        return answer

    def judge(prompts=None, completions=None, **columns) -> list[float | None]:
        texts = completion_texts(completions)
        asks = []
        for i, text in enumerate(texts):
            row = {k: v[i] for k, v in columns.items() if isinstance(v, (list, tuple)) and i < len(v)}
            prompt = completion_text(prompts[i]) if prompts is not None and i < len(prompts) else ""
            try:
                asks.append(prompt_template.format(**{**row, "prompt": prompt, "completion": text}))
            except (KeyError, IndexError, ValueError):  # a column the template names is missing: no judgment
                asks.append(None)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            answers = list(pool.map(lambda p: None if p is None else ask(p), asks))
        judge.last_answers = answers
        scores = []
        for answer in answers:
            try:
                value = None if answer is None else parse(answer)
            except Exception:
                value = None
            scores.append(None if value is None else float(value) * scale)
        return scores

    judge.last_answers = []
    judge.__name__ = "llm_judge"
    return judge
