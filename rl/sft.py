"""Masked-diffusion SFT (LLaDA's recipe), unmask's one SFT path: the loss (``sft_loss``) and the trainer behind
``unmask sft RECIPE`` (``SftTrainer``), which also runs the demo's SFT stage (``recipes/demo/sft.yaml``) and
trains the model ``unmask bench rollout --train-minutes M`` measures (``recipes/bench/sft.yaml``).

Loss (the LLaDA paper's SFT objective, a masked-diffusion ELBO): the prompt stays clean; the
completion, cut or padded with EOS to a fixed length L (the padding is part of the target, so the model
learns where to stop), has each token replaced by the mask id independently with probability
t ~ U(eps, 1), one t per row; the loss is the cross-entropy on the masked positions weighted by 1/t,
summed over the row, divided by L and averaged over rows:

    loss = mean_b  (1/L) Σ_i 1[masked_bi] · CE(logits_bi, y_bi) / t_b

Prompts: the row rendered by the recipe's prompt template and the model's chat template, tokenised
without special tokens and left-padded, exactly as ``RolloutEngine`` and ``adapter.encode`` do. A
from-scratch model (``sft.init_model``) gets the byte tokenizer's "raw" template (the text only,
``"47+85="``), saved with every checkpoint, so ``load_model(path)`` reproduces it.

Trainer:

    preflight (no weights): recipe checks, dataset columns (template + completion column), the random
            starting model of ``sft.init_model`` (written to ``training.output_dir/init``), LoRA targets
    setup:  model (+ LoRA) → AdamW, LR schedule → resume
    loop:   rows (resumable order) → (prompt, completion cut or EOS-padded to L) → sft_loss over the
            micro-batches → clip, step → log → held-out loss → save; it stops at ``training.max_steps``
            or after ``sft.max_minutes`` of wall time, saving a checkpoint where it stops
    end:    the final model (or LoRA adapter) and its recipe in ``training.output_dir`` itself

Deterministic given ``training.seed``: a from-scratch model's weights, the row order, and the masks of
optimizer step s, micro-batch m (a generator seeded by (seed, s, m)); so under a constant LR after the
warm-up, a run stopped by ``sft.max_minutes`` is a prefix of the ``max_steps`` run. Checkpoints hold the
model, optimizer, schedule, RNG states, the row order's position and the resolved recipe
(``rl/training/checkpoint.py``), so a resumed run continues exactly. Under DeepSpeed ZeRO (``deepspeed --module
unmask.rl.sft RECIPE``; ``unmask.rl.dpo`` for DPO) every rank takes its own rows of each step and its own masks (rank
0's are those of one process); a resumed run needs the same number of ranks. Simplifications: evaluation is the SFT
loss on held-out rows with fixed masks — ``held_out_accuracy`` scores the bundled task with the demo's RL reward,
``unmask eval`` a benchmark.
"""
from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from unmask.rewards import answer_tag_exact
from unmask.rewards.registry import suggest
from unmask.rl.training import checkpoint as ckpt
from unmask.rl.training.distributed import make_backend, rank_device
from unmask.rl.training.logger import MetricsLogger
from unmask.rl.training.optim import make_optimizer, make_schedule
from unmask.rl.training.policy import build_policy, check_4bit, check_lora_targets
from unmask.rollouts.adapter import ModelAdapter
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.tiny import TINY_CONFIGS, make_tiny
from unmask.tasks import TEMPLATES, PromptOrder, load_checked_rows
from unmask.tasks.synthetic import SyntheticExample, completion_bytes, make_addition_dataset

from .config import SftRecipeConfig
from .recipes import read_yaml, to_dict, to_yaml
from .trainer import seed_everything

EPS = 1e-3  # t ~ U(EPS, 1), as LLaDA's forward_process


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
    """``n`` held-out (prompt, gold completion) pairs of the bundled addition task that ``checkpoint`` (a
    checkpoint folder, a run's ``output_dir`` or an older checkpoint's ``model/``) learnt, the operand width read
    from the recipe saved with it."""
    path = Path(checkpoint)
    recipe = next((p / "recipe.yaml" for p in (path, path.parent) if (p / "recipe.yaml").is_file()), None)
    if recipe is None:
        raise FileNotFoundError(f"no recipe.yaml in {path} or {path.parent}, so the task {path} learnt is unknown: "
                                f"give the model of a checkpoint written by unmask sft or unmask train (unmask bench "
                                f"rollout --train-minutes M trains one from recipes/bench/sft.yaml)")
    data = (read_yaml(recipe) or {}).get("data") or {}
    if data.get("dataset") != "synthetic_addition":
        raise ValueError(f"{recipe}: the model learnt data.dataset {data.get('dataset')!r}, not the bundled addition "
                         f"task synthetic_addition; give a checkpoint trained on it (unmask bench rollout "
                         f"--train-minutes M trains one)")
    width = int(data.get("dataset_config") or 2)
    if completion_bytes(width) > completion_length:
        raise ValueError(f"{checkpoint} learnt {width}-digit addition, whose completions ({completion_bytes(width)} "
                         f"tokens) do not fit completion length {completion_length}")
    return [(ex.prompt, ex.completion) for ex in make_addition_dataset(n, seed=seed, width=width, split="held_out")]


