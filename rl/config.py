"""Recipe schema and loader for ``unmask train``.

A recipe is a YAML file whose top-level sections (``model``, ``data``, ``rollout``, ``algorithm``,
``training``, ``logging``) map onto the dataclasses below. Loading is strict: unknown keys, wrong
types and inconsistent settings raise :class:`ConfigError` naming the dotted field and the fix.
Defaults reproduce d1's diffu-GRPO recipe for LLaDA-8B-Instruct on GSM8K. Field names follow TRL's
``GRPOConfig`` where the concept is shared, and d1's names for diffusion settings.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rollouts.sampler_config import REMASKING, Remasking, SamplerConfig

from .schema import ConfigError, _got, _join, _to_data, parse_section
from .schema import apply_overrides as _apply_overrides

__all__ = [
    "ConfigError", "ModelConfig", "DataConfig", "RolloutConfig", "RewardSpec", "AlgorithmConfig",
    "TrainingConfig", "LoggingConfig", "RecipeConfig", "load_recipe", "recipe_from_dict",
    "parse_section", "apply_overrides", "with_method_defaults", "to_dict", "to_yaml", "save_recipe",
]


# ----------------------------------------------------------------------------- validation helpers

def _bound(obj: Any, where: str, names: str | tuple[str, ...], lo: float, *, strict: bool = False,
           hi: float | None = None, below: float | None = None) -> None:
    """Check ``lo <= value`` (``<`` if strict), ``value <= hi``, ``value < below``; None (unset) passes."""
    for name in (names,) if isinstance(names, str) else names:
        value = getattr(obj, name)
        if value is None:
            continue
        if (value <= lo) if strict else (value < lo):
            raise ConfigError(f"{_join(where, name)} must be {'>' if strict else '>='} {lo}, got {value!r}")
        if (hi is not None and value > hi) or (below is not None and value >= below):
            limit = f"<= {hi}" if hi is not None else f"< {below}"
            raise ConfigError(f"{_join(where, name)} must be {limit}, got {value!r}")


def _nonempty(obj: Any, where: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not str(value).strip():
            raise ConfigError(f"{_join(where, name)} must be a non-empty string")


# ----------------------------------------------------------------------------- schema

@dataclass
class ModelConfig:
    """Policy model, tokenizer and LoRA adapter settings."""

    name_or_path: str = field(default="GSAI-ML/LLaDA-8B-Instruct", metadata={"help": "Hugging Face hub id or local directory of the masked diffusion LM to train."})
    tokenizer: str | None = field(default=None, metadata={"help": "Hub id or path of the tokenizer; null uses the tokenizer shipped with `name_or_path`."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) of the model; null takes the default branch."})
    dtype: Literal["float32", "bfloat16"] = field(default="bfloat16", metadata={"help": "Dtype the model weights are loaded in."})
    device: str = field(default="auto", metadata={"help": "Device to place the model on: 'auto' (GPU if available, else CPU), 'cpu', 'cuda', 'cuda:1', ..."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow executing modelling code from the hub repository (needed by some LLaDA/Dream checkpoints)."})
    use_peft: bool = field(default=True, metadata={"help": "Train LoRA adapters instead of the full model."})
    lora_r: int = field(default=128, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout probability applied to the LoRA input."})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "Module names LoRA is applied to; null uses the model family's defaults."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Load the base model 4-bit quantised with bitsandbytes (QLoRA); requires use_peft."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in the backward pass to save memory at the cost of speed."})

    def validate(self, where: str = "model") -> None:
        _nonempty(self, where, "name_or_path", "device")
        _bound(self, where, ("lora_r", "lora_alpha"), 1)
        _bound(self, where, "lora_dropout", 0.0, below=1.0)
        if self.load_in_4bit and not self.use_peft:
            raise ConfigError(f"{where}.load_in_4bit requires {where}.use_peft: true (a 4-bit base model cannot be trained directly)")


@dataclass
class DataConfig:
    """Where training/evaluation prompts come from and how they are formatted."""

    dataset: str = field(default="openai/gsm8k", metadata={"help": "Training dataset: a hub id, or a `datasets` builder name such as 'json' when `data_files` is set."})
    dataset_config: str | None = field(default="main", metadata={"help": "Dataset configuration (subset) name passed to `datasets.load_dataset`; null for none."})
    split: str = field(default="train", metadata={"help": "Split of `dataset` used for training."})
    data_files: str | list[str] | None = field(default=None, metadata={"help": "Local file path(s) to load instead of a hub dataset (e.g. JSONL with the dataset's columns)."})
    prompt_template: str = field(default="d1", metadata={"help": "Name of the registered prompt template that turns a dataset row into a chat prompt; 'd1' is d1's <reasoning>/<answer> format."})
    system_prompt: str | None = field(default=None, metadata={"help": "System prompt overriding the template's own; null keeps the template's."})
    max_prompt_length: int | None = field(default=None, metadata={"help": "Prompts longer than this many tokens are left-truncated; null keeps them whole."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Hub id of the evaluation dataset; null disables evaluation during training."})
    eval_dataset_config: str | None = field(default=None, metadata={"help": "Configuration (subset) name of `eval_dataset`; null for none."})
    eval_data_files: str | list[str] | None = field(default=None, metadata={"help": "Local file path(s) of the evaluation set (instead of a hub dataset)."})
    eval_split: str = field(default="test", metadata={"help": "Split of `eval_dataset` used for evaluation."})
    eval_benchmark: str | None = field(default=None, metadata={"help": "A benchmark of eval/ (gsm8k, math500, humaneval, mbpp, countdown, sudoku) scored at each evaluation with its own graders instead of the training rewards; its data comes from the Hub or data.eval_data_files."})
    eval_limit: int | None = field(default=None, metadata={"help": "Evaluate on at most this many examples; null uses the whole split."})

    def validate(self, where: str = "data") -> None:
        _nonempty(self, where, "dataset", "split", "prompt_template", "eval_split", "eval_dataset")
        if isinstance(self.data_files, list) and not self.data_files:
            raise ConfigError(f"{where}.data_files is an empty list; give at least one path or use null")
        _bound(self, where, ("max_prompt_length", "eval_limit"), 1)


@dataclass
class RolloutConfig(SamplerConfig):
    """How completions are generated: the rollout engine's sampler settings (see
    ``rollouts.sampler_config``) plus group and batch sizes. Defaults are d1's LLaDA settings."""

    num_generations: int = field(default=6, metadata={"help": "Completions sampled per prompt (the GRPO group size)."})
    generation_batch_size: int | None = field(default=None, metadata={"help": "Completions sampled per generation call, a multiple of num_generations (as in TRL); null samples one training batch per call."})
    max_completion_length: int = field(default=256, metadata={"help": "Length in tokens of the masked completion canvas; must be a multiple of block_length."})
    block_length: int | None = field(default=32, metadata={"help": "Tokens per semi-autoregressive block; blocks are denoised left to right (null = one block)."})
    diffusion_steps: int = field(default=128, metadata={"help": "Total denoising steps over the whole completion, split evenly across blocks."})
    temperature: float = field(default=0.9, metadata={"help": "Sampling temperature when predicting masked tokens; 0 is greedy (argmax)."})
    remasking: Remasking | None = field(default="low_confidence", metadata={"help": f"Confidence that picks which masked positions to commit at each step, one of {REMASKING}; null = the model family's reference."})

    def sampler(self) -> SamplerConfig:
        """The rollout engine's settings for this recipe."""
        return SamplerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SamplerConfig)})

    @property
    def steps_per_block(self) -> int:
        return self.diffusion_steps // self.num_blocks

    def validate(self, where: str = "rollout") -> None:
        _bound(self, where, ("num_generations", "max_completion_length", "block_length", "diffusion_steps",
                             "generation_batch_size"), 1)
        _bound(self, where, "cfg_scale", 0.0)
        try:
            self.sampler().check(prefix=f"{where}.")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.generation_batch_size is not None and self.generation_batch_size % self.num_generations:
            raise ConfigError(
                f"{where}.generation_batch_size ({self.generation_batch_size}) must be a multiple of "
                f"{where}.num_generations ({self.num_generations}) so that groups are not split")


