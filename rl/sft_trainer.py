"""``unmask sft RECIPE``: masked-diffusion SFT (LLaDA's recipe) of any native model, in one process.

    preflight (no weights): recipe checks, LoRA targets, dataset columns (template + completion column)
    setup:  model (+ LoRA) → AdamW, LR schedule → resume
    loop:   rows (resumable order) → (chat prompt, completion cut or EOS-padded to L) → sft_loss over
            the micro-batches → clip, step → log → held-out loss → save

The loss is ``rl.sft.sft_loss`` (the prompt clean, each completion token masked with probability
t ~ U(eps, 1), cross-entropy on the masked tokens weighted by 1/t). The masks of optimizer step s,
micro-batch m come from a generator seeded by (seed, s, m), and checkpoints hold the model, optimizer,
schedule, RNG states and the row order's position (``rl/checkpoint.py``), so a resumed run continues
exactly. Simplifications: one process (no DeepSpeed); evaluation is the SFT loss on held-out rows
with fixed masks — run ``unmask eval`` on a checkpoint for task scores.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .config import SftRecipeConfig, to_dict, to_yaml
from .data import TEMPLATES, PromptOrder, load_checked_rows
from .distributed import SingleProcess
from .logger import MetricsLogger
from .optim import make_optimizer, make_schedule
from .policy import build_policy, check_4bit, check_lora_targets
from .sft import encode_pairs, sft_loss
from .trainer import seed_everything


class SftTrainer:
    def __init__(self, cfg: SftRecipeConfig, log=print):
        """Preflight: what can be wrong with the recipe or its data fails here, before weights load."""
        self.cfg, self.log = cfg, log
        self.template = TEMPLATES.get(cfg.data.prompt_template, "data.prompt_template")
        check_4bit(cfg.model, cfg.training)  # QLoRA SFT: a 4-bit base under LoRA, on one GPU
        self.lora_targets = check_lora_targets(cfg.model)  # the checkpoint exists; LoRA targets match its layers
        d = cfg.data
        self.rows = self._checked_rows("data.dataset", d.dataset, d.dataset_config, d.split, d.data_files, None)
        self.eval_rows = None
        if d.eval_dataset is not None or d.eval_data_files is not None:
            self.eval_rows = self._checked_rows("data.eval_dataset", d.eval_dataset or "json", d.eval_dataset_config,
                                                d.eval_split, d.eval_data_files, d.eval_limit)
        t = cfg.training
        rows_per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps
        self.max_steps = t.max_steps or math.ceil(t.num_train_epochs * len(self.rows) / rows_per_step)

    def _checked_rows(self, field: str, dataset, config, split, files, limit) -> list[dict]:
        return load_checked_rows(field, dataset, config, split, files, limit, self.cfg.training.seed,
                                 self.template.columns + ((self.cfg.sft.completion_column,),),
                                 f"prompt template {self.template.name!r} or sft.completion_column",
                                 "set sft.completion_column / data.prompt_template to match")

    def setup(self) -> "SftTrainer":
        cfg, t = self.cfg, self.cfg.training
        seed_everything(t.seed)
        self.policy = build_policy(cfg.model, t, 0.0, self.lora_targets, self.log)
        self.adapter = self.policy.adapter
        self.backend = SingleProcess()
        optimizer = make_optimizer(self.policy.trainable, t)
        self.backend.wrap(self.adapter.model, optimizer, make_schedule(optimizer, t, self.max_steps), t, t.bf16)
        self.order = PromptOrder(len(self.rows), t.seed)
        self.global_step, run_id = 0, None
        resume = ckpt.resolve_resume(t.resume_from, t.output_dir)
        if resume is not None:
            self.log(f"resuming from {resume}")
            state = ckpt.load_trainer_state(resume)
            self.backend.load_training_state(resume, self.policy)
            ckpt.set_rng_state(ckpt.load_rng_state(resume))
            self.global_step, run_id = state["global_step"], state["run_id"]
            self.order.load_state_dict(state["order"])
        self.logger = MetricsLogger(t.output_dir, cfg.logging.report_to, project=cfg.logging.project,
                                    run_name=cfg.logging.run_name, config=to_dict(cfg), run_id=run_id,
                                    resume_step=self.global_step if resume is not None else None,
                                    max_steps=self.max_steps, log=self.log)
        return self

    def _tensors(self, rows: list[dict]):
        s = self.cfg.sft
        prompts = [self.template.render(r, self.cfg.data.system_prompt) for r in rows]
        return encode_pairs(self.adapter, prompts, [str(r[s.completion_column]) for r in rows], s.completion_length,
                            max_prompt_length=self.cfg.data.max_prompt_length)

    def _generator(self, *key: int) -> torch.Generator:
        return torch.Generator(self.adapter.device).manual_seed(hash((self.cfg.training.seed, *key)) % 2 ** 63)

    def train(self) -> dict[str, float]:
        t, model, last = self.cfg.training, self.adapter.model, {}
        while self.global_step < self.max_steps:
            model.train()
            start, total, tokens = time.perf_counter(), 0.0, 0
            for m in range(t.gradient_accumulation_steps):
                rows = [self.rows[i] for i in self.order.take(t.per_device_train_batch_size)]
                tensors = self._tensors(rows)
                with self.backend.autocast(self.adapter.device, t.bf16):
                    loss = sft_loss(self.adapter, *tensors, generator=self._generator(self.global_step, m),
                                    eps=self.cfg.sft.mask_eps) / t.gradient_accumulation_steps
                self.backend.backward(loss)
                total += float(loss.detach())
                tokens += tensors[2].numel()
            lr = self.backend.scheduler.get_last_lr()[0]
            self.backend.step()
            self.global_step += 1
            last = {"loss": total, "lr": lr, "epoch": self.order.epochs_done,
                    "tokens_per_second": tokens / (time.perf_counter() - start)}
            if self.eval_rows is not None and t.eval_steps and self.global_step % t.eval_steps == 0:
                last["eval/loss"] = self.evaluate()
            if self.global_step % self.cfg.logging.logging_steps == 0 or self.global_step == self.max_steps:
                self.logger.metrics(self.global_step, last)
            if self.global_step % t.save_steps == 0 or self.global_step == self.max_steps:
                self.save()
        self.logger.close()
        return last

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean SFT loss over the held-out rows, with the same masks at every evaluation."""
        model, size = self.adapter.model, self.cfg.training.per_device_train_batch_size
        model.eval()
        losses = []
        for b in range(0, len(self.eval_rows), size):
            rows = self.eval_rows[b: b + size]
            loss = sft_loss(self.adapter, *self._tensors(rows), generator=self._generator(-1, b),
                            eps=self.cfg.sft.mask_eps)
            losses.append(float(loss) * len(rows))
        model.train()
        return sum(losses) / len(self.eval_rows)

    def save(self) -> Path:
        t = self.cfg.training
        tmp = ckpt.begin(t.output_dir, self.global_step)
        self.policy.save(tmp / "model")
        self.backend.save_training_state(tmp)
        ckpt.save_rng(tmp)
        state = {"global_step": self.global_step, "order": self.order.state_dict(), "run_id": self.logger.run_id}
        path = ckpt.commit(tmp, trainer_state=state, recipe_yaml=to_yaml(self.cfg))
        ckpt.prune(t.output_dir, t.save_total_limit, {path})
        return path


def sft(cfg: SftRecipeConfig, log=print) -> dict[str, float]:
    return SftTrainer(cfg, log).setup().train()
