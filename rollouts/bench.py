"""``unmask bench rollout``: tokens/s and forward passes of each decoding mode, written as JSON.

Setting (d1's scaled down to run in minutes on 2 CPU cores): a LLaDA-shaped model of about 20M
parameters, prompt 64, completion 128, block 32, 64 steps, batch 4, greedy. Rows:

(a) ``plain``: the reference loop — the whole sequence every step, per-row top-k, nothing recorded
    (LLaDA's ``generate.py``, reproduced here as the baseline);
(b) ``exact``: our sampler, no cache, recording the trajectory;
(c) ``prefix`` cache, (d) ``dual`` cache, (e) confidence threshold 0.9 without a cache (the
threshold's own effect) and ``dual`` cache + threshold 0.9 (Fast-dLLM's combination), (f)
``early_commit`` (Prophet);

each with the fraction of completion tokens equal to exact mode's. Caches, thresholds and early commit
only matter on a confident model, so every row is measured on each model given: the random-weight one
on random prompts (speed), and a trained one on the prompts of its task (NFE and agreement), where
each row also reports ``task_exact_match``: the fraction of completions equal to the gold one.
Recording overhead is measured by running exact mode with and without the recorder's bookkeeping,
alternately, best of ``repeats`` (at least 2) each.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .adapter import ModelAdapter, load_model, resolve_dtype
from .sampler_config import SamplerConfig
from .sampling import generate, sample
from .schedules import llada_commit_counts
from .tiny import make_tiny


@dataclass
class BenchSetting:
    prompt_length: int = 64
    completion_length: int = 128
    block_length: int = 32
    steps: int = 64
    batch: int = 4
    d_model: int = 512
    n_layers: int = 6
    mlp_hidden_size: int = 1376
    n_heads: int = 8
    vocab_size: int = 512
    repeats: int = 1
    device: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def quick(cls) -> "BenchSetting":
        """A tiny setting for tests of the benchmark itself."""
        return cls(prompt_length=8, completion_length=16, block_length=8, steps=8, batch=2, d_model=64,
                   n_layers=2, mlp_hidden_size=176, n_heads=4)

    @classmethod
    def llada_8b(cls) -> "BenchSetting":
        """d1's own setting on a random model of LLaDA-8B's shape (8.0B parameters, bf16, one GPU):
        prompt 256, completion 256, block 32, 128 steps, batch 4."""
        return cls(prompt_length=256, completion_length=256, block_length=32, steps=128, batch=4, d_model=4096,
                   n_layers=32, n_heads=32, mlp_hidden_size=12288, vocab_size=126464, device="cuda",
                   dtype="bfloat16")


MODES = {
    "plain": {},
    "exact": {},
    "prefix": {"cache": "prefix"},
    "dual": {"cache": "dual"},
    "threshold0.9": {"threshold": 0.9},
    "dual+threshold0.9": {"cache": "dual", "threshold": 0.9},
    "early_commit": {"early_commit": True},
}


@dataclass
class BenchPrompts:
    """The prompts a model is measured on: left-padded ids and mask, and (for a task) gold completions."""
    ids: torch.Tensor
    mask: torch.Tensor
    gold: list[str] | None = None

    @classmethod
    def random(cls, s: BenchSetting, seed: int = 0) -> "BenchPrompts":
        ids = torch.randint(0, 256, (s.batch, s.prompt_length), generator=torch.Generator().manual_seed(seed))
        ids = ids.to(s.device)
        return cls(ids, torch.ones_like(ids))

    @classmethod
    def task(cls, adapter: ModelAdapter, pairs: list[tuple[str, str]]) -> "BenchPrompts":
        """(prompt, gold completion) pairs, prompts rendered and encoded as the engine does."""
        ids, mask = adapter.encode([p for p, _ in pairs])
        return cls(ids, mask, [g for _, g in pairs])


@torch.no_grad()
def plain_loop(adapter: ModelAdapter, prompt: torch.Tensor, s: BenchSetting,
               prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference sampler's loop as published (LLaDA ``generate.py``, greedy, low confidence)."""
    mask_id = adapter.mask_id
    x = torch.cat([prompt, prompt.new_full((prompt.shape[0], s.completion_length), mask_id)], 1)
    attention = None if prompt_mask is None else torch.cat([prompt_mask, torch.ones_like(x[:, prompt.shape[1]:])], 1)
    blocks = s.completion_length // s.block_length
    steps = s.steps // blocks
    for b in range(blocks):
        lo = prompt.shape[1] + b * s.block_length
        hi = lo + s.block_length
        counts = llada_commit_counts((x[:, lo:hi] == mask_id).sum(1), steps)
        for i in range(steps):
            masked = x == mask_id
            logits = adapter.logits(x, attention)
            x0 = logits.argmax(-1)
            p = torch.softmax(logits.float(), -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            p[:, hi:] = float("-inf")
            conf = torch.where(masked, p, float("-inf"))
            for j in range(x.shape[0]):
                chosen = conf[j].topk(int(counts[j, i])).indices
                x[j, chosen] = x0[j, chosen]
    return x[:, prompt.shape[1]:]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - start)
    return out, best


