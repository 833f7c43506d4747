"""Masked-diffusion SFT (LLaDA's recipe): the loss every SFT run uses (``sft_loss``, also behind
``unmask sft``, ``rl/sft_trainer.py``), and a time-bounded helper that trains a small from-scratch LLaDA on
the bundled addition task (``train_demo_model``) to get a *trained, confident* model in minutes on a
CPU for ``unmask bench rollout --train-minutes`` (threshold decoding and early commit only pay off on
such a model). The demo's own SFT stage is the recipe ``recipes/demo/sft.yaml``.

Loss (LLaDA SFT; the masked-diffusion ELBO of ``likelihood-methods.md``): the prompt stays clean;
the completion, padded with EOS to a fixed length L (the padding is part of the target, so the
model learns where to stop), has each token replaced by the mask id independently with probability
t ~ U(eps, 1), one t per row; the loss is the cross-entropy on the masked positions weighted by
1/t, summed over the row, divided by L and averaged over rows:

    loss = mean_b  (1/L) Σ_i 1[masked_bi] · CE(logits_bi, y_bi) / t_b

Prompts: the user message rendered with the model's chat template — here the byte tokenizer's "raw"
template (the text only, ``"47+85="``), so every prompt has the same length — tokenised without
special tokens and left-padded with EOS. This is exactly what ``RolloutEngine`` (``chat=True``, the
default) and ``adapter.encode`` produce, and the tokenizer (with its template) is saved with the
checkpoint, so ``load_model(path)`` reproduces it (``tokenizer="bytes"`` would bring the "roles"
template back: leave it unset).

Sizes (``make_tiny("llada")``, byte tokenizer, vocab 512, mask 500, eos 501; AdamW, betas (0.9,
0.95), weight decay 0.1, linear warm-up then constant lr, gradient clipping at 1; the task is
``rl.synthetic`` with 2-digit operands):

| size  | d_model × layers, mlp | params | completion L | batch | lr    |
|-------|-----------------------|--------|--------------|-------|-------|
| tiny  | 32 × 2, 88            | 58K    | 40           | 8     | 3e-3  |
| demo  | 96 × 3, 256           | 0.43M  | 40           | 32    | 4e-3  |
| bench | 96 × 3, 256            | 0.43M  | 128 (= bench's) | 32 | 4e-3  |

("bench" is the demo model at the rollout benchmark's completion length: the 19.5M shape of
``BenchSetting`` reached 0% held-out accuracy after 5 CPU minutes; this one 36% after 4,000 steps.)

Deterministic given ``seed``: weights from ``make_tiny(seed)``, step s's batch from
``make_addition_dataset(seed=seed * 1_000_003 + s)``, masks from one seeded generator, and a
constant lr after warm-up, so a run stopped by ``minutes`` is a prefix of the ``steps`` run.

Measured on 2 CPU cores (torch on 2 threads, machine otherwise idle), held-out exact-match accuracy
of greedy decoding of the demo size: it first learns to copy the operands perfectly, then, after a
plateau whose length depends on the seed, the one-column sums. 200 questions: seed 0 63% at step
2,500; seed 1 3.5% at 2,500 and 20.5% at 5,000; seed 2 67% at 5,000 (5,000 steps take ~4.5 min).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from rollouts.adapter import ModelAdapter
from rollouts.engine import RolloutEngine
from rollouts.sampler_config import SamplerConfig
from rollouts.tiny import make_tiny

from .synthetic import SyntheticExample, check_answer, completion_bytes, make_addition_dataset

EPS = 1e-3  # t ~ U(EPS, 1), as LLaDA's forward_process


@dataclass(frozen=True)
class SftSize:
    model: dict = field(default_factory=dict)  # make_tiny("llada", **model)
    completion_length: int = 40
    width: int = 2  # operand digits of the task
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 50
    eval_every: int | None = None  # steps between held-out evaluations (always one at the end)
    eval_examples: int = 64  # held-out questions per evaluation


SIZES = {
    "tiny": SftSize(dict(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=88), batch_size=8, lr=3e-3, warmup=5,
                    eval_examples=8),
    "demo": SftSize(dict(d_model=96, n_layers=3, n_heads=4, mlp_hidden_size=256), batch_size=32, lr=4e-3, warmup=20,
                    eval_every=500),
}
SIZES["bench"] = replace(SIZES["demo"], completion_length=128)  # the demo model at the rollout bench's length


def encode_pairs(adapter: ModelAdapter, prompts: Sequence, completions: Sequence[str], completion_length: int,
                 truncate: bool = True, max_prompt_length: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompt ids, prompt mask) rendered with the chat template and left-padded as ``adapter.encode``
    does (the last ``max_prompt_length`` tokens when set), and completions [B, L] cut to L tokens
    (``truncate=False``: an error instead) and padded with EOS."""
    prompt_ids, prompt_mask = adapter.encode(list(prompts))
    if max_prompt_length is not None and prompt_ids.shape[1] > max_prompt_length:
        prompt_ids, prompt_mask = prompt_ids[:, -max_prompt_length:], prompt_mask[:, -max_prompt_length:]
    rows = []
    for text in completions:
        ids = adapter.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > completion_length and not truncate:
            raise ValueError(f"completion of {len(ids)} tokens does not fit completion_length {completion_length}")
        ids = ids[:completion_length]
        rows.append(ids + [adapter.eos_id] * (completion_length - len(ids)))
    return prompt_ids, prompt_mask, torch.tensor(rows, dtype=torch.long, device=prompt_ids.device)