@dataclass
class RewardSpec:
    """One weighted reward function of the recipe, looked up by name in the rewards registry."""

    name: str = field(metadata={"help": "Reward function name, resolved in the rewards registry (e.g. 'gsm8k_correct')."})
    weight: float = field(default=1.0, metadata={"help": "Multiplier of this reward in the summed scalar reward."})
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "Keyword arguments of a configurable reward, e.g. {max_completion_length: 256, penalty: -1.0} for length_penalty; checked against its signature before any weights load."})

    def validate(self, where: str = "reward") -> None:
        _nonempty(self, where, "name")
        if not math.isfinite(self.weight):
            raise ConfigError(f"{where}.weight must be a finite number, got {self.weight!r}")


def _d1_rewards() -> list[RewardSpec]:
    return [RewardSpec("gsm8k_correct", 2.0), RewardSpec("xml_format", 0.5)]


@dataclass
class AlgorithmConfig:
    """The RL method: log-prob estimator × advantage × loss, with clipping, KL and rewards.

    ``name`` picks a named composition (``rl.methods``); fields the recipe leaves out take that
    method's defaults, and any of them can be overridden (e.g. ``diffu_grpo`` with ``loss_type: grpo``).
    """

    name: str = field(default="diffu_grpo", metadata={"help": "Named method (rl/methods.py): diffu_grpo, gdpo, mdpo, cj_grpo; its defaults fill the fields the recipe leaves out."})
    estimator: str = field(default="one_step", metadata={"help": "Log-prob estimator (rl/estimators.py): one_step (d1), elbo_mc, elbo_sdmc (GDPO), trajectory (CJ-GRPO, TraceRL), step_prediction (MDPO)."})
    advantage: str = field(default="group", metadata={"help": "Advantage estimator (rl/advantages.py): group (r - group mean, optional std scaling) or mdpo_stepwise (per-step, from intermediate rewards)."})
    loss: str = field(default="clipped", metadata={"help": "Policy loss (rl/losses.py): clipped (PPO/GRPO surrogate) or reinforce (plain policy gradient, no ratio)."})
    beta: float = field(default=0.04, metadata={"help": "KL penalty coefficient against the reference model; 0 skips the reference model."})
    kl_estimator: Literal["k3", "k2"] = field(default="k3", metadata={"help": "Per-token KL estimator: k3 = exp(ref-new) - (ref-new) - 1 (d1, CJ-GRPO), k2 = (new-ref)^2 / 2 (MDPO)."})
    epsilon: float = field(default=0.5, metadata={"help": "Lower clipping range of the importance ratio (ratio >= 1 - epsilon)."})
    epsilon_high: float | None = field(default=None, metadata={"help": "Upper clipping range (ratio <= 1 + epsilon_high); null uses epsilon (DAPO's clip-higher sets it larger)."})
    num_iterations: int = field(default=4, metadata={"help": "Policy updates per generated batch (mu in GRPO); >1 reuses rollouts with importance ratios."})
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = field(default="bnpo", metadata={"help": "Loss normalisation: per-sequence mean (grpo; per unit, then over units, for per-step estimators), constant length (dr_grpo), tokens in the global batch (dapo) or in the local batch (bnpo)."})
    scale_rewards: Literal["group", "batch", "none"] = field(default="none", metadata={"help": "Divide advantages by the reward std of the group, of the batch, or not at all."})
    importance_sampling_level: Literal["token", "sequence", "sequence_sum"] = field(default="token", metadata={"help": "Importance ratio per token (GRPO), per sequence from the mean log-ratio (GSPO), or per sequence from the summed log-ratio, i.e. the ELBO ratio, with the loss divided by the length (GDPO)."})
    p_mask_prompt: float = field(default=0.15, metadata={"help": "Probability of masking each prompt token when estimating log-probs (d1's random prompt masking)."})
    elbo_nodes: int = field(default=3, metadata={"help": "elbo_sdmc: Gauss-Legendre quadrature nodes over the masking ratio t."})
    elbo_masks_per_node: int = field(default=1, metadata={"help": "elbo_sdmc: random masks drawn at each node."})
    elbo_samples: int = field(default=2, metadata={"help": "elbo_mc: (t, mask) draws per sequence (forward passes)."})
    elbo_coupled: bool = field(default=False, metadata={"help": "elbo_mc: draw masks in complementary pairs (mask with ratio t, then its complement with ratio 1-t), so every token is scored once per pair."})
    step_selection: Literal["all", "top_k", "every_k", "merge", "random"] = field(default="all", metadata={"help": "Per-step estimators: which recorded steps are trained: all, the step_k with the largest |advantage| (MDPO), every step_k-th, groups of step_k consecutive steps merged into one (TraceRL's shrink), or step_k at random."})
    step_k: int = field(default=8, metadata={"help": "The k of step_selection."})
    confidence_weighting: bool = field(default=False, metadata={"help": "step_prediction: weight each token by its rollout confidence and each step by L/|masked| (MDPO)."})
    filter_zero_std_groups: bool = field(default=False, metadata={"help": "Drop groups whose rewards are all equal from the loss (their advantage is 0); the fraction is logged either way."})
    old_logp: Literal["recompute", "rollout"] = field(default="recompute", metadata={"help": "Old-policy log-probs for num_iterations > 1: recomputed by an exact forward before the first update, or (trajectory estimator only) the rollout's recorded values."})
    logp_temperature: float | None = field(default=None, metadata={"help": "Temperature applied to logits when scoring; null uses the rollout temperature (1 for greedy rollouts)."})
    score_eos_padding: bool = field(default=False, metadata={"help": "Also score the EOS padding after a completion's first EOS (CJ-GRPO's reference does); default scores tokens up to and including the first EOS."})
    backward_chunk: int | None = field(default=None, metadata={"help": "Units (steps, ELBO samples) per backward pass; null backpropagates all at once. 1 keeps peak activation memory at one forward for per-step estimators."})
    rewards: list[RewardSpec] = field(default_factory=_d1_rewards, metadata={"help": "Weighted reward functions; each name resolves in the rewards registry."})

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    def validate(self, where: str = "algorithm") -> None:
        _nonempty(self, where, "name", "estimator", "advantage", "loss")
        from .methods import METHODS
        from .objective import ADVANTAGES, ESTIMATORS, POLICY_LOSSES
        for key, registry in (("name", METHODS), ("estimator", ESTIMATORS), ("advantage", ADVANTAGES),
                              ("loss", POLICY_LOSSES)):
            try:
                registry.get(getattr(self, key), _join(where, key))
            except KeyError as e:
                raise ConfigError(str(e)) from None
        _bound(self, where, "beta", 0.0)
        _bound(self, where, ("epsilon", "epsilon_high"), 0.0, strict=True)
        _bound(self, where, ("num_iterations", "elbo_nodes", "elbo_masks_per_node", "elbo_samples", "step_k",
                             "backward_chunk"), 1)
        _bound(self, where, "p_mask_prompt", 0.0, hi=1.0)
        _bound(self, where, "logp_temperature", 0.0, strict=True)
        if self.elbo_coupled and self.elbo_samples % 2:
            raise ConfigError(f"{where}.elbo_coupled draws masks in pairs; set {where}.elbo_samples to an even number")
        if self.old_logp == "rollout" and self.estimator != "trajectory":
            raise ConfigError(f"{where}.old_logp 'rollout' reuses the rollout's recorded log-probs, which only the "
                              f"'trajectory' estimator scores; use 'recompute' with {self.estimator!r}")
        if self.advantage == "mdpo_stepwise" and self.estimator != "step_prediction":
            raise ConfigError(f"{where}.advantage 'mdpo_stepwise' gives one advantage per recorded step; it needs "
                              f"{where}.estimator 'step_prediction'")
        if not self.rewards:
            raise ConfigError(f"{where}.rewards is empty; list at least one reward, e.g. [{{name: gsm8k_correct}}]")
        for i, spec in enumerate(self.rewards):
            spec.validate(f"{where}.rewards[{i}]")


