"""The ``unmask dpo`` recipe: model, data (TRL's preference format: ``prompt``, ``chosen``, ``rejected``), the
VRPO objective, training, logging. The loss and trainer: ``rl/dpo.py``."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .recipe import apply_overrides, validate_offline
from .schema import ConfigError, _bound, _got, _nonempty, parse_section
from .sections import DataConfig, LoggingConfig, ModelConfig, TrainingConfig


@dataclass
class DpoConfig:
    """VRPO (LLaDA 1.5): DPO on Monte Carlo ELBO estimates, with the same draws for the policy and the reference."""

    chosen_column: str = field(default="chosen", metadata={"help": "Dataset column of the preferred completion."})
    rejected_column: str = field(default="rejected", metadata={"help": "Dataset column of the other completion."})
    completion_length: int = field(
        default=256,
        metadata={"help": "Completion tokens per response: cut to this length or padded with EOS; the ELBO scores the "
                          "tokens up to and including the first EOS."},
    )
    beta: float = field(default=0.2, metadata={"help": "DPO's beta (VRPO: 0.2)."})
    elbo_samples: int = field(
        default=8,
        metadata={"help": "Monte Carlo samples per response (VRPO's optimal allocation: one mask per sampled ratio; "
                          "its budget n = 8)."},
    )
    antithetic: bool = field(
        default=True,
        metadata={"help": "Score the reference on the policy's draws (VRPO's antithetic sampling); false draws them "
                          "independently."},
    )
    sft_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of LLaDA's SFT loss on the chosen responses added to the DPO loss (VRPO adds 0.05 of "
                          "an SFT loss whose target it does not specify); 0: DPO alone."},
    )
    max_minutes: float | None = field(
        default=None,
        metadata={"help": "Wall-clock bound: stop after the first optimizer step that ends this many minutes into "
                          "training, saving a checkpoint there."},
    )

    def validate(self, where: str = "dpo") -> None:
        _nonempty(self, where, "chosen_column", "rejected_column")
        _bound(self, where, ("completion_length", "elbo_samples"), 1)
        _bound(self, where, "beta", 0.0, strict=True)
        _bound(self, where, "sft_weight", 0.0)
        _bound(self, where, "max_minutes", 0.0, strict=True)


@dataclass
class DpoRecipeConfig:
    """A preference-optimisation recipe (``unmask dpo RECIPE``)."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Policy model and LoRA settings; the "
                                                                              "reference is its starting point."})
    data: DataConfig = field(
        default_factory=DataConfig,
        metadata={"help": "Preference rows (prompt, chosen, rejected) and their prompt template."},
    )
    dpo: DpoConfig = field(default_factory=DpoConfig, metadata={"help": "The VRPO objective."})
    training: TrainingConfig = field(
        default_factory=TrainingConfig,
        metadata={"help": "Optimizer, schedule, batch sizes and checkpointing."},
    )
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Metric sinks."})

    def validate(self, where: str = "") -> None:
        validate_offline(self, where, "dpo", "DPO evaluates its loss and preference accuracy")


def dpo_recipe_from_dict(data: Mapping | None, overrides: Sequence[str] = (), *,
                         source: str | None = None) -> DpoRecipeConfig:
    """Build and validate a DpoRecipeConfig (``unmask dpo``) from parsed YAML data plus dotted overrides. The
    reference stays the starting model unless the recipe asks otherwise (``training.sync_ref_model`` defaults to
    false here: TR-DPO's periodic re-sync is opt-in)."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source or 'recipe'}: top level must be a mapping of sections (model, data, dpo, ...), "
                          f"got {_got(data)}")
    data = dict(data or {})
    training = data.get("training")
    if training is None or isinstance(training, Mapping):
        data["training"] = {"sync_ref_model": False, **(training or {})}
    return parse_section(DpoRecipeConfig, apply_overrides(data, overrides, DpoRecipeConfig), "", source=source)
