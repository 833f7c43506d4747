"""Tests for rl/sft.py: the SFT loss against a hand computation, training on the tiny size, and the
saved checkpoint loading and decoding through the rollout stack."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

from rl.sft import SIZES, encode_examples, held_out_accuracy, sft_loss, train_demo_model
from rl.synthetic import make_addition_dataset, make_example
from rollouts.adapter import load_model
from rollouts.engine import RolloutEngine
from rollouts.sampler_config import SamplerConfig
from rollouts.tiny import make_tiny

TRAIN_STEPS = 30


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
    adapter = make_tiny("llada", **SIZES["tiny"].model)
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
    out = tmp_path_factory.mktemp("sft") / "model"
    lines = []
    path = train_demo_model(out, size="tiny", steps=TRAIN_STEPS, seed=0, eval_examples=4, log=lines.append)
    return path, lines


def test_loss_decreases_on_tiny(trained):
    _, lines = trained
    losses = [float(m.group(1)) for line in lines if (m := re.search(r"^step +\d+ +loss ([\d.]+)", line))]
    assert len(losses) == TRAIN_STEPS // 10
    assert losses[-1] < 0.8 * losses[0], lines  # mean loss of steps 21-30 well below steps 1-10


def test_checkpoint_loads_and_decodes(trained):
    path, lines = trained
    assert any("held-out accuracy" in line for line in lines)
    summary = json.loads((path / "sft.json").read_text())
    assert summary["steps"] == TRAIN_STEPS and 0 <= summary["held_out_accuracy"] <= 1
    config = SamplerConfig(max_completion_length=40, diffusion_steps=20, block_length=40, temperature=0.0)
    adapter = load_model(path, device="cpu")
    assert adapter.model.num_parameters() == summary["params"]
    assert adapter.format_prompt("12+34=") == "12+34="  # the saved "raw" chat template came back
    traj = RolloutEngine(adapter, config).rollout(["12+34="])
    assert traj.completion_ids.shape == (1, 40) and not (traj.completion_ids == adapter.mask_id).any()
    assert isinstance(adapter.decode_completion(traj.completion_ids[0]), str)
    ex = make_addition_dataset(2, seed=0, width=2, split="held_out")
    assert 0 <= held_out_accuracy(adapter, ex, 40) <= 1


def test_training_is_deterministic_given_seed(tmp_path):
    quiet = lambda line: None  # noqa: E731
    a = train_demo_model(tmp_path / "a", size="tiny", steps=3, seed=1, eval_examples=1, log=quiet)
    b = train_demo_model(tmp_path / "b", size="tiny", steps=3, seed=1, eval_examples=1, log=quiet)
    wa, wb = (load_model(p, device="cpu").model.state_dict() for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_train_demo_model_needs_a_bound_and_a_known_size(tmp_path):
    with pytest.raises(ValueError, match="minutes= or steps="):
        train_demo_model(tmp_path, size="tiny")
    with pytest.raises(ValueError, match="unknown size"):
        train_demo_model(tmp_path, size="huge", steps=1)
