"""Recipe schema for ``unmask train`` and ``unmask sft`` (reading and writing the files: ``rl/recipes.py``).

A recipe is a YAML file whose top-level sections (``model``, ``data``, ``rollout``, ``algorithm``,
``training``, ``logging``) map onto the dataclasses of ``sections.py`` and ``algorithm.py``; ``recipe.py``
assembles them. Loading is strict (``schema.py``): unknown keys, wrong types and inconsistent settings raise
:class:`ConfigError` naming the dotted field and the fix. Defaults reproduce d1's diffu-GRPO recipe for
LLaDA-8B-Instruct on GSM8K. Field names follow TRL's ``GRPOConfig`` where the concept is shared, and d1's
names for diffusion settings.
"""

from .algorithm import AlgorithmConfig, RewardSpec
from .dpo import DpoConfig, DpoRecipeConfig, dpo_recipe_from_dict
from .recipe import (
    RecipeConfig,
    SftConfig,
    SftRecipeConfig,
    apply_overrides,
    recipe_from_dict,
    sft_recipe_from_dict,
    with_method_defaults,
)
from .schema import ConfigError, parse_section
from .sections import DataConfig, LoggingConfig, ModelConfig, RolloutConfig, TrainingConfig

__all__ = [
    "ConfigError", "ModelConfig", "DataConfig", "RolloutConfig", "RewardSpec", "AlgorithmConfig",
    "TrainingConfig", "LoggingConfig", "RecipeConfig", "SftConfig", "SftRecipeConfig", "recipe_from_dict",
    "sft_recipe_from_dict", "parse_section", "apply_overrides", "with_method_defaults", "DpoConfig", "DpoRecipeConfig",
    "dpo_recipe_from_dict",
]
