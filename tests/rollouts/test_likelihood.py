"""LLaDA's Monte Carlo ELBO (rollouts/likelihood.py): the low-discrepancy mask counts, exact agreement
with a direct per-sample computation, exactness for one token, determinism and convergence to the
exact ELBO (enumerated over every mask), and the greedy suffix check against a direct decoding loop."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from unmask.rollouts.adapter import load_model
from unmask.rollouts.likelihood import (
    elbo_loglikelihood,
    elbo_samples,
    greedy_suffix,
    mask_counts,
    random_masks,
)

from ..paths import LLADA_TINY

PREFIX = [81, 58, 32, 50, 43, 51, 63, 10, 65, 58]  # "Q: 2+3?\nA:" in the byte tokenizer
TARGET = [32, 53, 32, 97, 112]                       # " 5 ap"


@pytest.fixture(scope="module")
def adapter():
    return load_model(LLADA_TINY, tokenizer="bytes", device="cpu")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mask_counts_are_llada_low_discrepancy_strata():
    for length, n in itertools.product([1, 2, 5, 7, 16], [1, 2, 3, 4, 8, 16]):
        for seed in range(5):
            counts = mask_counts(length, n, gen(seed))
            assert counts.shape == (n,) and counts.min() >= 1 and counts.max() <= length
            k = int(torch.randint(1, length + 1, (), generator=gen(seed)))  # the draw mask_counts makes first
            assert counts[0] == k
            if n == length:  # a batch of L samples masks every count 1..L once
                assert sorted(counts.tolist()) == list(range(1, length + 1))


def test_random_masks_mask_the_drawn_counts():
    for seed in range(5):
        masks = random_masks(9, 6, gen(seed))
        assert masks.dtype == torch.bool and masks.shape == (6, 9)
        assert torch.equal(masks.sum(1), mask_counts(9, 6, gen(seed)))


def direct_sample(adapter, prefix, target, mask_row):
    """One sample by hand: mask, one forward pass, -(L/m) Σ CE over the masked continuation tokens."""
    seq = torch.tensor(prefix + target)
    noisy = seq.clone()
    positions = [len(prefix) + i for i, m in enumerate(mask_row.tolist()) if m]
    noisy[positions] = adapter.mask_id
    logits = adapter.model(noisy[None])[0].float()
    ce = sum(torch.nn.functional.cross_entropy(logits[p], seq[p]).item() for p in positions)
    return -len(target) / len(positions) * ce


def test_elbo_samples_equal_a_direct_computation_for_a_fixed_generator(adapter):
    got = elbo_samples(adapter, PREFIX, TARGET, mc_num=8, batch_size=4, generator=gen(3))
    g = gen(3)  # the same stream: two batches of 4 masks
    masks = torch.cat([random_masks(len(TARGET), 4, g), random_masks(len(TARGET), 4, g)])
    want = torch.tensor([direct_sample(adapter, PREFIX, TARGET, row) for row in masks], dtype=torch.float64)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)
    assert elbo_loglikelihood(adapter, PREFIX, TARGET, mc_num=8, batch_size=4, generator=gen(3)) == pytest.approx(
        float(want.mean()), rel=1e-5)


def test_one_token_continuation_is_exact_whatever_the_draw(adapter):
    logits = adapter.model(torch.tensor([PREFIX + [adapter.mask_id]]))[0, -1].float()
    exact = torch.log_softmax(logits, -1)[TARGET[0]].item()
    for seed in range(3):
        assert elbo_loglikelihood(adapter, PREFIX, TARGET[:1], mc_num=4, batch_size=2,
                                  generator=gen(seed)) == pytest.approx(exact, abs=1e-5)


def test_deterministic_for_a_seed_and_different_across_seeds(adapter):
    def run(seed):
        return elbo_loglikelihood(adapter, PREFIX, TARGET, mc_num=8, batch_size=4, generator=gen(seed))
    assert run(0) == run(0)
    assert len({run(s) for s in range(4)}) > 1


def exact_elbo(adapter, prefix, target):
    """E over LLaDA's draw: the count m is uniform on 1..L and the masked set uniform of size m, so the
    expectation is Σ_m (1/m) · mean over |S| = m of Σ_{i∈S} log p(y_i | S masked)."""
    length, total = len(target), 0.0
    for m in range(1, length + 1):
        subsets = list(itertools.combinations(range(length), m))
        rows = torch.zeros(len(subsets), length, dtype=torch.bool)
        for r, s in enumerate(subsets):
            rows[r, list(s)] = True
        per_subset = [direct_sample(adapter, prefix, target, row) * m / length for row in rows]
        total += sum(per_subset) / len(subsets) / m
    return total


def test_the_mc_average_converges_to_the_exact_elbo(adapter):
    target = TARGET[:4]
    exact = exact_elbo(adapter, PREFIX, target)
    seeds = range(8)
    few = torch.tensor([elbo_loglikelihood(adapter, PREFIX, target, mc_num=4, batch_size=4, generator=gen(s))
                        for s in seeds])
    many = torch.tensor([elbo_loglikelihood(adapter, PREFIX, target, mc_num=256, batch_size=32, generator=gen(s))
                         for s in seeds])
    # 64× the samples: the spread over seeds shrinks about 8× (measured 1.6 → 0.24); require 2×
    assert many.std() < few.std() / 2
    assert (many - exact).abs().max() < (few - exact).abs().max()
    assert abs(float(many.mean()) - exact) < 0.05 * abs(exact)


def direct_greedy(adapter, prefix, length):
    """LLaDA's suffix_greedy_prediction by hand: commit the single most confident masked position per step."""
    seq = torch.tensor(prefix + [adapter.mask_id] * length)
    for _ in range(length):
        masked = (seq == adapter.mask_id).nonzero()[:, 0]
        logits = adapter.model(seq[None])[0, masked].float()
        logits[:, adapter.mask_id] = -math.inf  # the sampler never proposes the mask token
        probs = torch.softmax(logits, -1)
        conf, x0 = probs.max(-1)
        best = int(conf.argmax())
        seq[masked[best]] = x0[best]
    return seq[len(prefix):].tolist()


def test_greedy_suffix_is_llada_one_token_per_step_decoding(adapter):
    for length in (1, 3, 6):
        suffix = greedy_suffix(adapter, PREFIX, length)
        assert suffix == direct_greedy(adapter, PREFIX, length)
    assert greedy_suffix(adapter, PREFIX, 0) == []


def test_empty_continuation_and_bad_sample_counts(adapter):
    assert elbo_loglikelihood(adapter, PREFIX, [], mc_num=4, batch_size=4) == 0.0
    with pytest.raises(ValueError, match="multiple"):
        elbo_loglikelihood(adapter, PREFIX, TARGET, mc_num=6, batch_size=4)
