"""``unmask bench step``: one full diffu-GRPO step, timed phase by phase, with the update's model FLOP utilisation.

A random LLaDA-shaped model with LoRA (the reference: the adapters disabled) runs d1's recipe sizes — 2 prompts × 6
completions, prompt 256, completion 256, block 32, 128 steps, micro-batch 6, LoRA r 128 / α 64, β 0.04, prompt
masking 0.3 — for ``--shape llada-8b`` (bf16 on one GPU, gradient checkpointing as d1), or scaled down to run on a
CPU. One untimed step warms up first. Phases of the next (each synchronised with the device):

    rollout   the engine's sampler, recording the trajectory
    reward    a reward over the completion ids (the share of even token ids: nothing to parse in random text)
    score     the gradient-free log-probs before the first update: the old policy's and the reference's
    update    ``num_iterations`` optimizer steps (forward + backward + AdamW)

FLOPs are counted as in the PaLM paper's MFU: 6 · params · tokens for a forward + backward, 2 · params · tokens for
a gradient-free pass, over every position of every scored sequence (prompt + completion); checkpointing's recompute
is not counted. MFU = the update's FLOPs / its seconds / the device's peak (``--peak-tflops``, or the dense bf16 peak
of a known GPU); none on a CPU unless given.
"""
from __future__ import annotations

import json
import platform
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from unmask.rl.algorithms.advantages import compute_advantages
from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.config import recipe_from_dict
from unmask.rl.training.reference import AdapterDisabledReference
from unmask.rl.training.update import PolicyUpdate
from unmask.rollouts.adapter import resolve_dtype
from unmask.rollouts.bench import BenchSetting
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.tiny import make_tiny

# dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a substring of torch.cuda.get_device_name()
PEAK_TFLOPS = {"H200": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0}


@dataclass
class StepSetting:
    model: BenchSetting
    prompts: int = 2
    num_generations: int = 6
    micro_batch: int = 6
    lora_r: int = 128
    lora_alpha: int = 64
    num_iterations: int = 2
    gradient_checkpointing: bool = False

    @classmethod
    def cpu(cls) -> "StepSetting":
        return cls(BenchSetting(), lora_r=16, lora_alpha=8)

    @classmethod
    def quick(cls) -> "StepSetting":
        return cls(BenchSetting.quick(), prompts=1, num_generations=2, micro_batch=2, lora_r=4, lora_alpha=8)

    @classmethod
    def llada_8b(cls) -> "StepSetting":
        return cls(BenchSetting.llada_8b(), gradient_checkpointing=True)


def _policy(s: StepSetting):
    from peft import LoraConfig, get_peft_model
    m = s.model
    mask = m.vocab_size - 128 if m.vocab_size > 1024 else m.vocab_size - 12
    adapter = make_tiny("llada", seed=0, d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads,
                        mlp_hidden_size=m.mlp_hidden_size, vocab_size=m.vocab_size, mask_token_id=mask,
                        eos_token_id=mask + 1, device=m.device, dtype=resolve_dtype(m.dtype))
    params = adapter.model.num_parameters()
    adapter.model.gradient_checkpointing = s.gradient_checkpointing
    peft_model = get_peft_model(adapter.model, LoraConfig(
        r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0, target_modules=adapter.lora_target_modules,
        exclude_modules=adapter.model.output_head_names()))
    return adapter, peft_model, params


class _Clock:
    """Seconds per phase, the device synchronised at each boundary."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, {}

    def __call__(self, name: str, fn, *args, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return out


def run_step_bench(out: Path, s: StepSetting, peak_tflops: float | None = None, threads: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    m = s.model
    adapter, peft_model, params = _policy(s)
    algo = recipe_from_dict({"algorithm": {"name": "diffu_grpo", "num_iterations": s.num_iterations}}).algorithm
    sampler = SamplerConfig(max_completion_length=m.completion_length, diffusion_steps=m.steps,
                            block_length=m.block_length, temperature=0.9, stop_at_eos=False)
    engine = RolloutEngine(adapter, sampler, chat=False)
    update = PolicyUpdate(adapter, algo, micro_batch_size=s.micro_batch,
                          reference=AdapterDisabledReference(adapter, peft_model))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-6)
    clock = _Clock(adapter.device)
    update.plan = _timed(clock, "score", update.plan)
    prompts = torch.randint(0, 256, (s.prompts, m.prompt_length), generator=torch.Generator().manual_seed(0))

    def step():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    def one_step():
        adapter.model.eval()
        with torch.autocast(adapter.device.type, dtype=torch.bfloat16, enabled=m.dtype == "bfloat16"):
            traj = clock("rollout", engine.rollout, prompts.tolist(), num_generations=s.num_generations, seed=0)
            rewards = clock("reward", lambda: (traj.completion_ids % 2 == 0).float().mean(1).cpu())
            batch = RolloutBatch(traj, rewards, s.num_generations, mask_seeds=list(range(s.num_iterations)),
                                 eos_id=adapter.eos_id)
            compute_advantages(batch, algo)
            return traj, clock("update+score", update.run, batch, step)
    one_step()  # warm-up (allocator, kernels, lazy imports): not timed
    clock.seconds.clear()
    if adapter.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    traj, total = one_step()
    seconds = clock.seconds
    seconds["update"] = seconds.pop("update+score") - seconds["score"]
    rows, length = traj.batch_size, traj.prompt_ids.shape[1] + traj.completion_length
    update_flops = 6 * params * rows * length * s.num_iterations            # one unit per row (one_step)
    passes = int(algo.updates_per_batch > 1) + int(algo.reference_beta > 0)    # old and reference, per iteration
    score_flops = 2 * params * rows * length * passes * s.num_iterations
    gpu = torch.cuda.get_device_name() if adapter.device.type == "cuda" else None
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    achieved = update_flops / seconds["update"] / 1e12
    report = {
        "benchmark": "step", "setting": {**asdict(s), "model": asdict(m)}, "params": params,
        "completions": rows, "sequence_length": length, "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "step_seconds": round(sum(seconds.values()), 3),
        "rollout_tokens_per_second": round(rows * traj.completion_length / seconds["rollout"], 1),
        "update_tflops": round(achieved, 3),
        "score_tflops": round(score_flops / seconds["score"] / 1e12, 3) if score_flops else None,
        "peak_tflops": peak, "update_mfu": round(achieved / peak, 4) if peak else None,
        "peak_memory_mib": round((torch.cuda.max_memory_allocated() if gpu else _peak_rss()) / 2 ** 20, 1),
        "loss": total.get("loss"), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(), "gpu": gpu,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _timed(clock: _Clock, name: str, fn):
    def wrapper(*args, **kwargs):
        return clock(name, fn, *args, **kwargs)
    return wrapper


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def format_step(report: dict) -> str:
    s = report["seconds"]
    lines = [f"{report['params'] / 1e6:.1f}M params, {report['completions']} completions × {report['sequence_length']} "
             f"tokens, {report['gpu'] or 'CPU'}",
             f"{'phase':<10} {'seconds':>9}"]
    lines += [f"{k:<10} {v:>9.3f}" for k, v in s.items()]
    mfu = report["update_mfu"]
    lines.append(f"{'step':<10} {report['step_seconds']:>9.3f}   update {report['update_tflops']} TFLOP/s"
                 f"{f', MFU {100 * mfu:.1f}%' if mfu is not None else ''}; peak memory {report['peak_memory_mib']} MiB")
    return "\n".join(lines)