@dataclass
class TrainingConfig:
    """Optimizer, schedule, batch sizes, checkpointing and the reference model."""

    output_dir: str = field(default="out/run", metadata={"help": "Directory for checkpoints, the resolved recipe and logs."})
    seed: int = field(default=42, metadata={"help": "Random seed for data order, sampling and initialisation."})
    learning_rate: float = field(default=3e-6, metadata={"help": "Peak learning rate of AdamW."})
    lr_scheduler_type: Literal["constant_with_warmup", "cosine", "linear", "constant"] = field(default="constant_with_warmup", metadata={"help": "Learning-rate schedule, by transformers.get_scheduler with its names and meanings: constant (no warm-up), constant_with_warmup, or linear / cosine decay to 0 at the last step after the warm-up."})
    warmup_steps: int = field(default=0, metadata={"help": "Optimizer steps of linear warm-up from 0 to learning_rate (step s of the warm-up runs at s / warmup_steps of it, as in transformers); 'constant' has none."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW decoupled weight decay."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1 (first-moment decay)."})
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2 (second-moment decay)."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon added to sqrt(v) (TRL's adam_epsilon)."})
    max_grad_norm: float = field(default=0.2, metadata={"help": "Gradient-norm clipping threshold; 0 disables clipping."})
    per_device_train_batch_size: int = field(default=6, metadata={"help": "Completions per device per micro-batch."})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "Micro-batches accumulated before each optimizer step."})
    max_steps: int | None = field(default=None, metadata={"help": "Total optimizer steps; null derives it from num_train_epochs."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training prompts when max_steps is null."})
    save_steps: int = field(default=100, metadata={"help": "Save a checkpoint every this many optimizer steps."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep at most this many checkpoints, deleting the oldest; null keeps all."})
    eval_steps: int | None = field(default=None, metadata={"help": "Evaluate on data.eval_dataset every this many steps; null disables periodic evaluation."})
    bf16: bool = field(default=True, metadata={"help": "Run forward/backward under bfloat16 autocast."})
    deepspeed: str | None = field(default=None, metadata={"help": "Path to a DeepSpeed JSON config; null trains without DeepSpeed."})
    resume_from: str | None = field(default=None, metadata={"help": "Checkpoint directory to resume from, or 'latest' for the newest one in output_dir; null starts fresh."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Stop after this many evaluations without a new best eval reward; null never stops early."})
    keep_best: bool = field(default=True, metadata={"help": "When evaluating, also keep the checkpoint with the best eval reward (besides the last save_total_limit)."})
    sync_ref_model: bool = field(default=True, metadata={"help": "Periodically copy the policy weights into the reference model (TR-DPO style)."})
    ref_model_sync_steps: int = field(default=64, metadata={"help": "Optimizer steps between reference-model syncs when sync_ref_model is true."})

    def validate(self, where: str = "training") -> None:
        _nonempty(self, where, "output_dir", "deepspeed", "resume_from")
        _bound(self, where, ("learning_rate", "num_train_epochs"), 0.0, strict=True)
        _bound(self, where, ("warmup_steps", "weight_decay", "max_grad_norm"), 0)
        _bound(self, where, ("adam_beta1", "adam_beta2"), 0.0, below=1.0)
        if self.lr_scheduler_type == "constant" and self.warmup_steps:
            raise ConfigError(f"{where}.lr_scheduler_type 'constant' has no warm-up (transformers' meaning), but "
                              f"{where}.warmup_steps is {self.warmup_steps}; use 'constant_with_warmup' to warm up, "
                              f"or set {where}.warmup_steps: 0")
        _bound(self, where, "adam_epsilon", 0.0, strict=True)
        _bound(self, where, ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
                             "save_steps", "save_total_limit", "eval_steps", "ref_model_sync_steps",
                             "early_stopping_patience"), 1)


@dataclass
class LoggingConfig:
    """Metric sinks and completion logging."""

    logging_steps: int = field(default=1, metadata={"help": "Log metrics every this many optimizer steps."})
    report_to: list[Literal["wandb", "jsonl"]] = field(default_factory=lambda: ["jsonl"], metadata={"help": "Metric sinks: 'jsonl' appends JSON lines to a file in output_dir, 'wandb' logs to Weights & Biases; [] disables both."})
    project: str = field(default="unmask", metadata={"help": "Project name for wandb."})
    run_name: str | None = field(default=None, metadata={"help": "Run name shown in wandb and the logs; null lets the sink pick one."})
    log_completions: bool = field(default=False, metadata={"help": "Also log sampled prompts, completions and their rewards."})
    num_completions_to_print: int = field(default=4, metadata={"help": "Completions printed to the console at each logging step when log_completions is true."})

    def validate(self, where: str = "logging") -> None:
        _bound(self, where, "logging_steps", 1)
        _bound(self, where, "num_completions_to_print", 0)
        _nonempty(self, where, "project")


def validate_sections(recipe: Any, where: str) -> None:
    """Validate each section of a recipe dataclass (each field's own ``validate``)."""
    for f in dataclasses.fields(recipe):
        getattr(recipe, f.name).validate(_join(where, f.name))


@dataclass
class RecipeConfig:
    """A whole training recipe: one field per YAML section."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Policy model, tokenizer and LoRA settings."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Training/evaluation datasets and prompt formatting."})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "Diffusion sampling used to generate completions."})
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig, metadata={"help": "RL objective, clipping, KL and rewards."})
    training: TrainingConfig = field(default_factory=TrainingConfig, metadata={"help": "Optimizer, schedule, batch sizes and checkpointing."})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Metric sinks and completion logging."})

    def validate(self, where: str = "") -> None:
        validate_sections(self, where)
        t, g = self.training, self.rollout.num_generations
        batch = t.per_device_train_batch_size * t.gradient_accumulation_steps
        if batch % g:
            raise ConfigError(
                f"rollout.num_generations ({g}) must divide the batch of completions per optimizer step, "
                f"training.per_device_train_batch_size x training.gradient_accumulation_steps = {batch}, "
                f"so that every prompt's group is complete; e.g. set training.per_device_train_batch_size to {g}")
        steps, dataset = _join(where, "training.eval_steps"), _join(where, "data.eval_dataset")
        if (self.training.eval_steps is not None and self.data.eval_dataset is None
                and self.data.eval_data_files is None and self.data.eval_benchmark is None):
            raise ConfigError(f"{steps} ({self.training.eval_steps}) is set but {dataset} is null; "
                              f"set {dataset} (or data.eval_data_files) or remove {steps}")


@dataclass
class SftConfig:
    """What masked-diffusion SFT learns from each row (LLaDA's SFT; ``rl/sft.py`` has the loss)."""

    completion_column: str = field(default="answer", metadata={"help": "Dataset column holding the target completion (GSM8K: answer, MATH: solution, the bundled task: completion)."})
    completion_length: int = field(default=256, metadata={"help": "Completion tokens per row: the target is cut to this length or padded with EOS (the padding is learnt, so the model learns where to stop)."})
    mask_eps: float = field(default=1e-3, metadata={"help": "Smallest masking ratio t ~ U(mask_eps, 1); the loss weights masked tokens by 1/t."})

    def validate(self, where: str = "sft") -> None:
        _nonempty(self, where, "completion_column")
        _bound(self, where, "completion_length", 1)
        _bound(self, where, "mask_eps", 0.0, strict=True, below=1.0)


@dataclass
class SftRecipeConfig:
    """An SFT recipe (``unmask sft RECIPE``): model, data, the SFT target, training, logging."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Model, tokenizer and LoRA settings."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Training (and held-out) rows and their prompt template."})
    sft: SftConfig = field(default_factory=SftConfig, metadata={"help": "The completion column and its length."})
    training: TrainingConfig = field(default_factory=TrainingConfig, metadata={"help": "Optimizer, schedule, batch sizes and checkpointing."})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Metric sinks."})

    def validate(self, where: str = "") -> None:
        validate_sections(self, where)
        if self.training.deepspeed is not None:
            raise ConfigError(f"{_join(where, 'training.deepspeed')}: unmask sft runs in one process (CPU or one GPU); "
                              f"remove training.deepspeed (use LoRA, model.use_peft: true, for large models)")
        if self.data.eval_benchmark is not None:
            raise ConfigError(f"{_join(where, 'data.eval_benchmark')}: SFT evaluates its loss on data.eval_dataset rows; "
                              f"run unmask eval on a checkpoint for benchmark scores")


# ----------------------------------------------------------------------------- entry points & output

def apply_overrides(data: Mapping, overrides: Sequence[str], schema: type | None = None) -> dict:
    """``data`` with each ``a.b.c=value`` override applied, keys checked against ``schema`` (default:
    RecipeConfig; ``object`` for none); see :func:`rl.schema.apply_overrides`."""
    return _apply_overrides(data, overrides, RecipeConfig if schema is None else schema)


def recipe_from_dict(data: Mapping | None, overrides: Sequence[str] = (), *, source: str | None = None) -> RecipeConfig:
    """Build and validate a RecipeConfig from parsed YAML data plus dotted overrides."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source or 'recipe'}: top level must be a mapping of sections "
                          f"(model, data, rollout, ...), got {_got(data)}")
    return parse_section(RecipeConfig, with_method_defaults(apply_overrides(data, overrides)), "", source=source)


def with_method_defaults(data: Mapping) -> dict:
    """``data`` with the named method's defaults (``rl.methods``) filled into the ``algorithm`` and
    ``rollout`` keys the recipe leaves out; with ASS and no ``diffusion_steps``, floor(log2 L) steps."""
    from .methods import method_defaults
    result = dict(data)
    algorithm = result.get("algorithm")
    algorithm = algorithm if isinstance(algorithm, Mapping) else {}
    method = method_defaults(algorithm.get("name", AlgorithmConfig.name))
    if method is None:  # unknown names are reported by validation, with the closest valid one
        return result
    for section, defaults in (("algorithm", method.algorithm), ("rollout", method.rollout)):
        given = result.get(section)
        if given is None or isinstance(given, Mapping):
            result[section] = {**defaults, **(given or {})}
    rollout = result.get("rollout")
    if isinstance(rollout, Mapping) and rollout.get("schedule") == "ass" and "diffusion_steps" not in rollout:
        length = rollout.get("max_completion_length", RolloutConfig.max_completion_length)
        if isinstance(length, int) and length > 0:
            rollout["diffusion_steps"] = length.bit_length() - 1
    return result


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Read a YAML recipe, apply ``KEY=VALUE`` overrides, and return the validated RecipeConfig."""
    return recipe_from_dict(read_yaml(path), overrides, source=os.fspath(path))


def load_sft_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> SftRecipeConfig:
    """Read an SFT recipe (``unmask sft``), apply overrides, and return the validated SftRecipeConfig."""
    data = read_yaml(path)
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{os.fspath(path)}: top level must be a mapping of sections (model, data, sft, ...), "
                          f"got {_got(data)}")
    return parse_section(SftRecipeConfig, apply_overrides(data or {}, overrides, SftRecipeConfig), "",
                         source=os.fspath(path))


def read_yaml(path: str | os.PathLike):
    """The parsed YAML of a recipe file; unreadable files and bad YAML raise ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read recipe {os.fspath(path)}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)}: invalid YAML: {exc}") from None
    return data


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass, in field order."""
    return _to_data(cfg)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML (field order kept); ``recipe_from_dict(yaml.safe_load(...))`` round-trips."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)


def save_recipe(cfg: Any, path: str | os.PathLike) -> None:
    """Write ``to_yaml(cfg)`` to ``path``, creating parent directories."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(to_yaml(cfg), encoding="utf-8")
