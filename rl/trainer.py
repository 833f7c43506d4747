"""The training loop: a recipe in, a trained policy out, resumable exactly. Read top to bottom:

    preflight (no weights): recipe checks, rewards, LoRA targets, datasets and their columns
    setup:  policy (+ LoRA, reference) → optimizer, LR schedule → rollout engine → resume
    loop:   prompts → RLStep (rollouts, rewards, advantages, num_iterations updates) → log → eval → save
    end:    the final policy (model or LoRA adapter) and its recipe in ``output_dir`` itself

``RLStep`` gets the trainer's scorer (decode, then the recipe's rewards on each completion's dataset row) once,
and returns each step's metrics, per-reward statistics and scored completions, which the loop logs under TRL's
metric names (the README's metrics table lists them all).

``global_step`` counts optimizer steps (TRL's meaning); one rollout batch gives ``num_iterations`` ×
``num_minibatches`` of them. Logging, evaluation and checkpoints happen between rollout batches, when their
interval is crossed. Everything random is derived from (seed, rollout batch index) — rollout noise, estimator
masks, prompt order — and the model, optimizer, schedule and prompt position are checkpointed, so a
resumed run continues exactly as the uninterrupted one would have.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from unmask.eval.runner import engine_generator, run_benchmark
from unmask.rewards import build_rewards, reward_columns, weighted_rewards
from unmask.rl.training import checkpoint as ckpt
from unmask.rl.training.block_diffusion_policy import (
    block_diffusion_parts,
    build_block_diffusion_policy,
    check_block_diffusion_recipe,
    is_block_diffusion,
)
from unmask.rl.training.block_diffusion_step import BlockDiffusionStep
from unmask.rl.training.distributed import make_backend, rank_device
from unmask.rl.training.logger import MetricsLogger
from unmask.rl.training.loop import RLStep, Scores, reward_stats
from unmask.rl.training.optim import make_optimizer, make_schedule
from unmask.rl.training.policy import build_policy, check_4bit, check_lora_targets
from unmask.rl.training.update import PolicyUpdate
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.sampling import first_eos_mask
from unmask.tasks import BENCHMARKS, TEMPLATES, PromptOrder, check_columns, load_checked_rows

from .config import RecipeConfig
from .recipes import to_dict, to_yaml

RESERVED = ("prompts", "completions", "completion_ids", "trainer_state")  # reward arguments, not dataset columns


class Trainer:
    def __init__(self, cfg: RecipeConfig, log=print, *, reward_funcs: list | None = None,
                 train_rows: list[dict] | None = None, eval_rows: list[dict] | None = None,
                 model: torch.nn.Module | None = None, tokenizer=None):
        """Preflight: everything that can be wrong with the recipe or the data fails here, before weights load.

        ``reward_funcs`` (functions, registered names, import paths or recipe entries), ``train_rows`` /
        ``eval_rows`` (dicts of columns) and ``model`` (a model in memory, with its ``tokenizer``) replace the
        recipe's rewards, datasets and model: the Python API's path (``rl/api.py``); a recipe names them."""
        self.cfg, self.log = cfg, log
        self.model_object, self.tokenizer_object = model, tokenizer
        self.reward_specs = list(reward_funcs) if reward_funcs is not None else [
            {"name": r.name, "weight": r.weight, "args": r.args} for r in cfg.algorithm.rewards]
        for i, spec in enumerate(self.reward_specs):
            try:
                build_rewards([spec])  # unknown names, unknown or missing args
            except (KeyError, ValueError) as e:
                raise ValueError(f"algorithm.rewards[{i}]: {e}") from None
        self.template = TEMPLATES.get(cfg.data.prompt_template, "data.prompt_template")
        self.block_diffusion = is_block_diffusion(cfg.model, model)  # DiffusionGemma (block_diffusion_policy.py)
        if self.block_diffusion:
            self.lora_targets = check_block_diffusion_recipe(cfg, model)
        else:
            check_4bit(cfg.model, cfg.training)
            self.lora_targets = check_lora_targets(cfg.model, model)  # the checkpoint exists; LoRA targets match
        d = cfg.data
        self.rows = (self._checked_rows("data.dataset", d.dataset, d.dataset_config, d.split, d.data_files, None)
                     if train_rows is None else self._checked_given("train_dataset", train_rows))
        self.eval_rows, self.benchmark = None, None
        if eval_rows is not None:
            self.eval_rows = self._checked_given("eval_dataset", eval_rows)[:d.eval_limit or None]
        elif d.eval_benchmark is not None:
            self.benchmark = BENCHMARKS.get(d.eval_benchmark, "data.eval_benchmark")
            self.eval_rows = self.benchmark.load(d.eval_data_files, d.eval_limit)
        elif d.eval_dataset is not None or d.eval_data_files is not None:
            self.eval_rows = self._checked_rows("data.eval_dataset", d.eval_dataset or "json", d.eval_dataset_config,
                                                d.eval_split, d.eval_data_files, d.eval_limit)
        t, r = cfg.training, cfg.rollout
        self.batch_rows = t.per_device_train_batch_size * t.gradient_accumulation_steps
        self.prompts_per_batch = self.batch_rows // r.num_generations
        self.max_steps = t.max_steps or cfg.algorithm.updates_per_batch * math.ceil(
            t.num_train_epochs * len(self.rows) / self.prompts_per_batch)

    def _needed_columns(self) -> tuple[tuple[str, ...], ...]:
        """The columns the prompt template, the rewards and IGPO's inpainting read (reward functions given directly
        declare none)."""
        names = [s if isinstance(s, str) else s["name"] for s in self.reward_specs if not callable(s)]
        hint = ((self.cfg.algorithm.inpaint_column,),) if self.cfg.algorithm.inpaint_column else ()
        return self.template.columns + tuple(c for name in names for c in reward_columns(name)) + hint

    def _column_check(self) -> tuple:
        """What the rows must hold, who needs it and the fix (``check_columns``' last three arguments)."""
        return (self._needed_columns(), f"prompt template {self.template.name!r}, the rewards or "
                f"algorithm.inpaint_column",
                "rename them or pick another data.prompt_template / reward / algorithm.inpaint_column")

    def _checked_given(self, field: str, rows: list[dict]) -> list[dict]:
        return check_columns(field, rows, *self._column_check())

    def _checked_rows(self, field: str, dataset, config, split, files, limit) -> list[dict]:
        return load_checked_rows(field, dataset, config, split, files, limit, self.cfg.training.seed,
                                 *self._column_check())

    # ---- setup ---------------------------------------------------------------------------------------
    def setup(self) -> "Trainer":
        cfg, t = self.cfg, self.cfg.training
        self.backend = make_backend(t)
        if not self.backend.is_main:
            self.log = lambda *args, **kwargs: None
        seed_everything(t.seed)  # LoRA initialisation and dropout draw from the global generators
        build = build_block_diffusion_policy if self.block_diffusion else build_policy
        self.policy = build(cfg.model, t, cfg.algorithm.reference_beta, self.lora_targets, self.log,
                            device=self._device(), model=self.model_object, tokenizer=self.tokenizer_object)
        adapter = self.policy.adapter
        self.critic = self._critic() if cfg.algorithm.value_model else None  # copies the policy before ZeRO shards it
        optimizer = make_optimizer(self.policy.trainable, t)
        self.backend.wrap(adapter.model, optimizer, make_schedule(optimizer, t, self.max_steps), t, t.bf16)
        if self.block_diffusion:
            self.engine, self.eval_engine, self.update = block_diffusion_parts(self.policy, cfg)
        else:
            sampler = cfg.rollout.sampler()
            self.engine = RolloutEngine(adapter, sampler, batch_size=cfg.rollout.generation_batch_size,
                                        system_prompt=None)
            self.eval_engine = RolloutEngine(adapter, sampler.greedy())
            self.update = PolicyUpdate(adapter, cfg.algorithm, micro_batch_size=t.per_device_train_batch_size,
                                       reference=self.policy.reference, backend=self.backend, critic=self.critic)
        self.order = PromptOrder(len(self.rows), t.seed)
        self.global_step = self.batches_done = self.evals_without_improvement = 0
        self.best_metric, self.best_checkpoint, run_id = None, None, None
        resume = ckpt.resolve_resume(t.resume_from, t.output_dir)
        if resume is not None:
            run_id = self._restore(resume)
        self.logger = MetricsLogger(t.output_dir, cfg.logging.report_to if self.backend.is_main else [],
                                    project=cfg.logging.project,
                                    run_name=cfg.logging.run_name, config=to_dict(cfg), run_id=run_id,
                                    resume_step=self.global_step if resume is not None else None,
                                    max_steps=self.max_steps, log=self.log)
        return self

    def _critic(self):
        """TraceRL's value model (``algorithm.value_model``) with its own optimizer and backend."""
        from unmask.rl.training.critic import ValueCritic, ValueModel, value_backbone
        a, adapter = self.cfg.algorithm, self.policy.adapter
        backbone = value_backbone(self.policy, a.value_model, self.cfg.model, adapter.device)
        backbone.gradient_checkpointing = self.cfg.model.gradient_checkpointing
        return ValueCritic(ValueModel(backbone, adapter.logit_shift), a, self.cfg.training,
                           batches=math.ceil(self.max_steps / a.updates_per_batch))

    def _device(self) -> str:
        return rank_device(self.backend, self.cfg.model.device)

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        t, last = self.cfg.training, {}
        self.grad_norms: list[float] = []
        step = (BlockDiffusionStep if self.block_diffusion else RLStep)(self.engine, self.update, self._score,
                                                                         self.cfg.rollout.num_generations)
        while self.global_step < self.max_steps:
            ppb, rank = self.prompts_per_batch, self.backend.rank
            global_rows = self.order.take(ppb * self.backend.world_size)  # same on every rank; each takes its share
            batch_rows = [self.rows[i] for i in global_rows[rank * ppb: (rank + 1) * ppb]]
            before = self.global_step
            with self.backend.autocast(self.policy.adapter.device, t.bf16):
                result = step([self.template.render(r, self.cfg.data.system_prompt) for r in batch_rows],
                              self._optimizer_step, seed=self._batch_seed(), rows=batch_rows)
            self.batches_done += 1
            metrics = {**result.metrics, **result.reward_stats}
            metrics = {k: self.backend.sum(v) / self.backend.world_size for k, v in sorted(metrics.items())}
            norms = [n for n in self.grad_norms if n is not None]  # global already: every rank has the same
            if norms:
                metrics["grad_norm"] = sum(norms) / len(norms)
            self.grad_norms.clear()
            metrics.update(learning_rate=self.backend.scheduler.get_last_lr()[0], epoch=self.order.epochs_done)
            if self._crossed(before, self.cfg.logging.logging_steps):
                self.logger.metrics(self.global_step, metrics)
                if self.cfg.logging.log_trajectories and result.trajectory is not None:
                    self._write_trajectories(result.trajectory)
                if self.cfg.logging.log_completions:
                    scores = result.scores
                    self.logger.completions(self.global_step, scores.prompts, scores.texts, scores.total,
                                            show=self.cfg.logging.num_completions_to_print, notes=scores.notes)
            stop = False
            if self.eval_rows is not None and t.eval_steps and self._crossed(before, t.eval_steps):
                stop = self._after_eval(self.evaluate())
            if self._crossed(before, t.save_steps) or self.global_step >= self.max_steps or stop:
                self.save()
            last = metrics
            if stop:
                self.log(f"early stopping: no better eval reward in {t.early_stopping_patience} evaluations")
                break
        self.save_model()
        self.logger.close()
        self.backend.close()
        return last

    def _write_trajectories(self, traj) -> None:
        """The first ``logging.log_trajectories`` rollouts' record and its HTML replay (``unmask view``), per step."""
        if not self.backend.is_main:
            return
        from unmask.rollouts.viewer import write_view
        path = Path(self.cfg.training.output_dir) / "trajectories" / f"step-{self.global_step}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        traj.take(list(range(min(self.cfg.logging.log_trajectories, traj.batch_size)))).save(path)
        write_view(path, path.with_suffix(".html"), self.policy.adapter.tokenizer)

    def _crossed(self, before: int, every: int) -> bool:
        return self.global_step // every > before // every

    def _batch_seed(self) -> int:
        seed = self.cfg.training.seed
        return random.Random(f"rollout:{seed}:{self.batches_done}:{self.backend.rank}").randrange(2 ** 31)

    def _optimizer_step(self) -> None:
        self.grad_norms.append(self.backend.step())  # the gradient norm before clipping, logged as grad_norm
        self.global_step += 1
        if self.policy.reference is not None:
            self.policy.reference.maybe_sync(self.global_step)

    def _score(self, prompt_ids: list[list[int]], completions: torch.Tensor, rows: list[dict]) -> Scores:
        """RLStep's scorer: decode completions and score them with the recipe's rewards and each one's dataset row."""
        adapter = self.policy.adapter
        texts = [self.template.cut(adapter.decode_completion(c)) for c in completions]
        prompts = [adapter.tokenizer.decode(p) for p in prompt_ids]
        ids = [c[m].tolist() for c, m in zip(completions, first_eos_mask(completions, adapter.eos_id))]
        breakdown = self._rewards(texts, ids, rows)
        return Scores(breakdown.total, breakdown.per_reward, prompts, texts, breakdown.notes)

    def _rewards(self, texts: list[str], completion_ids: list[list[int]], rows: list[dict]):
        """The recipe's rewards, called as TRL calls them on a conversational dataset (the templates render chat
        messages): ``prompts`` as message lists, ``completions`` as ``[{"role": "assistant", "content": text}]``,
        ``completion_ids`` (up to and including the first EOS), ``trainer_state`` and each row's dataset columns."""
        prompts = [self.template.render(r, self.cfg.data.system_prompt) for r in rows]
        completions = [[{"role": "assistant", "content": text}] for text in texts]
        columns = {k: [r.get(k) for r in rows] for k in rows[0] if k not in RESERVED}
        return weighted_rewards(self.reward_specs, prompts, completions, completion_ids=completion_ids,
                                trainer_state=self.trainer_state(), **columns)

    def trainer_state(self):
        """This run's progress as the ``transformers.TrainerState`` TRL hands its rewards."""
        from transformers import TrainerState
        t = self.cfg.training
        return TrainerState(epoch=self.order.epochs_done, global_step=self.global_step, max_steps=self.max_steps,
                            logging_steps=self.cfg.logging.logging_steps, eval_steps=t.eval_steps,
                            save_steps=t.save_steps, train_batch_size=t.per_device_train_batch_size,
                            best_metric=self.best_metric, best_model_checkpoint=self.best_checkpoint,
                            is_world_process_zero=self.backend.is_main)

    def evaluate(self) -> float:
        """Greedy decoding of the eval prompts, scored by the training rewards or by a benchmark's graders
        (``data.eval_benchmark``, through ``eval/``), logged at the current step; returns the value the loop tracks
        for the best checkpoint and early stopping (mean reward, or the primary grader's accuracy)."""
        rows = self.eval_rows
        self.policy.adapter.model.eval()
        if self.benchmark is not None:
            return self._evaluate_benchmark(rows)
        values = self.held_out_rewards(self.eval_engine)
        self.logger.metrics(self.global_step, values)
        return values["eval/reward"]

    def held_out_rewards(self, engine: RolloutEngine) -> dict[str, float]:
        """``eval/reward`` (the mean reward of ``engine``'s greedy completions of the eval prompts) and each reward's
        ``eval/rewards/<name>/mean`` and ``/std``; also how ``unmask compare`` evaluates an offline method."""
        rows = self.eval_rows
        with torch.no_grad(), self.backend.full_parameters():  # every rank decodes (ZeRO-3 collectives)
            gens = engine_generator(engine)([self.template.render(r, self.cfg.data.system_prompt) for r in rows], 1, 0)
        breakdown = self._rewards([self.template.cut(g.text) for g in gens], [g.completion_ids for g in gens], rows)
        return {"eval/reward": sum(breakdown.total) / len(rows), **reward_stats(breakdown.per_reward, "eval/rewards/")}

    def _evaluate_benchmark(self, rows: list[dict]) -> float:
        with torch.no_grad(), self.backend.full_parameters():
            summary = run_benchmark(
                self.benchmark, rows, engine_generator(self.eval_engine),
                Path(self.cfg.training.output_dir) / "eval" / f"step-{self.global_step}", total=len(rows),
                limited=True, settings=self.eval_engine.config.as_dict(), command=f"training step {self.global_step}",
                system_prompt=self.cfg.data.system_prompt, log=lambda *a: None)
        values = {f"eval/{self.benchmark.name}/{g}": a["accuracy"] for g, a in summary["accuracy"].items()}
        self.logger.metrics(self.global_step, values)
        return summary["accuracy"][summary["primary_grader"]]["accuracy"]

    def _after_eval(self, value: float) -> bool:
        """Track the best eval value (keeping its checkpoint) and say whether to stop early."""
        if self.best_metric is None or value > self.best_metric:
            self.best_metric, self.evals_without_improvement = value, 0
            self.best_checkpoint = str(self.save()) if self.cfg.training.keep_best else None
            return False
        self.evals_without_improvement += 1
        patience = self.cfg.training.early_stopping_patience
        return patience is not None and self.evals_without_improvement >= patience

    # ---- checkpoints -----------------------------------------------------------------------------------
    def save(self) -> Path:
        """A checkpoint of the whole run; every rank takes part (DeepSpeed state, RNG), the main rank commits."""
        t, main = self.cfg.training, self.backend.is_main
        tmp = (ckpt.begin(t.output_dir, self.global_step) if main
               else Path(t.output_dir) / f"{ckpt.PREFIX}{self.global_step}.tmp")
        self.backend.barrier()
        with self.backend.full_state():
            if main:
                self.policy.save(tmp)  # the model or adapter at the checkpoint's root (Hugging Face layout)
        self.backend.save_training_state(tmp)
        if self.critic is not None:
            self.critic.save(tmp)
        ckpt.save_rng(tmp, self.backend.rank)
        self.backend.barrier()
        path = tmp.with_name(tmp.name.removesuffix(".tmp"))
        if main:
            state = {"global_step": self.global_step, "batches_done": self.batches_done,
                     "order": self.order.state_dict(), "best_metric": self.best_metric,
                     "best_checkpoint": self.best_checkpoint, "world_size": self.backend.world_size,
                     "evals_without_improvement": self.evals_without_improvement, "run_id": self.logger.run_id}
            path = ckpt.commit(tmp, trainer_state=state, recipe_yaml=to_yaml(self.cfg),
                               reference=self.policy.reference_state())
            keep = {Path(self.best_checkpoint)} if self.best_checkpoint else set()
            ckpt.prune(t.output_dir, t.save_total_limit, keep | {path})
        self.backend.barrier()
        return path

    def save_model(self) -> Path:
        """The final policy (model or LoRA adapter) and its recipe in ``output_dir`` itself, loadable with
        ``from_pretrained`` as transformers' ``Trainer.save_model`` leaves it; every rank takes part (ZeRO-3)."""
        out = ckpt.save_model(self.policy, self.backend, self.cfg.training.output_dir, to_yaml(self.cfg), self.log)
        if self.critic is not None:
            self.critic.save_weights(out / "value")
        return out

    def _restore(self, path: Path) -> str:
        self.log(f"resuming from {path}")
        state = ckpt.load_trainer_state(path)
        if state.get("world_size", 1) != self.backend.world_size:
            raise ValueError(f"{path} was written by {state.get('world_size', 1)} ranks; resume it with the same "
                             f"number (now {self.backend.world_size}) so every rank gets its own prompts and RNG state")
        self.backend.load_training_state(path, self.policy)
        if self.critic is not None:
            self.critic.load(path)
        ckpt.set_rng_state(ckpt.load_rng_state(path, self.backend.rank))
        self.global_step, self.batches_done = state["global_step"], state["batches_done"]
        self.order.load_state_dict(state["order"])
        self.best_metric, self.best_checkpoint = state["best_metric"], state["best_checkpoint"]
        self.evals_without_improvement = state["evals_without_improvement"]
        return state["run_id"]


def seed_everything(seed: int) -> None:
    import numpy as np
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def train(cfg: RecipeConfig, log=print) -> dict[str, float]:
    return Trainer(cfg, log).setup().train()
