"""The recipe sections other than ``algorithm``: ``model``, ``data``, ``rollout``, ``training`` and ``logging``
(each a dataclass whose fields carry their help strings and whose ``validate`` names the dotted field and the fix)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from unmask.rollouts.sampler_config import REMASKING, Remasking, SamplerConfig

from .schema import ConfigError, _bound, _nonempty


@dataclass
class ModelConfig:
    """Policy model, tokenizer and LoRA adapter settings."""

    name_or_path: str = field(
        default="GSAI-ML/LLaDA-8B-Instruct",
        metadata={"help": "Hugging Face hub id or local directory of the masked diffusion LM to train."},
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Hub id or path of the tokenizer; null uses the tokenizer shipped with `name_or_path`."},
    )
    revision: str | None = field(
        default=None,
        metadata={"help": "Hub revision (branch, tag or commit) of the model; null takes the default branch."},
    )
    dtype: Literal["float32", "bfloat16"] = field(
        default="bfloat16",
        metadata={"help": "Dtype the model weights are loaded in."},
    )
    device: str = field(
        default="auto",
        metadata={"help": "Device to place the model on: 'auto' (GPU if available, else CPU), 'cpu', 'cuda', 'cuda:1', "
                          "..."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow executing modelling code from the hub repository (needed by some LLaDA/Dream "
                          "checkpoints)."},
    )
    use_peft: bool = field(default=True, metadata={"help": "Train LoRA adapters instead of the full model."})
    lora_r: int = field(default=128, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(
        default=64,
        metadata={"help": "LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."},
    )
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout probability applied to the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names LoRA is applied to; null uses the model family's defaults."},
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "Load the base model 4-bit quantised with bitsandbytes (QLoRA); requires use_peft."},
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward pass to save memory at the cost of speed."},
    )

    def validate(self, where: str = "model") -> None:
        _nonempty(self, where, "name_or_path", "device")
        _bound(self, where, ("lora_r", "lora_alpha"), 1)
        _bound(self, where, "lora_dropout", 0.0, below=1.0)
        if self.load_in_4bit and not self.use_peft:
            raise ConfigError(f"{where}.load_in_4bit requires {where}.use_peft: true (a 4-bit base model cannot be "
                              f"trained directly)")


@dataclass
class DataConfig:
    """Where training/evaluation prompts come from and how they are formatted."""

    dataset: str = field(
        default="openai/gsm8k",
        metadata={"help": "Training dataset: a hub id, a `datasets` builder name such as 'json' when `data_files` "
                          "is set, a built-in set ('synthetic_addition'), or your own by import path "
                          "'package.module:name' (a Dataset, a list of dicts, or a function returning one)."},
    )
    dataset_config: str | None = field(
        default="main",
        metadata={"help": "Dataset configuration (subset) name passed to `datasets.load_dataset`; null for none."},
    )
    split: str = field(default="train", metadata={"help": "Split of `dataset` used for training."})
    data_files: str | list[str] | None = field(
        default=None,
        metadata={"help": "Local file path(s) to load instead of a hub dataset (e.g. JSONL with the dataset's "
                          "columns)."},
    )
    prompt_template: str = field(
        default="d1",
        metadata={"help": "Name of the registered prompt template that turns a dataset row into a chat prompt; 'd1' is "
                          "d1's <reasoning>/<answer> format."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System prompt overriding the template's own; null keeps the template's."},
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "Prompts longer than this many tokens are left-truncated; null keeps them whole."},
    )
    eval_dataset: str | None = field(
        default=None,
        metadata={"help": "Hub id of the evaluation dataset; null disables evaluation during training."},
    )
    eval_dataset_config: str | None = field(
        default=None,
        metadata={"help": "Configuration (subset) name of `eval_dataset`; null for none."},
    )
    eval_data_files: str | list[str] | None = field(
        default=None,
        metadata={"help": "Local file path(s) of the evaluation set (instead of a hub dataset)."},
    )
    eval_split: str = field(default="test", metadata={"help": "Split of `eval_dataset` used for evaluation."})
    eval_benchmark: str | None = field(
        default=None,
        metadata={"help": "A benchmark of tasks/ (gsm8k, math500, humaneval, mbpp, countdown, sudoku) scored at each "
                          "evaluation with its own graders instead of the training rewards; its data comes from the "
                          "Hub or data.eval_data_files."},
    )
    eval_limit: int | None = field(
        default=None,
        metadata={"help": "Evaluate on at most this many examples; null uses the whole split."},
    )

    def validate(self, where: str = "data") -> None:
        _nonempty(self, where, "dataset", "split", "prompt_template", "eval_split", "eval_dataset")
        if isinstance(self.data_files, list) and not self.data_files:
            raise ConfigError(f"{where}.data_files is an empty list; give at least one path or use null")
        _bound(self, where, ("max_prompt_length", "eval_limit"), 1)


@dataclass
class BlockDiffusionRolloutConfig:
    """DiffusionGemma's sampler settings (``rollouts/diffusion_gemma.py``); null takes the checkpoint's
    ``generation_config``. Used only for DiffusionGemma models, whose completions are ``max_completion_length``
    tokens at most, in canvases of the model's ``canvas_length``."""

    max_denoising_steps: int | None = field(default=None, metadata={"help": "Denoising steps per canvas (48)."})
    entropy_bound: float | None = field(
        default=None, metadata={"help": "Each step accepts the lowest-entropy tokens whose summed entropy, minus the "
                                        "largest, stays under this bound (0.1)."})
    t_min: float | None = field(default=None, metadata={"help": "Temperature of the last step (0.4)."})
    t_max: float | None = field(default=None, metadata={"help": "Temperature of the first step (0.8)."})
    stability_threshold: int | None = field(
        default=None, metadata={"help": "Steps the canvas's argmax must repeat before it may stop (1)."})
    confidence_threshold: float | None = field(
        default=None, metadata={"help": "Mean entropy under which a stable canvas stops (0.005)."})

    def validate(self, where: str) -> None:
        _bound(self, where, ("max_denoising_steps", "stability_threshold"), 1)
        _bound(self, where, ("entropy_bound", "confidence_threshold"), 0.0)
        _bound(self, where, ("t_min", "t_max"), 0.0, strict=True)


