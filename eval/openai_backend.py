"""Generation through an OpenAI-compatible server — ``vllm serve`` (an autoregressive baseline such as
Qwen2.5-7B-Instruct, or DiffusionGemma), or any other — as ``unmask eval --backend openai`` uses it: the same
benchmarks, templates, stop strings, graders, JSONL and summaries as a dLLM run; only the generator differs.

Each (prompt, sample) is one chat-completions request (``n`` = 1, ``seed`` = the batch seed + the sample index, so a
resumed run asks for the same draws), sent ``concurrency`` at a time. The ``openai`` client retries connection
errors, timeouts, 408/409/429 and 5xx answers ``max_retries`` times with exponential backoff, each request bounded
by ``timeout`` seconds; a request that still fails stops the run, and ``run_benchmark``'s JSONL keeps every batch
finished before it, so rerunning the command resumes. The template's stop strings are sent as ``stop`` (the server
stops there; the grader cuts at them again). ``tokens`` is the server's ``completion_tokens``; ``nfe`` counts one
forward pass per generated token, as an autoregressive model decodes.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from .runner import Generation, Generator


@dataclass
class ServerSettings:
    """Where the server is and how it samples (``unmask eval --backend openai`` flags)."""

    base_url: str                 # e.g. http://127.0.0.1:8000/v1
    model: str                    # the served model's name
    max_tokens: int = 256
    temperature: float = 0.0      # 0: greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    concurrency: int = 8
    timeout: float = 120.0        # seconds per request attempt
    max_retries: int = 4
    api_key: str = "EMPTY"        # vLLM accepts any key unless started with --api-key

    def as_dict(self) -> dict:
        """The settings written with every sample (the key left out)."""
        return {k: v for k, v in asdict(self).items() if k != "api_key"}


def client(settings: ServerSettings):
    try:
        from openai import OpenAI
    except ImportError as e:
        raise ImportError("unmask eval --backend openai needs the openai client: pip install 'unmask[openai]'") from e
    return OpenAI(base_url=settings.base_url, api_key=settings.api_key, timeout=settings.timeout,
                  max_retries=settings.max_retries)


def openai_generator(settings: ServerSettings, api=None) -> Generator:
    """A ``run_benchmark`` generator over the server (``api``: an ``openai.OpenAI`` client; default: one from
    ``settings``)."""
    api = api or client(settings)

    def one(messages: list[dict], seed: int) -> Generation:
        start = time.perf_counter()
        answer = api.chat.completions.create(
            model=settings.model, messages=messages, max_tokens=settings.max_tokens, n=1, seed=seed,
            temperature=settings.temperature, top_p=settings.top_p, stop=settings.stop or None)
        text = answer.choices[0].message.content or ""
        tokens = answer.usage.completion_tokens if answer.usage is not None else 0
        return Generation(render(messages), text, tokens, float(tokens), time.perf_counter() - start)

    def generate(prompts: list, samples: int, seed: int) -> list[Generation]:
        jobs = [(p, seed + k) for p in prompts for k in range(samples)]  # prompt-major, samples consecutive
        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            return list(pool.map(lambda job: one(*job), jobs))
    return generate


def render(messages: list[dict]) -> str:
    """The prompt as logged with each sample (the server applies the model's own chat template)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