def encode_examples(adapter: ModelAdapter, examples: Sequence[SyntheticExample],
                    completion_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`encode_pairs` of bundled-task examples (a completion that does not fit is an error)."""
    return encode_pairs(adapter, [ex.prompt for ex in examples], [ex.completion for ex in examples],
                        completion_length, truncate=False)


def sft_loss(adapter: ModelAdapter, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
             completion_ids: torch.Tensor, generator: torch.Generator | None = None,
             eps: float = EPS) -> torch.Tensor:
    """LLaDA's SFT loss for one batch (see the module docstring); t and the masks come from ``generator``."""
    batch, length = completion_ids.shape
    device = completion_ids.device
    t = eps + (1 - eps) * torch.rand(batch, generator=generator, device=device)
    masked = torch.rand(batch, length, generator=generator, device=device) < t[:, None]
    noisy = completion_ids.masked_fill(masked, adapter.mask_id)
    ids = torch.cat([prompt_ids, noisy], dim=1)
    attention = torch.cat([prompt_mask, torch.ones_like(noisy)], dim=1)
    logits = adapter.logits(ids, attention)[:, prompt_ids.shape[1]:].float()
    ce = F.cross_entropy(logits.transpose(1, 2), completion_ids, reduction="none")  # [B, L]
    return ((ce * masked / t[:, None]).sum(1) / length).mean()


def task_pairs(checkpoint: str | Path, n: int, completion_length: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` held-out (prompt, gold completion) pairs of the task a :func:`train_demo_model` checkpoint
    learnt (operand width from its ``sft.json``)."""
    info = Path(checkpoint) / "sft.json"
    if not info.is_file():
        raise FileNotFoundError(f"{info} not found: the trained model must come from train_demo_model "
                                f"(unmask bench rollout --train-minutes M), which records its task there")
    width = json.loads(info.read_text()).get("width", 2)
    if completion_bytes(width) > completion_length:
        raise ValueError(f"{checkpoint} learnt {width}-digit addition, whose completions ({completion_bytes(width)} "
                         f"tokens) do not fit completion length {completion_length}")
    return [(ex.prompt, ex.completion) for ex in make_addition_dataset(n, seed=seed, width=width, split="held_out")]


@torch.no_grad()
def held_out_accuracy(adapter: ModelAdapter, examples: Sequence[SyntheticExample], completion_length: int,
                      steps: int | None = None, batch_size: int = 32, config: SamplerConfig | None = None) -> float:
    """Exact-match accuracy of greedy low-confidence decoding (blocks of 32 when L is a multiple of 32,
    else one block; L/2 steps unless ``steps``), or of ``config`` when given."""
    config = config or SamplerConfig(
        max_completion_length=completion_length, diffusion_steps=steps or completion_length // 2,
        block_length=32 if completion_length % 32 == 0 else completion_length, temperature=0.0,
        remasking="low_confidence", schedule="llada")
    was_training = adapter.model.training
    adapter.model.eval()
    traj = RolloutEngine(adapter, config, batch_size=batch_size).rollout([ex.prompt for ex in examples])
    adapter.model.train(was_training)
    texts = [adapter.decode_completion(row) for row in traj.completion_ids]
    return sum(check_answer(text, ex.answer) for text, ex in zip(texts, examples)) / max(len(examples), 1)


def train_demo_model(out_dir: str | Path, size: str = "bench", minutes: float | None = None,
                     steps: int | None = None, seed: int = 0, lr: float | None = None,
                     batch_size: int | None = None, eval_every: int | None = None, eval_examples: int | None = None,
                     log_every: int = 10, log: Callable[[str], None] | None = None) -> Path:
    """SFT a ``size`` model ("tiny", "demo", "bench") on addition until ``minutes`` of wall time or
    ``steps`` steps (whichever comes first), save it to ``out_dir`` and return that path.

    The directory holds config.json, model.safetensors, the byte tokenizer (with its chat template)
    and ``sft.json`` (settings, steps run, final loss and held-out accuracy).
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    if minutes is None and steps is None:
        raise ValueError("give minutes= or steps= (or both) to bound the training")
    log = log or (lambda line: print(line, flush=True))
    s = SIZES[size]
    lr, batch_size = lr or s.lr, batch_size or s.batch_size
    eval_every = eval_every if eval_every is not None else s.eval_every
    adapter = make_tiny("llada", seed=seed, chat_template="raw", **s.model)
    model = adapter.model
    n_params = model.num_parameters()
    held_out = make_addition_dataset(eval_examples or s.eval_examples, seed=seed, width=s.width, split="held_out")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(seed)
    bounds = ([f"{minutes:g} min"] if minutes is not None else []) + ([f"{steps} steps"] if steps is not None else [])
    log(f"SFT {size}: {n_params / 1e6:.2f}M params, completion length {s.completion_length}, batch {batch_size}, "
        f"lr {lr:g}, until {' or '.join(bounds)}")

    def accuracy() -> float:
        return held_out_accuracy(adapter, held_out, s.completion_length)

    start, step, recent, acc, acc_step = time.perf_counter(), 0, [], None, -1
    model.train()
    while (steps is None or step < steps) and (minutes is None or time.perf_counter() - start < 60 * minutes):
        batch = make_addition_dataset(batch_size, seed=seed * 1_000_003 + step, width=s.width)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / s.warmup)
        loss = sft_loss(adapter, *encode_examples(adapter, batch, s.completion_length), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        recent = (recent + [loss.item()])[-log_every:]
        if step % log_every == 0:
            log(f"step {step:5d}  loss {sum(recent) / len(recent):.4f}  {time.perf_counter() - start:6.0f}s")
        if eval_every and step % eval_every == 0:
            acc, acc_step = accuracy(), step
            log(f"step {step:5d}  held-out accuracy {acc:.3f} ({len(held_out)} questions)")
    model.eval()
    if acc_step != step:
        acc = accuracy()
    final_loss = sum(recent) / len(recent) if recent else float("nan")
    log(f"SFT done: {step} steps in {time.perf_counter() - start:.0f}s, loss {final_loss:.4f}, "
        f"held-out accuracy {acc:.3f} ({len(held_out)} questions)")
    out = adapter.save_pretrained(out_dir)
    summary = {"size": size, "params": n_params, "steps": step, "seed": seed, "lr": lr, "batch_size": batch_size,
               "completion_length": s.completion_length, "width": s.width, "final_loss": final_loss,
               "held_out_accuracy": acc, "held_out_questions": len(held_out), "prompt_format": "raw chat template"}
    (Path(out) / "sft.json").write_text(json.dumps(summary, indent=2) + "\n")
    return Path(out)
