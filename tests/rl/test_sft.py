"""Tests for rl/sft.py: the SFT loss against a hand computation, and the trainer on the bench recipe
(``recipes/bench/sft.yaml``, shrunk to a tiny shape): its loss falls, the checkpoint loads and decodes, the
same seed gives the same bytes, the ``sft.max_minutes`` / ``training.max_steps`` bounds, unknown values
refused; the bench reads the task from the saved recipe, and the bundled task is graded by the RL reward."""
from __future__ import annotations

import json
import math
import time

import pytest
import torch
import yaml

from unmask.rl.config import ConfigError
from unmask.rl.recipes import RECIPES_DIR, load_sft_recipe
from unmask.rl.sft import (
    SftTrainer,
    encode_examples,
    held_out_accuracy,
    random_init,
    sft_loss,
    task_pairs,
    task_scores,
)
from unmask.rollouts.adapter import load_model
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.tiny import make_tiny
from unmask.tasks.synthetic import make_addition_dataset, make_example

BENCH = RECIPES_DIR / "bench" / "sft.yaml"
TINY = dict(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=88)  # 58K parameters
TRAIN_STEPS = 30


def tiny_recipe(out, *overrides):
    """The bench recipe at the tiny shape, completion length 40, batch 8 (seconds on a CPU)."""
    return load_sft_recipe(BENCH, [
        f"training.output_dir={out}", "sft.init_model={d_model: 32, n_layers: 2, n_heads: 4, mlp_hidden_size: 88}",
        "sft.completion_length=40", "training.per_device_train_batch_size=8", "training.learning_rate=3e-3",
        "training.warmup_steps=5", "data.eval_limit=8", "training.eval_steps=10", "logging.logging_steps=1",
        *overrides])


def weights(checkpoint) -> bytes:
    return (checkpoint / "model.safetensors").read_bytes()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread, and far faster than on two when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FixedLogits:
    """A stand-in adapter whose logits are a fixed table; it records the input it was given."""
    mask_id = 9

    def __init__(self, table: torch.Tensor):
        self.table = table
        self.seen = None

    def logits(self, ids, attention_mask=None):
        self.seen = (ids.clone(), attention_mask.clone())
        return self.table


def test_sft_loss_equals_hand_computation():
    # 2 rows, prompt of 2 (row 0 left-padded), completion of 3, vocabulary of 4
    prompt = torch.tensor([[7, 5], [6, 5]])
    prompt_mask = torch.tensor([[0, 1], [1, 1]])
    target = torch.tensor([[1, 2, 3], [0, 0, 3]])
    table = torch.tensor([[0.0, 1.0, 2.0, -1.0], [0.5, 0.0, 0.0, 3.0]]).repeat(2, 3, 1)[:, :5]  # [2, 5, 4]
    table[1, 3] = torch.tensor([2.0, 0.0, 1.0, 1.0])
    eps = 0.2
    # the draws the loss makes, in its order: t per row, then one uniform per completion token
    g = torch.Generator().manual_seed(3)
    t = eps + (1 - eps) * torch.rand(2, generator=g)
    masked = torch.rand(2, 3, generator=g) < t[:, None]
    assert masked.any() and not masked.all()  # a case where the mask matters

    expected = 0.0
    for b in range(2):
        row = 0.0
        for i in range(3):
            if masked[b, i]:
                logits = table[b, 2 + i].tolist()
                ce = math.log(sum(math.exp(v) for v in logits)) - logits[target[b, i]]
                row += ce / float(t[b])
        expected += row / 3  # normalised by the completion length
    expected /= 2

    adapter = FixedLogits(table)
    loss = sft_loss(adapter, prompt, prompt_mask, target, generator=torch.Generator().manual_seed(3), eps=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    ids, attention = adapter.seen
    assert torch.equal(ids[:, :2], prompt)  # the prompt stays clean
    assert torch.equal(ids[:, 2:], torch.where(masked, 9, target))
    assert torch.equal(attention, torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]))


