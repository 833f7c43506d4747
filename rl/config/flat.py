"""``RLConfig``: the recipe as TRL's flat ``GRPOConfig`` shape, for the Python API.

    RLConfig(method="gdpo", output_dir="out/gdpo", learning_rate=3e-6, num_generations=6, beta=0.0,
             max_completion_length=256, max_steps=100)

Every keyword is a field of one recipe section (field names are unique across sections, and follow TRL's
``GRPOConfig`` where the concept is shared), so it lands where the YAML would put it; ``method`` is
``algorithm.name``. Settings not given take the method's defaults (``rl/algorithms/methods.py``), then the
schema's, exactly as for a recipe file that leaves them out. Whole sections may be given too
(``RLConfig(rollout=RolloutConfig(...), beta=0.0)``). Reading and assigning a flat name reaches its section
(``args.learning_rate`` is ``args.training.learning_rate``). It is a :class:`RecipeConfig`: everything that
takes a recipe takes it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from unmask.rewards.registry import suggest

from .recipe import RecipeConfig, recipe_from_dict
from .schema import ConfigError, _to_data

SECTIONS = tuple(f.name for f in dataclasses.fields(RecipeConfig))
# flat name → its section (``name`` is reached as ``method``, which says what it names)
SECTION_OF: dict[str, str] = {g.name: f.name for f in dataclasses.fields(RecipeConfig)
                              for g in dataclasses.fields(f.default_factory()) if (f.name, g.name) != ("algorithm",
                                                                                                        "name")}


class RLConfig(RecipeConfig):
    """A training recipe built from flat keyword settings (see the module docstring)."""

    def __init__(self, model=None, data=None, rollout=None, algorithm=None, training=None, logging=None, *,
                 method: str | None = None, **settings: Any):
        unknown = [k for k in settings if k not in SECTION_OF]
        if unknown:
            close = suggest(unknown[0], list(SECTION_OF) + ["method"])
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"RLConfig: unknown setting {unknown[0]!r}; {hint}every recipe field is a keyword "
                              f"(the README's recipe reference lists them) and method names the algorithm")
        given = dict(model=model, data=data, rollout=rollout, algorithm=algorithm, training=training,
                     logging=logging)
        tree = {name: _to_data(section) for name, section in given.items() if section is not None}
        for key, value in settings.items():
            tree.setdefault(SECTION_OF[key], {})[key] = value
        if method is not None:
            tree.setdefault("algorithm", {})["name"] = method
        recipe = recipe_from_dict(tree, source="RLConfig")
        super().__init__(**{name: getattr(recipe, name) for name in SECTIONS})

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails: a flat name
        if name == "method":
            return self.algorithm.name
        section = SECTION_OF.get(name)
        if section is None or section not in self.__dict__:
            raise AttributeError(f"RLConfig has no setting {name!r}")
        return getattr(self.__dict__[section], name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "method":
            name, section = "name", "algorithm"
        else:
            section = SECTION_OF.get(name)
        if section is None or name in SECTIONS:
            object.__setattr__(self, name, value)
        else:
            setattr(getattr(self, section), name, value)