@dataclass
class RolloutConfig(SamplerConfig):
    """How completions are generated: the rollout engine's sampler settings (see
    ``rollouts.sampler_config``) plus group and batch sizes. Defaults are d1's LLaDA settings."""

    num_generations: int = field(default=6, metadata={"help": "Completions sampled per prompt (the GRPO group size)."})
    generation_batch_size: int | None = field(
        default=None,
        metadata={"help": "Completions sampled per generation call, a multiple of num_generations (as in TRL); null "
                          "samples one training batch per call."},
    )
    max_completion_length: int = field(
        default=256,
        metadata={"help": "Length in tokens of the masked completion canvas; must be a multiple of block_length."},
    )
    block_length: int | None = field(
        default=32,
        metadata={"help": "Tokens per semi-autoregressive block; blocks are denoised left to right (null = one "
                          "block)."},
    )
    diffusion_steps: int = field(
        default=128,
        metadata={"help": "Total denoising steps over the whole completion, split evenly across blocks."},
    )
    temperature: float = field(
        default=0.9,
        metadata={"help": "Sampling temperature when predicting masked tokens; 0 is greedy (argmax)."},
    )
    remasking: Remasking | None = field(
        default="low_confidence",
        metadata={"help": f"Confidence that picks which masked positions to commit at each step, one of {REMASKING}; "
                          f"null = the model family's reference."},
    )
    block_diffusion: BlockDiffusionRolloutConfig = field(
        default_factory=BlockDiffusionRolloutConfig,
        metadata={"help": "DiffusionGemma's sampler settings (the masked-diffusion ones above do not apply to it)."},
    )

    def sampler(self) -> SamplerConfig:
        """The rollout engine's settings for this recipe."""
        return SamplerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SamplerConfig)})

    def block_diffusion_settings(self) -> dict:
        """The keyword arguments of ``rollouts.diffusion_gemma.BlockDiffusionConfig`` for this recipe."""
        return {"max_new_tokens": self.max_completion_length, **dataclasses.asdict(self.block_diffusion)}

    @property
    def steps_per_block(self) -> int:
        return self.diffusion_steps // self.num_blocks

    def validate(self, where: str = "rollout") -> None:
        _bound(self, where, ("num_generations", "max_completion_length", "block_length", "diffusion_steps",
                             "generation_batch_size"), 1)
        _bound(self, where, "cfg_scale", 0.0)
        self.block_diffusion.validate(f"{where}.block_diffusion")
        try:
            self.sampler().check(prefix=f"{where}.")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.generation_batch_size is not None and self.generation_batch_size % self.num_generations:
            raise ConfigError(
                f"{where}.generation_batch_size ({self.generation_batch_size}) must be a multiple of "
                f"{where}.num_generations ({self.num_generations}) so that groups are not split")