def task_scores(examples: Sequence[SyntheticExample], texts: Sequence[str]) -> list[float]:
    """1/0 per completion, graded by ``answer_tag_exact`` — the reward the demo's RL stage trains on
    (``recipes/demo/rl.yaml``): the last well-formed ``<answer>N</answer>`` must hold the gold sum."""
    scores = answer_tag_exact([ex.prompt for ex in examples], list(texts), answer=[ex.answer for ex in examples])
    return [float(s or 0.0) for s in scores]


@torch.no_grad()
def held_out_accuracy(adapter: ModelAdapter, examples: Sequence[SyntheticExample], completion_length: int,
                      steps: int | None = None, batch_size: int = 32, config: SamplerConfig | None = None) -> float:
    """Mean :func:`task_scores` of greedy low-confidence decoding (blocks of 32 when L is a multiple of 32,
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
    return sum(task_scores(examples, texts)) / max(len(examples), 1)


def random_init(cfg: SftRecipeConfig) -> ModelAdapter:
    """The from-scratch starting model of ``sft.init_model``: a random LLaDA of that shape, seeded by
    ``training.seed``, with the byte tokenizer's "raw" chat template."""
    shape = {k: v for k, v in (cfg.sft.init_model or {}).items() if (k, v) != ("model_type", "llada")}
    valid = list(inspect.signature(TINY_CONFIGS["llada"]).parameters)
    for key in shape:
        if key not in valid:
            close = "".join(f" (did you mean {c!r}?)" for c in suggest(key, valid))
            raise ValueError(f"sft.init_model has an unknown key {key!r}{close}; a random LLaDA's shape takes {valid}")
    return make_tiny("llada", seed=cfg.training.seed, chat_template="raw", **shape)