def bench_model(adapter: ModelAdapter, label: str, s: BenchSetting, prompts: BenchPrompts | None = None) -> list[dict]:
    prompts = prompts or BenchPrompts.random(s)
    prompt, mask = prompts.ids, prompts.mask
    base = SamplerConfig(max_completion_length=s.completion_length, diffusion_steps=s.steps,
                         block_length=s.block_length, temperature=0.0, remasking="low_confidence",
                         schedule="llada", stop_at_eos=False)
    rows, exact_tokens = [], None
    tokens = prompt.shape[0] * s.completion_length
    shape = {"batch": prompt.shape[0], "prompt_length": prompt.shape[1]}
    for mode, extra in MODES.items():
        if mode == "plain":
            completion, seconds = _time(lambda: plain_loop(adapter, prompt, s, mask), s.repeats)
            nfe = s.steps
        else:
            traj, seconds = _time(lambda: sample(adapter, prompt, mask, config=replace(base, **extra)), s.repeats)
            completion, nfe = traj.completion_ids, traj.nfe
        if mode == "exact":
            exact_tokens = completion
        rows.append({"model": label, "mode": mode, **shape, "nfe": nfe, "seconds": round(seconds, 3),
                     "tokens_per_second": round(tokens / seconds, 1), "completion": completion})
    plain = rows[0]
    for r in rows:
        completion = r.pop("completion")
        r["agreement_with_exact"] = round(float((completion == exact_tokens).float().mean()), 4)
        r["speedup_vs_plain"] = round(r["tokens_per_second"] / plain["tokens_per_second"], 2)
        if prompts.gold is not None:
            texts = [adapter.decode_completion(row) for row in completion]
            r["task_exact_match"] = round(sum(t == g for t, g in zip(texts, prompts.gold)) / len(texts), 4)
    # recording on and off alternate, best of `repeats` each, so a change in machine load hits both alike
    loud = quiet = float("inf")
    for _ in range(max(s.repeats, 2)):
        _, seconds = _time(lambda: sample(adapter, prompt, mask, config=base), 1)
        loud = min(loud, seconds)
        quiet_ids, seconds = _time(lambda: generate(adapter, prompt, mask, config=base, record=False), 1)
        quiet = min(quiet, seconds)
    quiet_tokens = quiet_ids[:, prompt.shape[1]:]
    rows.append({"model": label, "mode": "exact, recording off", **shape, "nfe": s.steps, "seconds": round(quiet, 3),
                 "tokens_per_second": round(tokens / quiet, 1),
                 "agreement_with_exact": round(float((quiet_tokens == exact_tokens).float().mean()), 4),
                 "recording_overhead": round((loud - quiet) / loud, 4)})
    return rows


def run_rollout_bench(out: Path, trained: str | None = None, setting: BenchSetting | None = None,
                      threads: int | None = None, task: list[tuple[str, str]] | None = None) -> dict:
    """Bench a random-weight model of ``setting``'s shape on random prompts and, if given, the
    ``trained`` checkpoint on ``task``'s (prompt, gold completion) pairs (random prompts without them)."""
    s = setting or BenchSetting()
    if threads:
        torch.set_num_threads(threads)
    mask = s.vocab_size - 128 if s.vocab_size > 1024 else 500  # LLaDA-8B: 126336 of 126464
    models = [("random", make_tiny("llada", seed=0, d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads,
                                   mlp_hidden_size=s.mlp_hidden_size, vocab_size=s.vocab_size, mask_token_id=mask,
                                   eos_token_id=mask + 1, device=s.device, dtype=resolve_dtype(s.dtype)), None)]
    if trained:
        adapter = load_model(trained, device=s.device)
        models.append((f"trained ({trained})", adapter, BenchPrompts.task(adapter, task) if task else None))
    rows = []
    for label, adapter, prompts in models:
        n = adapter.model.num_parameters()
        rows += bench_model(adapter, f"{label}, {n / 1e6:.2f}M params", s, prompts)
    report = {"benchmark": "rollout", "setting": s.__dict__, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.machine(),
              "gpu": torch.cuda.get_device_name() if s.device.startswith("cuda") else None, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict) -> str:
    lines = [f"{'model':<42} {'mode':<22} {'B×P':>6} {'NFE':>5} {'s':>8} {'tok/s':>8} {'×plain':>7} {'agree':>6} "
             f"{'task':>5}"]
    for r in report["rows"]:
        extra = f"  recording overhead {100 * r['recording_overhead']:.1f}%" if "recording_overhead" in r else ""
        lines.append(f"{r['model'][:42]:<42} {r['mode']:<22} {r['batch']:>3}×{r['prompt_length']:<2} {r['nfe']:>5} "
                     f"{r['seconds']:>8.2f} {r['tokens_per_second']:>8.1f} {r.get('speedup_vs_plain', ''):>7} "
                     f"{r.get('agreement_with_exact', ''):>6} {r.get('task_exact_match', ''):>5}{extra}")
    return "\n".join(lines)
