"""Registration of the native families with transformers' Auto classes.

After :func:`register_auto_classes`, ``AutoConfig`` knows ``llada`` and ``Dream`` (the published
``model_type`` strings) and ``AutoModel`` / ``AutoModelForMaskedLM`` build ``LLaDAModelLM`` / ``DreamModel``,
so ``transformers.AutoModel.from_pretrained(dir)`` loads a saved (or published) checkpoint without remote
code. ``import unmask`` runs this by itself once transformers' auto modules load (``unmask/__init__.py``).
A model type that transformers (or another library) already maps to a different config is left alone:
the native class is then reached through ``unmask.rollouts.adapter.load_model`` only. Both functions are
idempotent and return what is registered, by model type.
"""
from __future__ import annotations

import warnings


def _native_configs() -> list:
    from .configuration import DreamConfig, LLaDAConfig
    return [LLaDAConfig, DreamConfig]


def register_configs() -> dict[str, type]:
    """Register the native configs with ``AutoConfig`` (imports no model code)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, AutoConfig
    registered = {}
    for config_class in _native_configs():
        model_type = config_class.model_type
        if model_type in CONFIG_MAPPING:
            existing = CONFIG_MAPPING[model_type]
            if existing is not config_class:
                warnings.warn(f"transformers already maps model_type {model_type!r} to {existing.__module__}."
                              f"{existing.__name__}; unmask's native {config_class.__name__} is not registered with "
                              f"AutoConfig (unmask's load_model still uses it)", stacklevel=2)
                continue
        else:
            AutoConfig.register(model_type, config_class)
        registered[model_type] = config_class
    return registered


def register_auto_classes() -> dict[str, type]:
    """Register the configs and the native models with ``AutoModel`` and ``AutoModelForMaskedLM``; returns the
    model class registered for each model type."""
    from transformers.models.auto.modeling_auto import AutoModel, AutoModelForMaskedLM

    from .dream import DreamModel
    from .llada import LLaDAModelLM
    configs = register_configs()
    registered = {}
    for model_class in (LLaDAModelLM, DreamModel):
        config_class = model_class.config_class
        if configs.get(config_class.model_type) is not config_class:
            continue
        for auto in (AutoModel, AutoModelForMaskedLM):
            auto.register(config_class, model_class, exist_ok=True)
        registered[config_class.model_type] = model_class
    return registered