class SftTrainer:
    """The offline trainer: ``unmask sft``'s, and the base of ``unmask dpo``'s (``rl/dpo.py``), which replaces the
    hooks ``objective_name`` (the recipe section of the loss), ``needed_columns``, ``reference_beta`` and
    ``batch_loss``."""

    objective_name = "sft"

    def __init__(self, cfg: SftRecipeConfig, log=print):
        """Preflight: what can be wrong with the recipe or its data fails here, before weights load."""
        self.cfg, self.log, self.last_checkpoint = cfg, log, None
        self.template = TEMPLATES.get(cfg.data.prompt_template, "data.prompt_template")
        check_4bit(cfg.model, cfg.training)  # QLoRA SFT: a 4-bit base under LoRA, on one GPU
        d = cfg.data
        self.rows = self._checked_rows("data.dataset", d.dataset, d.dataset_config, d.split, d.data_files, None)
        self.eval_rows = None
        if d.eval_dataset is not None or d.eval_data_files is not None:
            self.eval_rows = self._checked_rows("data.eval_dataset", d.eval_dataset or "json", d.eval_dataset_config,
                                                d.eval_split, d.eval_data_files, d.eval_limit)
        if getattr(self.objective, "init_model", None) is not None:  # from scratch: a random model, trained
            init = self.random_init(cfg).save_pretrained(Path(cfg.training.output_dir) / "init")
            self.cfg = cfg = replace(cfg, model=replace(cfg.model, name_or_path=str(init)))
        self.lora_targets = self.check_model(cfg)  # the checkpoint exists; LoRA targets match its layers
        t = cfg.training
        ranks = int(os.environ.get("WORLD_SIZE", "1"))  # DeepSpeed: every rank takes its own rows of a step
        rows_per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * ranks
        self.max_steps = t.max_steps or math.ceil(t.num_train_epochs * len(self.rows) / rows_per_step)

    # ---- the hooks ``unmask dpo`` replaces --------------------------------------------------------------
    @property
    def objective(self):
        """The recipe section of the loss (``sft``, ``dpo``)."""
        return getattr(self.cfg, self.objective_name)

    def needed_columns(self) -> tuple[tuple[tuple[str, ...], ...], str, str]:
        """(columns the rows must hold, who needs them, the fix): ``check_columns``' last three arguments."""
        return (self.template.columns + ((self.cfg.sft.completion_column,),),
                f"prompt template {self.template.name!r} or sft.completion_column",
                "set sft.completion_column / data.prompt_template to match")

    reference_beta = 0.0  # > 0 builds a reference policy (DPO)

    # ---- the hooks of another model kind (DiffusionGemma: ``rl/block_diffusion_sft.py``) -------------------------
    random_init = staticmethod(random_init)
    build_policy = staticmethod(build_policy)

    @staticmethod
    def check_model(cfg) -> list[str]:
        return check_lora_targets(cfg.model)

    def batch_loss(self, rows: list[dict], generator: torch.Generator) -> tuple[torch.Tensor, int, dict]:
        """(loss of these rows, completion tokens, diagnostics to log) with the masks of ``generator``."""
        tensors = self._tensors(rows)
        return sft_loss(self.adapter, *tensors, generator=generator, eps=self.cfg.sft.mask_eps), tensors[2].numel(), {}

    def _checked_rows(self, field: str, dataset, config, split, files, limit) -> list[dict]:
        return load_checked_rows(field, dataset, config, split, files, limit, self.cfg.training.seed,
                                 *self.needed_columns())

    def setup(self) -> "SftTrainer":
        cfg, t = self.cfg, self.cfg.training
        seed_everything(t.seed)
        self.backend = make_backend(t)
        if not self.backend.is_main:
            self.log = lambda *args, **kwargs: None
        self.policy = self.build_policy(cfg.model, t, self.reference_beta, self.lora_targets, self.log,
                                        device=rank_device(self.backend, cfg.model.device))
        self.adapter = self.policy.adapter
        optimizer = make_optimizer(self.policy.trainable, t)
        self.backend.wrap(self.adapter.model, optimizer, make_schedule(optimizer, t, self.max_steps), t, t.bf16)
        self.order = PromptOrder(len(self.rows), t.seed)
        self.global_step, run_id = 0, None
        resume = ckpt.resolve_resume(t.resume_from, t.output_dir)
        if resume is not None:
            self.log(f"resuming from {resume}")
            state = ckpt.load_trainer_state(resume)
            if state.get("world_size", 1) != self.backend.world_size:
                raise ValueError(f"{resume} was written by {state.get('world_size', 1)} ranks; resume it with the "
                                 f"same number (now {self.backend.world_size})")
            self.backend.load_training_state(resume, self.policy)
            ckpt.set_rng_state(ckpt.load_rng_state(resume, self.backend.rank))
            self.global_step, run_id = state["global_step"], state["run_id"]
            self.order.load_state_dict(state["order"])
        sinks = cfg.logging.report_to if self.backend.is_main else []
        self.logger = MetricsLogger(t.output_dir, sinks, project=cfg.logging.project,
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
        """Train until ``training.max_steps`` or ``sft.max_minutes`` (checked after each step), saving a
        checkpoint every ``training.save_steps`` and where it stops; return the last step's metrics."""
        t, model, last = self.cfg.training, self.adapter.model, {}
        minutes, began = self.objective.max_minutes, time.perf_counter()
        accumulation, size, b = t.gradient_accumulation_steps, t.per_device_train_batch_size, self.backend
        while self.global_step < self.max_steps:
            model.train()
            start, total, tokens, extra = time.perf_counter(), 0.0, 0, {}
            with b.accumulate():  # DeepSpeed: one gradient reduction per step
                for m in range(accumulation):  # every rank draws the step's rows in the same order, takes its own
                    rows = [self.rows[i] for i in self.order.take(size * b.world_size)[b.rank * size:][:size]]
                    with b.autocast(self.adapter.device, t.bf16):
                        key = (self.global_step, m, *([b.rank] if b.rank else []))  # rank 0: one process's masks
                        loss, count, info = self.batch_loss(rows, self._generator(*key))
                        loss = loss / accumulation
                    b.backward(loss)  # DeepSpeed averages the ranks' gradients: the mean over all their rows
                    total += float(loss.detach())
                    tokens += count
                    for key, value in info.items():
                        extra[key] = extra.get(key, 0.0) + value / accumulation
            if b.world_size > 1:  # the ranks' means
                total, extra = b.sum(total) / b.world_size, {k: b.sum(v) / b.world_size for k, v in extra.items()}
            lr = self.backend.scheduler.get_last_lr()[0]
            grad_norm = self.backend.step()
            self.global_step += 1
            if self.policy.reference is not None:  # DPO with training.sync_ref_model (TR-DPO)
                self.policy.reference.maybe_sync(self.global_step)
            last = {"loss": total, **extra, "learning_rate": lr, "grad_norm": grad_norm,
                    "epoch": self.order.epochs_done, "tokens_per_second": tokens / (time.perf_counter() - start)}
            if self.eval_rows is not None and t.eval_steps and self.global_step % t.eval_steps == 0:
                last.update(self.evaluate())
            timed_out = minutes is not None and b.sum(time.perf_counter() - began >= 60 * minutes) > 0  # any rank
            final = timed_out or self.global_step == self.max_steps
            if self.global_step % self.cfg.logging.logging_steps == 0 or final:
                self.logger.metrics(self.global_step, last)
            if self.global_step % t.save_steps == 0 or final:
                self.save()
            if timed_out:
                self.log(f"stopped after step {self.global_step} of {self.max_steps}: "
                         f"{self.objective_name}.max_minutes ({minutes:g}) reached; saved {self.last_checkpoint}")
                break
        self.save_model()
        self.logger.close()
        self.backend.close()
        return last

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """``eval/loss`` (and ``eval/`` diagnostics): means over the held-out rows, the same masks every time."""
        model, size = self.adapter.model, self.cfg.training.per_device_train_batch_size
        model.eval()
        sums: dict[str, float] = {}
        for b in range(0, len(self.eval_rows), size):
            rows = self.eval_rows[b: b + size]
            loss, _, info = self.batch_loss(rows, self._generator(-1, b))
            for key, value in {"loss": float(loss), **info}.items():
                sums[f"eval/{key}"] = sums.get(f"eval/{key}", 0.0) + value * len(rows)
        model.train()
        return {key: value / len(self.eval_rows) for key, value in sums.items()}

    def save(self) -> Path:
        """A checkpoint; every rank takes part (DeepSpeed state, RNG), the main rank writes the rest and commits."""
        t, b = self.cfg.training, self.backend
        tmp = (ckpt.begin(t.output_dir, self.global_step) if b.is_main
               else Path(t.output_dir) / f"{ckpt.PREFIX}{self.global_step}.tmp")
        b.barrier()
        with b.full_state():
            if b.is_main:
                self.policy.save(tmp)  # the model or adapter at the checkpoint's root (Hugging Face layout)
        b.save_training_state(tmp)
        ckpt.save_rng(tmp, b.rank)
        b.barrier()
        self.last_checkpoint = tmp.with_name(tmp.name.removesuffix(".tmp"))
        if b.is_main:
            state = {"global_step": self.global_step, "order": self.order.state_dict(), "run_id": self.logger.run_id,
                     "world_size": b.world_size}
            self.last_checkpoint = ckpt.commit(tmp, trainer_state=state, recipe_yaml=to_yaml(self.cfg))
            ckpt.prune(t.output_dir, t.save_total_limit, {self.last_checkpoint})
        b.barrier()
        return self.last_checkpoint

    def save_model(self) -> Path:
        """The final model (or LoRA adapter) and its recipe in ``training.output_dir`` itself, loadable with
        ``load_model(output_dir)`` (``--adapter output_dir`` for LoRA), as transformers' ``Trainer.save_model``."""
        return ckpt.save_model(self.policy, self.backend, self.cfg.training.output_dir, to_yaml(self.cfg), self.log)


def sft_trainer(cfg: SftRecipeConfig) -> type[SftTrainer]:
    """The SFT trainer of the recipe's model: masked diffusion (LLaDA, Dream) or DiffusionGemma's denoising SFT."""
    from .block_diffusion_sft import BlockDiffusionSftTrainer, is_block_diffusion_sft
    return BlockDiffusionSftTrainer if is_block_diffusion_sft(cfg) else SftTrainer


def sft(cfg: SftRecipeConfig, log=print) -> dict[str, float]:
    return sft_trainer(cfg)(cfg, log).setup().train()


if __name__ == "__main__":  # deepspeed --num_gpus N --module unmask.rl.sft RECIPE (see rl/train.py)
    import sys

    from .train import main
    sys.exit(main(command="sft"))
