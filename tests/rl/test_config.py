"""Tests for rl/config/: the strict recipe schema, overrides, validation and YAML round trip."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args, get_type_hints

import pytest
import yaml

from unmask.rl.config import (
    AlgorithmConfig,
    ConfigError,
    RecipeConfig,
    RewardSpec,
    RolloutConfig,
    apply_overrides,
    parse_section,
    recipe_from_dict,
)
from unmask.rl.recipes import find_recipe, load_recipe, packaged_recipes, save_recipe, to_dict, to_yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "recipes" / "example.yaml"


def _dataclasses_in(cls, seen=None):
    """All dataclasses reachable from cls through field annotations (sections, list elements)."""
    seen = seen if seen is not None else []
    if cls in seen:
        return seen
    seen.append(cls)
    for tp in get_type_hints(cls).values():
        for t in (tp, *get_args(tp)):
            if dataclasses.is_dataclass(t):
                _dataclasses_in(t, seen)
    return seen


def _write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- defaults and schema

def test_defaults_construct_and_validate():
    cfg = RecipeConfig()
    cfg.validate()
    assert cfg.model.name_or_path == "GSAI-ML/LLaDA-8B-Instruct"
    assert (cfg.rollout.num_blocks, cfg.rollout.steps_per_block) == (8, 16)
    assert cfg.algorithm.rewards == [RewardSpec("gsm8k_correct", 2.0), RewardSpec("xml_format", 0.5)]
    assert cfg.logging.report_to == ["jsonl"]
    assert recipe_from_dict({}) == cfg
    assert recipe_from_dict(None) == cfg


def test_every_field_has_help():
    classes = _dataclasses_in(RecipeConfig)
    assert {c.__name__ for c in classes} >= {
        "RecipeConfig", "ModelConfig", "DataConfig", "RolloutConfig", "AlgorithmConfig",
        "RewardSpec", "TrainingConfig", "LoggingConfig"}
    for cls in classes:
        for f in dataclasses.fields(cls):
            help_text = f.metadata.get("help", "")
            assert isinstance(help_text, str) and len(help_text.strip()) > 5, f"{cls.__name__}.{f.name}"


def test_default_factories_are_independent():
    a, b = RecipeConfig(), RecipeConfig()
    a.algorithm.rewards[0].weight = 9.0
    a.logging.report_to.append("wandb")
    assert b.algorithm.rewards[0].weight == 2.0 and b.logging.report_to == ["jsonl"]


# ----------------------------------------------------------------------------- unknown keys

def test_unknown_nested_key_suggests_and_names_file(tmp_path):
    path = _write(tmp_path, "rollout:\n  blok_length: 64\n")
    with pytest.raises(ConfigError, match=r"unknown key 'rollout\.blok_length' in .*r\.yaml; "
                                          r"did you mean 'rollout\.block_length'\?"):
        load_recipe(path)


def test_unknown_section_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'rolout'.*did you mean 'rollout'\?"):
        recipe_from_dict({"rolout": {"block_length": 32}})


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'rollout\.zzz'; valid keys of rollout: "
                                          r"max_completion_length, diffusion_steps, block_length"):
        recipe_from_dict({"rollout": {"zzz": 1}})
    with pytest.raises(ConfigError, match=r"valid top-level keys: model, data, rollout"):
        recipe_from_dict({"qqqqqq": 1})


def test_unknown_key_inside_list_element():
    with pytest.raises(ConfigError, match=r"'algorithm\.rewards\[1\]\.wieght'.*'algorithm\.rewards\[1\]\.weight'"):
        recipe_from_dict({"algorithm": {"rewards": [{"name": "a"}, {"name": "b", "wieght": 1}]}})


# ----------------------------------------------------------------------------- types

@pytest.mark.parametrize("section, key, value, message", [
    ("rollout", "block_length", "abc", r"rollout\.block_length: expected int or null, got str 'abc'"),
    ("rollout", "block_length", True, r"rollout\.block_length: expected int or null, got bool True"),
    ("rollout", "block_length", 1.5, r"rollout\.block_length: expected int or null, got float 1\.5"),
    ("model", "use_peft", 1, r"model\.use_peft: expected bool, got int 1"),
    ("model", "name_or_path", 7, r"model\.name_or_path: expected str, got int 7"),
    ("rollout", "temperature", False, r"rollout\.temperature: expected float, got bool False"),
    ("training", "max_steps", "x", r"training\.max_steps: expected int or null, got str 'x'"),
    ("model", "lora_target_modules", "q_proj", r"model\.lora_target_modules: expected list or null"),
    ("model", "lora_target_modules", ["q", 3], r"model\.lora_target_modules\[1\]: expected str, got int 3"),
    ("data", "data_files", 5, r"data\.data_files: expected str or list or null, got int 5"),
    ("rollout", "remasking", "low_confidense", r"rollout\.remasking: expected one of 'low_confidence', "
                                               r".*got 'low_confidense'; did you mean 'low_confidence'\?"),
    ("logging", "report_to", ["wandbb"], r"logging\.report_to\[0\]: expected one of 'wandb', 'jsonl', "
                                         r"got 'wandbb'; did you mean 'wandb'\?"),
])
def test_wrong_types(section, key, value, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict({section: {key: value}})


def test_bad_literal_lists_allowed_values_and_suggests():
    with pytest.raises(ConfigError, match=re.escape(
            "algorithm.loss_type: expected one of 'grpo', 'dr_grpo', 'dapo', 'bnpo', 'sum', 'step_bnpo', 'step_sum', "
            "'unit_mean', got 'gpro'; "
            "did you mean 'grpo'?")):
        recipe_from_dict({"algorithm": {"loss_type": "gpro"}})


@pytest.mark.parametrize("name, meant", [("grpo", "diffu_grpo"), ("cj-grpo", "cj_grpo"), ("Diffu-GRPO", "diffu_grpo"),
                                         ("mdp", "mdpo")])
def test_a_method_name_suggests_the_method_it_names_before_a_close_spelling(name, meant):
    with pytest.raises(ConfigError, match=re.escape(
            f"algorithm.name {name!r} is not a registered RL method; did you mean {meant!r}?")):
        recipe_from_dict({}, [f"algorithm.name={name}"])


def test_suggestions_prefer_the_same_name_then_a_name_that_contains_it_then_a_close_spelling():
    from unmask.rewards.registry import suggest
    assert suggest("constant-with-warmup", ["constant", "constant_with_warmup"]) == ["constant_with_warmup"]
    assert suggest("grpo", ["gdpo", "diffu_grpo", "cj_grpo"], n=3) == ["diffu_grpo", "cj_grpo", "gdpo"]
    assert suggest("rpo", ["diffu_grpo"]) == []  # a part of a segment is not a segment
    assert suggest("gpro", ["grpo", "dr_grpo"]) == ["grpo"]
    assert suggest(3, ["grpo"]) == [] and suggest("-", ["grpo"]) == []


def test_list_element_field_wrong_type_names_index():
    with pytest.raises(ConfigError, match=r"algorithm\.rewards\[1\]\.weight: expected float, got str 'high'"):
        recipe_from_dict({"algorithm": {"rewards": [{"name": "a"}, {"name": "b", "weight": "high"}]}})


def test_required_field_missing():
    with pytest.raises(ConfigError, match=r"algorithm\.rewards\[0\]\.name: required field is missing"):
        recipe_from_dict({"algorithm": {"rewards": [{"weight": 1.0}]}})


def test_numeric_conversions():
    cfg = recipe_from_dict({"rollout": {"temperature": 1, "block_length": 64.0},
                            "training": {"learning_rate": "1e-5", "max_steps": None}})
    assert cfg.rollout.temperature == 1.0 and isinstance(cfg.rollout.temperature, float)
    assert cfg.rollout.block_length == 64 and isinstance(cfg.rollout.block_length, int)
    assert cfg.training.learning_rate == 1e-5  # YAML 1.1 reads 1e-5 as a string; accepted for floats
    with pytest.raises(ConfigError, match=r"training\.learning_rate: expected float, got str 'fast'"):
        recipe_from_dict({"training": {"learning_rate": "fast"}})


def test_section_must_be_mapping_but_empty_section_means_defaults():
    with pytest.raises(ConfigError, match=r"rollout: expected mapping, got list \[1, 2\]"):
        recipe_from_dict({"rollout": [1, 2]})
    assert recipe_from_dict({"rollout": None}).rollout == RolloutConfig()


# ----------------------------------------------------------------------------- files

def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read recipe .*missing\.yaml"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"list\.yaml: top level must be a mapping"):
        load_recipe(_write(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_recipe(_write(tmp_path, "model: [unclosed\n", "bad.yaml"))
    assert load_recipe(_write(tmp_path, "# only a comment\n", "empty.yaml")) == RecipeConfig()


def test_packaged_recipes_resolve_from_any_directory(tmp_path, monkeypatch):
    """A wheel install has no recipes/ folder in the working directory: relative recipe paths that do not
    exist fall back to the recipes shipped in the package, with or without the leading ``recipes/``."""
    expected = load_recipe(EXAMPLE)
    monkeypatch.chdir(tmp_path)
    assert load_recipe("recipes/example.yaml") == expected == load_recipe("example.yaml")
    assert find_recipe("recipes/deepspeed/zero2.json") == REPO / "recipes" / "deepspeed" / "zero2.json"
    assert "recipes/demo/rl.yaml" in packaged_recipes() and "recipes/deepspeed/zero3.json" in packaged_recipes()
    (tmp_path / "example.yaml").write_text("training: {max_steps: 3}\n")  # a file in the directory wins
    assert load_recipe("example.yaml").training.max_steps == 3
    with pytest.raises(ConfigError, match=r"cannot read recipe recipes/nope\.yaml: .*packaged recipes: .*"
                                          r"recipes/tiny-cpu\.yaml"):
        load_recipe("recipes/nope.yaml")


def test_example_recipe_loads():
    lines = EXAMPLE.read_text().splitlines()
    assert lines[0] == "# unmask train recipes/example.yaml"
    assert lines[1].startswith("#") and "=" in lines[1]
    cfg = load_recipe(EXAMPLE)
    assert cfg.model.name_or_path == "GSAI-ML/LLaDA-8B-Instruct"
    assert [r.name for r in cfg.algorithm.rewards] == ["gsm8k_correct", "xml_format"]
    overrides = lines[1].split(":", 1)[1].split()[3:]  # the override example given on line 2 works
    assert overrides and load_recipe(EXAMPLE, overrides) != cfg


# ----------------------------------------------------------------------------- overrides

def test_override_scalars_parsed_as_yaml(tmp_path):
    path = _write(tmp_path, "rollout:\n  block_length: 32\n")
    cfg = load_recipe(path, ["rollout.block_length=64", "model.use_peft=false", "training.max_steps=null",
                             "model.lora_target_modules=[q_proj, v_proj]", "training.learning_rate=1e-5",
                             "rollout.diffusion_steps = 64"])
    assert cfg.rollout.block_length == 64 and cfg.rollout.diffusion_steps == 64
    assert cfg.model.use_peft is False and cfg.training.max_steps is None
    assert cfg.model.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.training.learning_rate == 1e-5


def test_override_list_of_dataclass_element():
    cfg = recipe_from_dict({}, ["algorithm.rewards.0.weight=1.5"])
    assert cfg.algorithm.rewards == [RewardSpec("gsm8k_correct", 1.5), RewardSpec("xml_format", 0.5)]
    cfg = recipe_from_dict({}, ["algorithm.rewards.2={name: length, weight: -0.1}"])
    assert cfg.algorithm.rewards[2] == RewardSpec("length", -0.1)
    cfg = recipe_from_dict({}, ["algorithm.rewards=[{name: only}]"])
    assert cfg.algorithm.rewards == [RewardSpec("only", 1.0)]
    with pytest.raises(ConfigError, match=r"index 5 out of range for algorithm\.rewards \(2 items\)"):
        recipe_from_dict({}, ["algorithm.rewards.5.weight=1"])
    with pytest.raises(ConfigError, match=r"algorithm\.rewards is a list; index it with a number"):
        recipe_from_dict({}, ["algorithm.rewards.first.weight=1"])


def test_a_reward_entry_carries_its_arguments_from_the_recipe_and_from_overrides(tmp_path):
    path = _write(tmp_path, "algorithm:\n  rewards:\n    - {name: gsm8k_correct}\n"
                            "    - {name: length_penalty, weight: 0.5, args: {max_completion_length: 256}}\n")
    cfg = load_recipe(path, ["algorithm.rewards.1.args.penalty=-0.5"])
    assert cfg.algorithm.rewards == [RewardSpec("gsm8k_correct"),
                                     RewardSpec("length_penalty", 0.5, {"max_completion_length": 256, "penalty": -0.5})]
    assert recipe_from_dict(yaml.safe_load(to_yaml(cfg))) == cfg
    with pytest.raises(ConfigError, match=r"algorithm\.rewards\[0\]\.args: expected mapping, got int 3"):
        recipe_from_dict({"algorithm": {"rewards": [{"name": "length_penalty", "args": 3}]}})


def test_override_unknown_key():
    with pytest.raises(ConfigError, match=r"unknown key 'rollout\.blok_length' in override "
                                          r"'rollout\.blok_length=64'; did you mean 'rollout\.block_length'\?"):
        recipe_from_dict({}, ["rollout.blok_length=64"])
    with pytest.raises(ConfigError, match=r"'algorithm\.rewards\[0\]\.wieght'.*did you mean "
                                          r"'algorithm\.rewards\[0\]\.weight'"):
        recipe_from_dict({}, ["algorithm.rewards.0.wieght=2"])
    with pytest.raises(ConfigError, match=r"model\.dtype is a value, not a section"):
        recipe_from_dict({}, ["model.dtype.x=1"])


def test_override_wrong_type_names_override():
    with pytest.raises(ConfigError, match=r"rollout\.block_length: expected int or null, got str 'abc' "
                                          r"\(from override 'rollout\.block_length=abc'\)"):
        recipe_from_dict({}, ["rollout.block_length=abc"])


@pytest.mark.parametrize("override", ["rollout.block_length", "=64", "rollout..block_length=1", ".x=1"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match=r"malformed override " + re.escape(repr(override))):
        recipe_from_dict({}, [override])


def test_apply_overrides_does_not_mutate_input():
    data = {"rollout": {"block_length": 32}}
    out = apply_overrides(data, ["rollout.block_length=64", "training.seed=1"])
    assert data == {"rollout": {"block_length": 32}}
    assert out["rollout"]["block_length"] == 64 and out["training"]["seed"] == 1


# ----------------------------------------------------------------------------- round trip

def test_yaml_round_trip(tmp_path):
    cfg = load_recipe(EXAMPLE, ["algorithm.epsilon_high=0.28", "data.data_files=[a.jsonl, b.jsonl]",
                                "model.lora_target_modules=[q_proj]", "logging.report_to=[wandb, jsonl]",
                                "data.system_prompt='yes: no # not a comment'"])
    text = to_yaml(cfg)
    assert list(yaml.safe_load(text)) == ["model", "data", "rollout", "algorithm", "training", "logging"]
    assert list(yaml.safe_load(text)["rollout"])[:3] == ["max_completion_length", "diffusion_steps", "block_length"]
    assert recipe_from_dict(yaml.safe_load(text)) == cfg
    assert to_dict(cfg)["algorithm"]["rewards"][0] == {"name": "gsm8k_correct", "weight": 2.0, "args": {}}
    out = tmp_path / "sub" / "resolved.yaml"
    save_recipe(cfg, out)
    assert load_recipe(out) == cfg
    assert to_yaml(load_recipe(out)) == text


# ----------------------------------------------------------------------------- cross-field validation

@pytest.mark.parametrize("data, message", [
    ({"rollout": {"block_length": 48}},
     r"rollout\.max_completion_length \(256\) must be a multiple of rollout\.block_length \(48\)"),
    ({"rollout": {"diffusion_steps": 100}},
     r"rollout\.diffusion_steps \(100\) must be divisible by the number of blocks "
     r"\(8 = max_completion_length / block_length\)"),
    ({"rollout": {"num_generations": 0}}, r"rollout\.num_generations must be >= 1, got 0"),
    ({"rollout": {"block_length": 0}}, r"rollout\.block_length must be >= 1, got 0"),
    ({"rollout": {"temperature": -0.1}}, r"rollout\.temperature must be >= 0"),
    ({"rollout": {"generation_batch_size": 10}},
     r"rollout\.generation_batch_size \(10\) must be a multiple of rollout\.num_generations \(6\)"),
    ({"model": {"lora_r": 0}}, r"model\.lora_r must be >= 1, got 0"),
    ({"model": {"load_in_4bit": True, "use_peft": False}}, r"model\.load_in_4bit requires model\.use_peft"),
    ({"algorithm": {"p_mask_prompt": 1.5}}, r"algorithm\.p_mask_prompt must be <= 1"),
    ({"algorithm": {"p_mask_prompt": -0.1}}, r"algorithm\.p_mask_prompt must be >= 0"),
    ({"algorithm": {"epsilon": 0}}, r"algorithm\.epsilon must be > 0"),
    ({"algorithm": {"beta": -1}}, r"algorithm\.beta must be >= 0"),
    ({"algorithm": {"rewards": []}}, r"algorithm\.rewards is empty"),
    ({"algorithm": {"rewards": [{"name": "a"}, {"name": " "}]}}, r"algorithm\.rewards\[1\]\.name must be a non-empty"),
    ({"training": {"adam_beta2": 1.0}}, r"training\.adam_beta2 must be < 1"),
    ({"training": {"max_steps": 0}}, r"training\.max_steps must be >= 1"),
    ({"training": {"eval_steps": 50}}, r"training\.eval_steps \(50\) is set but data\.eval_dataset is null"),
])
def test_cross_field_validation(data, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(data)


def test_consistent_non_default_rollout_passes():
    cfg = recipe_from_dict({"rollout": {"max_completion_length": 512, "block_length": 64, "diffusion_steps": 256}})
    assert cfg.rollout.steps_per_block == 32


def test_validate_catches_programmatic_mistakes():
    cfg = RecipeConfig()
    cfg.rollout.block_length = 48
    with pytest.raises(ConfigError, match=r"rollout\.block_length \(48\)"):
        cfg.validate()


# ----------------------------------------------------------------------------- parse_section reuse

@dataclass
class _SamplerConfig:
    steps: int = field(default=8, metadata={"help": "denoising steps"})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "mode"})
    tags: dict[str, float] = field(default_factory=dict, metadata={"help": "per-tag weights"})
    inner: RewardSpec | None = field(default=None, metadata={"help": "an optional nested dataclass"})

    def validate(self, where):
        if self.steps > 100:
            raise ConfigError(f"{where}.steps too large")


def test_parse_section_on_other_dataclasses():
    cfg = parse_section(_SamplerConfig, {"steps": 4, "tags": {"x": 1}, "inner": {"name": "r"}}, "sampler")
    assert cfg == _SamplerConfig(steps=4, tags={"x": 1.0}, inner=RewardSpec("r", 1.0))
    with pytest.raises(ConfigError, match=r"unknown key 'sampler\.stepz'.*'sampler\.steps'"):
        parse_section(_SamplerConfig, {"stepz": 4}, "sampler")
    with pytest.raises(ConfigError, match=r"sampler\.tags\.x: expected float, got str 'y'"):
        parse_section(_SamplerConfig, {"tags": {"x": "y"}}, "sampler")
    with pytest.raises(ConfigError, match=r"sampler\.steps too large"):
        parse_section(_SamplerConfig, {"steps": 1000}, "sampler")
    with pytest.raises(ConfigError, match=r"sampler: expected a mapping of _SamplerConfig fields"):
        parse_section(_SamplerConfig, [1], "sampler")
    algo = parse_section(AlgorithmConfig, {"rewards": [{"name": "x", "weight": 3}]}, "algorithm")
    assert algo.rewards == [RewardSpec("x", 3.0)]


def test_union_reports_the_precise_inner_error():
    with pytest.raises(ConfigError, match=r"data\.data_files\[1\]: expected str, got int 3"):
        recipe_from_dict({"data": {"data_files": ["a.jsonl", 3]}})
    assert recipe_from_dict({"data": {"data_files": "a.jsonl"}}).data.data_files == "a.jsonl"


def test_field_names_follow_design():
    """DESIGN.md (Configuration): TRL's GRPO names where the concept is shared, d1's for diffusion settings."""
    trl = {"rollout": ["num_generations", "max_completion_length"],
           "algorithm": ["beta", "epsilon", "num_iterations", "loss_type", "scale_rewards"]}
    d1 = {"rollout": ["block_length", "diffusion_steps", "remasking", "cfg_scale"], "algorithm": ["p_mask_prompt"]}
    sections = {"model", "data", "rollout", "algorithm", "training", "logging"}
    assert [f.name for f in dataclasses.fields(RecipeConfig)] == ["model", "data", "rollout", "algorithm",
                                                                   "training", "logging"]
    cfg = to_dict(RecipeConfig())
    for names in (trl, d1):
        for section, keys in names.items():
            assert section in sections and set(keys) <= set(cfg[section]), (section, keys)
