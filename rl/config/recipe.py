"""Whole recipes: ``RecipeConfig`` (``unmask train``) and ``SftRecipeConfig`` (``unmask sft``), built from parsed
YAML plus dotted overrides, with the named method's defaults filled in."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .algorithm import AlgorithmConfig
from .schema import ConfigError, _bound, _got, _join, _nonempty, parse_section
from .schema import apply_overrides as _apply_overrides
from .sections import DataConfig, LoggingConfig, ModelConfig, RolloutConfig, TrainingConfig


def validate_sections(recipe: Any, where: str) -> None:
    """Validate each section of a recipe dataclass (each field's own ``validate``)."""
    for f in dataclasses.fields(recipe):
        getattr(recipe, f.name).validate(_join(where, f.name))


@dataclass
class RecipeConfig:
    """A whole training recipe: one field per YAML section."""

    model: ModelConfig = field(
        default_factory=ModelConfig,
        metadata={"help": "Policy model, tokenizer and LoRA settings."},
    )
    data: DataConfig = field(
        default_factory=DataConfig,
        metadata={"help": "Training/evaluation datasets and prompt formatting."},
    )
    rollout: RolloutConfig = field(
        default_factory=RolloutConfig,
        metadata={"help": "Diffusion sampling used to generate completions."},
    )
    algorithm: AlgorithmConfig = field(
        default_factory=AlgorithmConfig,
        metadata={"help": "RL objective, clipping, KL and rewards."},
    )
    training: TrainingConfig = field(
        default_factory=TrainingConfig,
        metadata={"help": "Optimizer, schedule, batch sizes and checkpointing."},
    )
    logging: LoggingConfig = field(
        default_factory=LoggingConfig,
        metadata={"help": "Metric sinks and completion logging."},
    )

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

    completion_column: str = field(
        default="answer",
        metadata={"help": "Dataset column holding the target completion (GSM8K: answer, MATH: solution, the bundled "
                          "task: completion)."},
    )
    completion_length: int = field(
        default=256,
        metadata={"help": "Completion tokens per row: the target is cut to this length or padded with EOS (the padding "
                          "is learnt, so the model learns where to stop)."},
    )
    mask_eps: float = field(
        default=1e-3,
        metadata={"help": "Smallest masking ratio t ~ U(mask_eps, 1); the loss weights masked tokens by 1/t."},
    )
    init_model: dict[str, int | str] | None = field(
        default=None,
        metadata={"help": "Train from scratch: a random LLaDA of this shape (make_tiny's sizes, e.g. {d_model: 96, "
                          "n_layers: 3, n_heads: 4, mlp_hidden_size: 256}; with model_type: diffusion_gemma, a "
                          "random DiffusionGemma of these text-config sizes and canvas_length; byte tokenizer, raw "
                          "chat template), "
                          "seeded by training.seed, written to training.output_dir/init and trained instead of "
                          "model.name_or_path; null trains model.name_or_path."},
    )
    max_minutes: float | None = field(
        default=None,
        metadata={"help": "Wall-clock bound: stop after the first optimizer step that ends this many minutes into "
                          "training, saving a checkpoint there; null: training.max_steps (or num_train_epochs) alone "
                          "bounds the run."},
    )

    def validate(self, where: str = "sft") -> None:
        _nonempty(self, where, "completion_column")
        _bound(self, where, "completion_length", 1)
        _bound(self, where, "mask_eps", 0.0, strict=True, below=1.0)
        _bound(self, where, "max_minutes", 0.0, strict=True)
        for key, value in (self.init_model or {}).items():
            if key == "model_type" and value not in ("llada", "diffusion_gemma"):
                raise ConfigError(f"{where}.init_model.model_type: expected 'llada' or 'diffusion_gemma', got "
                                  f"{_got(value)}")
            if key != "model_type" and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"{where}.init_model.{key}: expected int, got {_got(value)}")


@dataclass
class SftRecipeConfig:
    """An SFT recipe (``unmask sft RECIPE``): model, data, the SFT target, training, logging."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Model, tokenizer and LoRA settings."})
    data: DataConfig = field(
        default_factory=DataConfig,
        metadata={"help": "Training (and held-out) rows and their prompt template."},
    )
    sft: SftConfig = field(default_factory=SftConfig, metadata={"help": "The completion column and its length."})
    training: TrainingConfig = field(
        default_factory=TrainingConfig,
        metadata={"help": "Optimizer, schedule, batch sizes and checkpointing."},
    )
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Metric sinks."})

    def validate(self, where: str = "") -> None:
        validate_offline(self, where, "sft", "SFT evaluates its loss")


def validate_offline(recipe: Any, where: str, command: str, evaluates: str) -> None:
    """The checks of an offline recipe (``unmask sft``, ``unmask dpo``): its sections, held-out rows rather than a
    benchmark, and under DeepSpeed a starting checkpoint (a from-scratch model is written by one process)."""
    validate_sections(recipe, where)
    if recipe.training.deepspeed is not None and getattr(getattr(recipe, "sft", None), "init_model", None):
        raise ConfigError(f"{_join(where, 'training.deepspeed')}: sft.init_model writes its random start model from "
                          f"one process; run it without DeepSpeed, or start from a checkpoint (model.name_or_path)")
    if recipe.data.eval_benchmark is not None:
        raise ConfigError(f"{_join(where, 'data.eval_benchmark')}: {evaluates} on data.eval_dataset rows; run "
                          f"unmask eval on a checkpoint for benchmark scores")


def apply_overrides(data: Mapping, overrides: Sequence[str], schema: type | None = None) -> dict:
    """``data`` with each ``a.b.c=value`` override applied, keys checked against ``schema`` (default:
    RecipeConfig; ``object`` for none); see :func:`unmask.rl.config.schema.apply_overrides`."""
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
    """``data`` with the named method's defaults (``rl.algorithms.methods``) filled into the ``algorithm`` and
    ``rollout`` keys the recipe leaves out; with no ``diffusion_steps``, floor(log2 L) under ASS and L with
    ``block_length: 1``."""
    from unmask.rl.algorithms.methods import method_defaults
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
    if isinstance(rollout, Mapping) and "diffusion_steps" not in rollout:
        length = rollout.get("max_completion_length", RolloutConfig.max_completion_length)
        if isinstance(length, int) and length > 0 and rollout.get("schedule") == "ass":
            rollout["diffusion_steps"] = length.bit_length() - 1
        elif isinstance(length, int) and length > 0 and rollout.get("block_length") == 1:
            rollout["diffusion_steps"] = length  # left to right, one token per step (JustGRPO)
    return result


def sft_recipe_from_dict(data: Mapping | None, overrides: Sequence[str] = (), *,
                         source: str | None = None) -> SftRecipeConfig:
    """Build and validate an SftRecipeConfig (``unmask sft``) from parsed YAML data plus dotted overrides."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source or 'recipe'}: top level must be a mapping of sections (model, data, sft, ...), "
                          f"got {_got(data)}")
    return parse_section(SftRecipeConfig, apply_overrides(data or {}, overrides, SftRecipeConfig), "", source=source)
