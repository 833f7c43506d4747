"""The README's metrics tables are the truth: the tiny RL and SFT trainers, run for a couple of steps with every
optional metric switched on, write exactly the names the tables list (placeholders filled with the run's
reward, benchmark and grader names), and the names are TRL's where TRL has them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from unmask.rl.recipes import load_sft_recipe
from unmask.rl.sft import SftTrainer
from unmask.rl.trainer import Trainer
from unmask.tasks import BENCHMARKS

from ..paths import GSM8K_TEST, LLADA_TINY, REPO
from .test_trainer import recipe

README = REPO / "README.md"
ROW = re.compile(r"^\| `([^`]+)` \|")


def table(header: str) -> list[str]:
    """The metric names of the README table whose header row starts with ``header``."""
    lines = README.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"| {header}")]
    assert len(starts) == 1, f"the README has {len(starts)} tables headed {header!r}"
    names = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        match = ROW.match(line)
        assert match, f"a row of the {header!r} table does not start with a `name`: {line}"
        names.append(match.group(1))
    return names


def expand(names: list[str], **values: list[str]) -> set[str]:
    """Each name with its ``<placeholder>``s replaced by every given value."""
    out = set()
    for name in names:
        variants = [name]
        for key, options in values.items():
            if f"<{key}>" in name:
                variants = [v.replace(f"<{key}>", o) for v in variants for o in options]
        assert "<" not in "".join(variants), f"no values given for a placeholder of {name}"
        out.update(variants)
    return out


def keys(out: Path) -> set[str]:
    return {k for line in (out / "metrics.jsonl").read_text().splitlines() for k in json.loads(line)}


def test_rl_metrics_are_the_readme_table(tmp_path):
    rewards = ["digit_fraction_for_tests", "xml_format"]
    common = ["algorithm.rewards=[{name: digit_fraction_for_tests}, {name: xml_format}]", "algorithm.beta=0.04",
              "algorithm.loss=clipped", "training.max_steps=4", "training.save_steps=100", "training.eval_steps=2",
              "logging.logging_steps=2"]
    Trainer(recipe(tmp_path / "rewards", *common, "data.eval_dataset=synthetic_addition",
                   "data.eval_dataset_config='2'", "data.eval_limit=2",  # + the value model's metrics
                   "algorithm.estimator=trajectory", "algorithm.value_model=policy")).setup().train()
    Trainer(recipe(tmp_path / "benchmark", *common, "training.max_steps=2", "data.eval_benchmark=gsm8k",
                   f"data.eval_data_files={GSM8K_TEST}", "data.eval_limit=2",  # + TraceRL's and IGPO's metrics
                   "algorithm.difficulty_filter=[0.0, 1.0]", "algorithm.inpaint_column=completion")).setup().train()
    written = keys(tmp_path / "rewards") | keys(tmp_path / "benchmark")
    listed = expand(table("RL metric"), name=rewards, benchmark=["gsm8k"], grader=list(BENCHMARKS.get("gsm8k").graders))
    assert written == listed, f"written, not in the README: {sorted(written - listed)}; " \
                              f"in the README, not written: {sorted(listed - written)}"


def test_sft_metrics_are_the_readme_table(tmp_path):
    cfg = load_sft_recipe(REPO / "recipes" / "sft" / "tiny-cpu-sft.yaml", [
        f"model.name_or_path={LLADA_TINY}", f"training.output_dir={tmp_path}", "training.max_steps=2",
        "training.eval_steps=2", "data.eval_limit=2"])
    SftTrainer(cfg, log=lambda line: None).setup().train()
    assert keys(tmp_path) == set(table("SFT metric"))


@pytest.mark.parametrize("name", ["learning_rate", "grad_norm", "entropy", "rewards/<name>/mean", "rewards/<name>/std",
                                  "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "reward",
                                  "reward_std", "frac_reward_zero_std", "kl", "completions/mean_length"])
def test_rl_names_are_trls(name):
    """GRPOTrainer (and transformers' Trainer, for learning_rate and grad_norm) logs these very names."""
    assert name in table("RL metric")
    trl = pytest.importorskip("trl")
    source = (Path(trl.__file__).parent / "trainer" / "grpo_trainer.py").read_text(encoding="utf-8")
    if name in ("learning_rate", "grad_norm"):
        import transformers.trainer as hf
        source = Path(hf.__file__).read_text(encoding="utf-8")
    assert f'"{name.replace("<name>", "{reward_func_name}")}"' in source