@dataclass
class TrainingConfig:
    """Optimizer, schedule, batch sizes, checkpointing and the reference model."""

    output_dir: str = field(
        default="out/run",
        metadata={"help": "Directory for checkpoints, the resolved recipe and logs."},
    )
    seed: int = field(default=42, metadata={"help": "Random seed for data order, sampling and initialisation."})
    learning_rate: float = field(default=3e-6, metadata={"help": "Peak learning rate of AdamW."})
    lr_scheduler_type: Literal["constant_with_warmup", "cosine", "linear", "constant"] = field(
        default="constant_with_warmup",
        metadata={"help": "Learning-rate schedule, by transformers.get_scheduler with its names and meanings: constant "
                          "(no warm-up), constant_with_warmup, or linear / cosine decay to 0 at the last step after "
                          "the warm-up."},
    )
    warmup_steps: int = field(
        default=0,
        metadata={"help": "Optimizer steps of linear warm-up from 0 to learning_rate (step s of the warm-up runs at s "
                          "/ warmup_steps of it, as in transformers); 'constant' has none."},
    )
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW decoupled weight decay."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1 (first-moment decay)."})
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2 (second-moment decay)."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon added to sqrt(v) (TRL's adam_epsilon)."})
    max_grad_norm: float = field(
        default=0.2,
        metadata={"help": "Gradient-norm clipping threshold; 0 disables clipping."},
    )
    per_device_train_batch_size: int = field(default=6, metadata={"help": "Completions per device per micro-batch."})
    gradient_accumulation_steps: int = field(
        default=2,
        metadata={"help": "Micro-batches accumulated before each optimizer step."},
    )
    max_steps: int | None = field(
        default=None,
        metadata={"help": "Total optimizer steps; null derives it from num_train_epochs."},
    )
    num_train_epochs: float = field(
        default=1.0,
        metadata={"help": "Passes over the training prompts when max_steps is null."},
    )
    save_steps: int = field(default=100, metadata={"help": "Save a checkpoint every this many optimizer steps."})
    save_total_limit: int | None = field(
        default=None,
        metadata={"help": "Keep at most this many checkpoints, deleting the oldest; null keeps all."},
    )
    eval_steps: int | None = field(
        default=None,
        metadata={"help": "Evaluate on data.eval_dataset every this many steps; null disables periodic evaluation."},
    )
    bf16: bool = field(default=True, metadata={"help": "Run forward/backward under bfloat16 autocast."})
    deepspeed: str | None = field(
        default=None,
        metadata={"help": "Path to a DeepSpeed JSON config; null trains without DeepSpeed."},
    )
    resume_from: str | None = field(
        default=None,
        metadata={"help": "Checkpoint directory to resume from, or 'latest' for the newest one in output_dir; null "
                          "starts fresh."},
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without a new best eval reward; null never stops early."},
    )
    keep_best: bool = field(
        default=True,
        metadata={"help": "When evaluating, also keep the checkpoint with the best eval reward (besides the last "
                          "save_total_limit)."},
    )
    sync_ref_model: bool = field(
        default=True,
        metadata={"help": "Periodically copy the policy weights into the reference model (TR-DPO style)."},
    )
    ref_model_sync_steps: int = field(
        default=64,
        metadata={"help": "Optimizer steps between reference-model syncs when sync_ref_model is true."},
    )

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
    report_to: list[Literal["wandb", "jsonl"]] = field(
        default_factory=lambda: ["jsonl"],
        metadata={"help": "Metric sinks: 'jsonl' appends JSON lines to a file in output_dir, 'wandb' logs to Weights & "
                          "Biases; [] disables both."},
    )
    project: str = field(default="unmask", metadata={"help": "Project name for wandb."})
    run_name: str | None = field(
        default=None,
        metadata={"help": "Run name shown in wandb and the logs; null lets the sink pick one."},
    )
    log_completions: bool = field(
        default=False,
        metadata={"help": "Also log sampled prompts, completions and their rewards."},
    )
    num_completions_to_print: int = field(
        default=4,
        metadata={"help": "Completions printed to the console at each logging step when log_completions is true."},
    )
    log_trajectories: int = field(
        default=0,
        metadata={"help": "At each logging step, write the first N rollouts' trajectory records and their HTML replay "
                          "(unmask view) to output_dir/trajectories/ (LLaDA and Dream; 0: none)."},
    )

    def validate(self, where: str = "logging") -> None:
        _bound(self, where, "log_trajectories", 0)
        _bound(self, where, "logging_steps", 1)
        _bound(self, where, "num_completions_to_print", 0)
        _nonempty(self, where, "project")
