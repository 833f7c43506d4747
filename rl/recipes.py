"""Recipe files: find them (a path, or a recipe shipped inside the package), read, validate and write them.

``unmask train recipes/tiny-cpu.yaml`` works from a checkout and from a wheel install alike: a relative
path that does not exist is looked up among the packaged recipes (``unmask.recipes``), with or without
its leading ``recipes/``. DeepSpeed configs named in ``training.deepspeed`` resolve the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .config import (
    DpoRecipeConfig,
    RecipeConfig,
    SftRecipeConfig,
    dpo_recipe_from_dict,
    recipe_from_dict,
    sft_recipe_from_dict,
)
from .config.schema import ConfigError, _to_data

__all__ = ["RECIPES_DIR", "packaged_recipes", "find_recipe", "read_yaml", "load_recipe", "load_sft_recipe",
           "load_dpo_recipe",
           "to_dict", "to_yaml", "save_recipe"]

# rl/ and recipes/ are siblings both in a checkout (top-level folders) and installed (unmask/rl, unmask/recipes).
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def packaged_recipes() -> list[str]:
    """The recipes shipped with unmask, as ``recipes/...`` paths (YAML and DeepSpeed JSON)."""
    files = [*RECIPES_DIR.rglob("*.yaml"), *RECIPES_DIR.rglob("*.json")]
    return sorted(f"recipes/{p.relative_to(RECIPES_DIR).as_posix()}" for p in files)


def find_recipe(path: str | os.PathLike) -> Path:
    """``path`` if it exists; else, for a relative path, the packaged recipe of that name (``recipes/x.yaml``
    or ``x.yaml``); else ``path`` unchanged, so reading it reports the missing file."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts[1:] if given.parts[:1] == ("recipes",) else given.parts
    packaged = RECIPES_DIR.joinpath(*parts) if parts else None
    return packaged if packaged is not None and packaged.is_file() else given


def read_yaml(path: str | os.PathLike):
    """The parsed YAML of a recipe file; unreadable files and bad YAML raise ConfigError."""
    try:
        text = find_recipe(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = ""
        if isinstance(exc, FileNotFoundError):
            names = [p for p in packaged_recipes() if p.endswith(".yaml")]
            hint = f"; give a path to a YAML file, or one of the packaged recipes: {', '.join(names)}"
        raise ConfigError(f"cannot read recipe {os.fspath(path)}: {reason}{hint}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)}: invalid YAML: {exc}") from None
    return data


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Read a YAML recipe, apply ``KEY=VALUE`` overrides, and return the validated RecipeConfig."""
    return recipe_from_dict(read_yaml(path), overrides, source=os.fspath(path))


def load_dpo_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> DpoRecipeConfig:
    """Read a preference-optimisation recipe (``unmask dpo``), apply overrides, and return it validated."""
    return dpo_recipe_from_dict(read_yaml(path), overrides, source=os.fspath(path))


def load_sft_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> SftRecipeConfig:
    """Read an SFT recipe (``unmask sft``), apply overrides, and return the validated SftRecipeConfig."""
    return sft_recipe_from_dict(read_yaml(path), overrides, source=os.fspath(path))


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
