"""``unmask bench rollout``: tokens/s and forward passes of each decoding mode, written as JSON.

Setting (d1's scaled down to run in minutes on 2 CPU cores): a LLaDA-shaped model of about 20M
parameters, prompt 64, completion 128, block 32, 64 steps, batch 4, greedy. Rows:

(a) ``plain``: the reference loop — the whole sequence every step, per-row top-k, nothing recorded
    (LLaDA's ``generate.py``, reproduced here as the baseline);
(b) ``exact``: our sampler, no cache, recording the trajectory;
(c) ``prefix`` cache, (d) ``dual`` cache, (e) ``dual`` cache + confidence threshold 0.9,
(f) ``early_commit`` (Prophet);

each with the fraction of completion tokens equal to exact mode's. Caches, thresholds and early commit
only matter on a confident model, so every row is measured on each model given: the random-weight one
(speed) and, when passed, a trained one (NFE and agreement). Recording overhead is measured by running
exact mode with and without the recorder's bookkeeping, alternately, best of ``repeats`` (at least 2) each.
"""
from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

import torch

from . import sampling
from .adapter import ModelAdapter, load_model
from .sampler_config import SamplerConfig
from .sampling import sample
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
    repeats: int = 1

    @classmethod
    def quick(cls) -> "BenchSetting":
        """A tiny setting for tests of the benchmark itself."""
        return cls(prompt_length=8, completion_length=16, block_length=8, steps=8, batch=2, d_model=64,
                   n_layers=2, mlp_hidden_size=176)


MODES = {
    "plain": {},
    "exact": {},
    "prefix": {"cache": "prefix"},
    "dual": {"cache": "dual"},
    "dual+threshold0.9": {"cache": "dual", "threshold": 0.9},
    "early_commit": {"early_commit": True},
}


@torch.no_grad()
def plain_loop(adapter: ModelAdapter, prompt: torch.Tensor, s: BenchSetting) -> torch.Tensor:
    """The reference sampler's loop as published (LLaDA ``generate.py``, greedy, low confidence)."""
    mask_id = adapter.mask_id
    x = torch.cat([prompt, prompt.new_full((prompt.shape[0], s.completion_length), mask_id)], 1)
    blocks = s.completion_length // s.block_length
    steps = s.steps // blocks
    for b in range(blocks):
        lo = prompt.shape[1] + b * s.block_length
        hi = lo + s.block_length
        counts = llada_commit_counts((x[:, lo:hi] == mask_id).sum(1), steps)
        for i in range(steps):
            masked = x == mask_id
            logits = adapter.logits(x)
            x0 = logits.argmax(-1)
            p = torch.softmax(logits.float(), -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            p[:, hi:] = float("-inf")
            conf = torch.where(masked, p, float("-inf"))
            for j in range(x.shape[0]):
                chosen = conf[j].topk(int(counts[j, i])).indices
                x[j, chosen] = x0[j, chosen]
    return x[:, prompt.shape[1]:]


@contextmanager
def recording_off():
    """Switch off the trajectory bookkeeping (for measuring its cost only)."""
    with mock.patch.object(sampling._Recorder, "commit", lambda *a, **k: None), \
            mock.patch.object(sampling, "committed_logp", lambda policy, x0, commit, t: None):
        yield


def _time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def bench_model(adapter: ModelAdapter, label: str, s: BenchSetting, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, 256, (s.batch, s.prompt_length), generator=gen)
    base = SamplerConfig(max_completion_length=s.completion_length, diffusion_steps=s.steps,
                         block_length=s.block_length, temperature=0.0, remasking="low_confidence",
                         schedule="llada", stop_at_eos=False)
    rows, exact_tokens = [], None
    tokens = s.batch * s.completion_length
    for mode, extra in MODES.items():
        if mode == "plain":
            completion, seconds = _time(lambda: plain_loop(adapter, prompt, s), s.repeats)
            nfe = s.steps
        else:
            traj, seconds = _time(lambda: sample(adapter, prompt, config=replace(base, **extra)), s.repeats)
            completion, nfe = traj.completion_ids, traj.nfe
        if mode == "exact":
            exact_tokens = completion
        rows.append({"model": label, "mode": mode, "nfe": nfe, "seconds": round(seconds, 3),
                     "tokens_per_second": round(tokens / seconds, 1), "completion": completion})
    plain = rows[0]
    for r in rows:
        r["agreement_with_exact"] = round(float((r.pop("completion") == exact_tokens).float().mean()), 4)
        r["speedup_vs_plain"] = round(r["tokens_per_second"] / plain["tokens_per_second"], 2)
    # recording on and off alternate, best of `repeats` each, so a change in machine load hits both alike
    loud = quiet = float("inf")
    for _ in range(max(s.repeats, 2)):
        _, seconds = _time(lambda: sample(adapter, prompt, config=base), 1)
        loud = min(loud, seconds)
        with recording_off():
            quiet_traj, seconds = _time(lambda: sample(adapter, prompt, config=base), 1)
        quiet = min(quiet, seconds)
    rows.append({"model": label, "mode": "exact, recording off", "nfe": s.steps, "seconds": round(quiet, 3),
                 "tokens_per_second": round(tokens / quiet, 1),
                 "agreement_with_exact": round(float((quiet_traj.completion_ids == exact_tokens).float().mean()), 4),
                 "recording_overhead": round((loud - quiet) / loud, 4)})
    return rows


def run_rollout_bench(out: Path, trained: str | None = None, setting: BenchSetting | None = None,
                      threads: int | None = None) -> dict:
    s = setting or BenchSetting()
    if threads:
        torch.set_num_threads(threads)
    models = [("random", make_tiny("llada", seed=0, d_model=s.d_model, n_layers=s.n_layers, n_heads=8 if s.d_model >= 256 else 4,
                                   mlp_hidden_size=s.mlp_hidden_size))]
    if trained:
        models.append((f"trained ({trained})", load_model(trained, device="cpu")))
    rows = []
    for label, adapter in models:
        n = adapter.model.num_parameters()
        rows += bench_model(adapter, f"{label}, {n / 1e6:.1f}M params", s)
    report = {"benchmark": "rollout", "setting": s.__dict__, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.machine(), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict) -> str:
    lines = [f"{'model':<42} {'mode':<22} {'NFE':>5} {'s':>8} {'tok/s':>8} {'×plain':>7} {'agree':>6}"]
    for r in report["rows"]:
        extra = f"  recording overhead {100 * r['recording_overhead']:.1f}%" if "recording_overhead" in r else ""
        lines.append(f"{r['model'][:42]:<42} {r['mode']:<22} {r['nfe']:>5} {r['seconds']:>8.2f} "
                     f"{r['tokens_per_second']:>8.1f} {r.get('speedup_vs_plain', ''):>7} "
                     f"{r.get('agreement_with_exact', ''):>6}{extra}")
    return "\n".join(lines)