def test_sft_loss_with_every_token_masked_is_mean_cross_entropy():
    # eps = 1 forces t = 1: every completion token masked, weight 1 -> plain mean cross-entropy
    table = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([[0, 1, 2, 3], [4, 4, 4, 4], [1, 0, 1, 0]])
    loss = sft_loss(FixedLogits(table), torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long),
                    target, eps=1.0)
    want = torch.nn.functional.cross_entropy(table[:, 2:].reshape(-1, 5), target.reshape(-1))
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_encode_examples_pads_completion_with_eos_and_matches_adapter_encode():
    adapter = make_tiny("llada", **TINY)
    examples = [make_example(3, 4), make_example(57, 68)]
    prompt_ids, prompt_mask, completion = encode_examples(adapter, examples, 40)
    want_ids, want_mask = adapter.encode([ex.prompt for ex in examples])  # chat template, left padding
    assert torch.equal(prompt_ids, want_ids) and torch.equal(prompt_mask, want_mask)
    assert completion.shape == (2, 40)
    for row, ex in zip(completion, examples):
        n = len(ex.completion.encode())
        assert bytes(row[:n].tolist()).decode() == ex.completion
        assert (row[n:] == adapter.eos_id).all() and n < 40
        assert adapter.decode_completion(row) == ex.completion
    with pytest.raises(ValueError, match="does not fit"):
        encode_examples(adapter, examples, 32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    lines = []
    cfg = tiny_recipe(out, f"training.max_steps={TRAIN_STEPS}", f"training.save_steps={TRAIN_STEPS}")
    trainer = SftTrainer(cfg, log=lines.append)
    trainer.setup().train()
    return trainer, lines


def test_loss_decreases_on_tiny(trained):
    trainer, lines = trained
    rows = [json.loads(line) for line in (trainer.last_checkpoint.parent / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == TRAIN_STEPS
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10]), lines  # mean loss of steps 21-30 well below steps 1-10
    assert [r["step"] for r in rows if "eval/loss" in r] == [10, 20, 30]


def test_checkpoint_loads_and_decodes(trained):
    trainer, _ = trained
    path = trainer.last_checkpoint
    assert path.name == f"checkpoint-{TRAIN_STEPS}"
    assert json.loads((path / "trainer_state.json").read_text())["global_step"] == TRAIN_STEPS
    saved = yaml.safe_load((path / "recipe.yaml").read_text())
    assert saved["sft"]["init_model"] == TINY and saved["model"]["name_or_path"] == str(path.parent / "init")
    config = SamplerConfig(max_completion_length=40, diffusion_steps=20, block_length=40, temperature=0.0)
    adapter = load_model(path, device="cpu")  # the model at the checkpoint's root
    assert adapter.model.num_parameters() == random_init(trainer.cfg).model.num_parameters()
    assert adapter.format_prompt("12+34=") == "12+34="  # the saved "raw" chat template came back
    traj = RolloutEngine(adapter, config).rollout(["12+34="])
    assert traj.completion_ids.shape == (1, 40) and not (traj.completion_ids == adapter.mask_id).any()
    assert isinstance(adapter.decode_completion(traj.completion_ids[0]), str)
    ex = make_addition_dataset(4, seed=0, width=2, split="held_out")
    assert 0 <= held_out_accuracy(adapter, ex, 40) <= 1


def test_task_pairs_read_the_task_from_the_saved_recipe(trained, tmp_path):
    trainer, _ = trained
    pairs = task_pairs(trainer.last_checkpoint, 3, 128)
    want = make_addition_dataset(3, seed=0, width=2, split="held_out")
    assert pairs == [(ex.prompt, ex.completion) for ex in want]
    assert task_pairs(trainer.cfg.training.output_dir, 3, 128) == pairs  # the run's final model too
    with pytest.raises(ValueError, match=r"2-digit addition, whose completions \(38 tokens\) do not fit"):
        task_pairs(trainer.last_checkpoint, 3, 16)
    with pytest.raises(FileNotFoundError, match="no recipe.yaml in .*--train-minutes M"):
        task_pairs(tmp_path, 3, 128)
    other = tmp_path / "gsm8k"
    other.mkdir()
    (other / "recipe.yaml").write_text("data: {dataset: openai/gsm8k}\n")
    with pytest.raises(ValueError, match="learnt data.dataset 'openai/gsm8k', not the bundled addition task"):
        task_pairs(other, 3, 128)


def test_training_is_deterministic_given_seed(tmp_path):
    quiet = lambda line: None  # noqa: E731
    paths = []
    for name in ("a", "b"):
        trainer = SftTrainer(tiny_recipe(tmp_path / name, "training.seed=1", "training.max_steps=3",
                                         "training.save_steps=3"), log=quiet)
        trainer.setup().train()
        paths.append(trainer.last_checkpoint)
    a, b = paths
    wa, wb = (load_model(p, device="cpu").model.state_dict() for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert weights(a) == weights(b)
    assert (tmp_path / "a" / "init" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "init" / "model.safetensors").read_bytes()


def test_max_minutes_stops_and_saves_a_prefix_of_the_steps_run(tmp_path):
    lines = []
    steps = SftTrainer(tiny_recipe(tmp_path / "steps", "training.max_steps=3", "training.save_steps=1",
                                   "training.save_total_limit=null"),
                       log=lambda line: None)
    steps.setup().train()
    assert steps.last_checkpoint.name == "checkpoint-3"  # training.max_steps bounds the run
    timed = SftTrainer(tiny_recipe(tmp_path / "timed", "training.max_steps=3", "training.save_steps=3",
                                   "sft.max_minutes=1e-9"), log=lines.append)
    timed.setup()
    began = time.perf_counter()
    timed.train()
    assert time.perf_counter() - began < 60
    assert timed.last_checkpoint.name == "checkpoint-1", lines  # stopped after the first step, and saved there
    assert any("sft.max_minutes (1e-09) reached" in line for line in lines), lines
    assert weights(timed.last_checkpoint) == weights(tmp_path / "steps" / "checkpoint-1")


def test_unknown_or_unbounded_values_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"sft\.init_model has an unknown key 'd_modle' \(did you mean 'd_model'\?\)"):
        SftTrainer(tiny_recipe(tmp_path, "sft.init_model={d_modle: 32}"))
    assert not (tmp_path / "init").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match=r"sft\.init_model\.d_model: expected int"):
        tiny_recipe(tmp_path, "sft.init_model={d_model: huge}")
    for bad in ("0", "-1"):
        with pytest.raises(ConfigError, match=r"sft\.max_minutes must be > 0"):
            tiny_recipe(tmp_path, f"sft.max_minutes={bad}")
    with pytest.raises(ConfigError, match=r"training\.max_steps must be >= 1"):
        tiny_recipe(tmp_path, "training.max_steps=0")
    with pytest.raises(ConfigError, match=r"sft\.max_minute\b.*max_minutes"):
        tiny_recipe(tmp_path, "sft.max_minute=3")


@pytest.mark.parametrize("minutes", ["0", "-2"])
def test_bench_train_minutes_must_be_positive(tmp_path, capsys, minutes):
    from unmask.rl import cli
    assert cli.main(["bench", "rollout", "--train-minutes", minutes, "--out", str(tmp_path / "r.json")]) == 2
    assert "--train-minutes must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "bench-model").exists()


def test_bundled_task_is_graded_by_the_demo_rl_reward():
    """answer_tag_exact, as recipes/demo/rl.yaml rewards: the last well-formed tag counts, a broken one never."""
    from unmask.rl.recipes import load_recipe
    assert [r.name for r in load_recipe(RECIPES_DIR / "demo" / "rl.yaml").algorithm.rewards] == ["answer_tag_exact"]
    ex = make_example(47, 85)
    texts = [ex.completion, ex.completion.replace("132", "133"), "<answer>1</answer> <answer>132</answer>",
             "<answer>132</answer> <answer>1</answer>", "</nswer>132<//aswer>", "<answer>132", ""]
    assert task_scores([ex] * len(texts), texts) == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
