"""The TRL-shaped Python API: ``RLTrainer(model=..., reward_funcs=[...], args=RLConfig(...), train_dataset=...)``.

    from unmask import RLConfig, RLTrainer

    trainer = RLTrainer(model="GSAI-ML/LLaDA-8B-Instruct", reward_funcs=[my_reward, "xml_format"],
                        args=RLConfig(method="gdpo", max_completion_length=256, max_steps=100),
                        train_dataset=datasets.load_dataset("openai/gsm8k", "main", split="train"))
    trainer.train()

It builds the same :class:`~unmask.rl.trainer.Trainer` a recipe builds (``unmask train``), with the recipe's
model, rewards and datasets given as objects: ``model`` is a Hub id, a directory, or a native model in memory
(a PEFT model around one trains its adapter; ``processing_class`` is its tokenizer, loaded from the model's
``name_or_path`` when not given); ``reward_funcs`` are functions with TRL's reward signature, registered
names or ``package.module:function`` import paths; datasets are ``datasets.Dataset``s or lists of dicts.
``args`` is an :class:`RLConfig` (flat TRL-style settings with the method's defaults), a recipe as a dict
(sections or flat settings, validated as from YAML) or a recipe file. The resolved recipe saved with each
checkpoint names function rewards by import path, so a module-level function can be found again.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from unmask.rl.training.policy import is_peft_model
from unmask.rollouts.adapter import wrap_model
from unmask.rollouts.diffusion_gemma_engine import MODEL_TYPE as BLOCK_DIFFUSION

from .config import ModelConfig, RecipeConfig, RewardSpec
from .config.flat import RLConfig
from .recipes import load_recipe
from .trainer import Trainer

__all__ = ["RLConfig", "RLTrainer"]
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def _recipe(args: RecipeConfig | Mapping | str | os.PathLike | None) -> RLConfig:
    if args is None:
        return RLConfig()
    if isinstance(args, RecipeConfig):
        args.validate()
        return args if isinstance(args, RLConfig) else RLConfig(**vars(args))
    if isinstance(args, Mapping):  # sections ({"training": {...}}) and flat settings ({"learning_rate": ...}) alike
        return RLConfig(**args)
    if isinstance(args, (str, os.PathLike)):
        return RLConfig(**vars(load_recipe(args)))
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


def _model_section(section: ModelConfig, model: Any, tokenizer: Any) -> ModelConfig:
    """The recipe's model section for a model given in memory: its name, dtype and (PEFT model) LoRA settings,
    so that the saved recipe says what was trained."""
    base = model.get_base_model() if is_peft_model(model) else model
    if getattr(getattr(base, "config", None), "model_type", None) != BLOCK_DIFFUSION:  # DiffusionGemma: its own path
        wrap_model(base, tokenizer)  # a model unmask cannot drive fails now, naming what it takes
    name = str(getattr(base, "name_or_path", "") or "")
    if not name and tokenizer is None:
        raise ValueError(f"the {type(base).__name__} given has no name_or_path to load its tokenizer from; pass "
                         f"processing_class=<its tokenizer>")
    changes: dict[str, Any] = dict(name_or_path=name or f"<in-memory {type(base).__name__}>",
                                   dtype=DTYPE_NAMES.get(base.dtype, section.dtype))
    if is_peft_model(model):
        lora = model.peft_config["default"]
        changes.update(use_peft=True, lora_r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                       lora_target_modules=sorted(lora.target_modules))
    return dataclasses.replace(section, **changes)


class RLTrainer(Trainer):
    """RL post-training of a masked diffusion LM from Python (see the module docstring)."""

    def __init__(self, model: str | os.PathLike | Any, reward_funcs: Callable | str | Iterable,
                 args: RecipeConfig | Mapping | str | os.PathLike | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, log: Callable[[str], None] = print):
        cfg = _recipe(args)
        model_object = None
        if not isinstance(model, (str, os.PathLike)):
            model_object, section = model, _model_section(cfg.model, model, processing_class)
        else:
            section = dataclasses.replace(cfg.model, name_or_path=os.fspath(model))
        funcs = [reward_funcs] if callable(reward_funcs) or isinstance(reward_funcs, (str, Mapping)) \
            else list(reward_funcs)
        if not funcs:
            raise ValueError("reward_funcs is empty; give at least one reward function or name")
        cfg = dataclasses.replace(cfg, model=section,
                                  algorithm=dataclasses.replace(cfg.algorithm, rewards=[_spec(f) for f in funcs]))
        super().__init__(cfg, log, reward_funcs=funcs, train_rows=_rows(train_dataset, "train_dataset"),
                         eval_rows=_rows(eval_dataset, "eval_dataset"), model=model_object,
                         tokenizer=processing_class)
        self._set_up = False

    def train(self) -> dict[str, float]:
        """Load the model (first call), then train to ``training.max_steps``; returns the last step's metrics."""
        if not self._set_up:
            self.setup()
            self._set_up = True
        return super().train()
