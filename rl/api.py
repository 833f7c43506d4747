"""The TRL-shaped Python API: ``RLTrainer(model=..., reward_funcs=[...], args=RLConfig(...), train_dataset=...)``.

    from unmask import RLConfig, RLTrainer

    trainer = RLTrainer(model="GSAI-ML/LLaDA-8B-Instruct", reward_funcs=[my_reward, "xml_format"],
                        args={"rollout": {"max_completion_length": 256}, "training": {"max_steps": 100}},
                        train_dataset=datasets.load_dataset("openai/gsm8k", "main", split="train"))
    trainer.train()

It builds the same :class:`~unmask.rl.trainer.Trainer` a recipe builds (``unmask train``), with the recipe's
rewards and datasets given as objects: ``reward_funcs`` are functions with TRL's reward signature, registered
names or ``package.module:function`` import paths; datasets are ``datasets.Dataset``s or lists of dicts.
``args`` is an :data:`RLConfig` (the recipe's typed sections), a recipe as a dict (validated, with the named
method's defaults filled in, as from YAML) or a recipe file. The resolved recipe saved with each checkpoint
names function rewards by import path, so a module-level function can be found again.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .config import RecipeConfig, RewardSpec, recipe_from_dict
from .recipes import load_recipe
from .trainer import Trainer

RLConfig = RecipeConfig  # the recipe's sections: model, data, rollout, algorithm, training, logging

__all__ = ["RLConfig", "RLTrainer"]


def _recipe(args: RecipeConfig | Mapping | str | os.PathLike | None) -> RecipeConfig:
    if args is None:
        return RecipeConfig()
    if isinstance(args, RecipeConfig):
        args.validate()
        return args
    if isinstance(args, Mapping):
        return recipe_from_dict(args, source="args")
    if isinstance(args, (str, os.PathLike)):
        return load_recipe(args)
    raise TypeError(f"args must be an RLConfig, a recipe dict or a recipe path, got {type(args).__name__}")


def _spec(func: Any) -> RewardSpec:
    """How the saved recipe lists a reward: its recipe entry, its name, or a function's import path."""
    if isinstance(func, Mapping):
        return RewardSpec(name=str(func["name"]), weight=float(func.get("weight", 1.0)),
                          args=dict(func.get("args") or {}))
    if isinstance(func, str):
        return RewardSpec(name=func)
    return RewardSpec(name=f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', type(func).__name__)}")


def _rows(dataset: Any, field: str) -> list[dict] | None:
    if dataset is None:
        return None
    rows = [dict(row) for row in dataset]
    if not rows:
        raise ValueError(f"{field} has no rows")
    return rows


class RLTrainer(Trainer):
    """RL post-training of a masked diffusion LM from Python (see the module docstring)."""

    def __init__(self, model: str | os.PathLike, reward_funcs: Callable | str | Iterable,
                 args: RecipeConfig | Mapping | str | os.PathLike | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, log: Callable[[str], None] = print):
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a Hub id or a local directory, got {type(model).__name__}; save a model "
                            f"object with save_pretrained(DIR) and pass DIR")
        cfg = _recipe(args)
        funcs = [reward_funcs] if callable(reward_funcs) or isinstance(reward_funcs, (str, Mapping)) \
            else list(reward_funcs)
        if not funcs:
            raise ValueError("reward_funcs is empty; give at least one reward function or name")
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, name_or_path=os.fspath(model)),
            algorithm=dataclasses.replace(cfg.algorithm, rewards=[_spec(f) for f in funcs]))
        super().__init__(cfg, log, reward_funcs=funcs, train_rows=_rows(train_dataset, "train_dataset"),
                         eval_rows=_rows(eval_dataset, "eval_dataset"))
        self._set_up = False

    def train(self) -> dict[str, float]:
        """Load the model (first call), then train to ``training.max_steps``; returns the last step's metrics."""
        if not self._set_up:
            self.setup()
            self._set_up = True
        return super().train()
