"""SPG's sandwich on an enumerable toy: ELBO ≤ exact log-likelihood ≤ EUBO, every mask enumerated (issue 17).

The toy: sequences x of length L = 3 over V = 3 tokens (the shared toy vocabulary's 0, 1, 2), a random true joint
p over all V^L of them, and the exact mean-field denoiser — at a partially masked sequence each masked position k
predicts the true conditional marginal p(x_k | unmasked tokens). Expectations over the masking are sums over every
mask set M with its probability, so each number below is exact up to float rounding (no sampling).

Sequence-level bounds (continuous time, each token masked with probability t ~ U(0, 1)); the 1/t-weighted
probability of masking exactly M is w(M) = ∫ t^{|M|-1} (1-t)^{L-|M|} dt = B(|M|, L-|M|+1):

    ELBO(x)    = E_t E_M [(1/t) Σ_{k∈M} log p_θ(x_k | x_M̄)]             = Σ_M w(M) Σ_{k∈M} log p_θ(x_k | x_M̄)
    EUBO_β(x)  = (1/β) Σ_k log E_t E_M [1[k∈M] p_θ(x_k | x_M̄)^β / t]   = (1/β) Σ_k log Σ_{M∋k} w(M) p_θ(x_k | x_M̄)^β

(the EUBO as SPG's code estimates it, facebookresearch/SPG spg/spg_trainer.py ``_get_per_seq_logps``, summed over
tokens). Σ_{M∋k} w(M) = 1: it is the law of the state just before token k is revealed when the continuous-time
reverse process reveals tokens one at a time in a uniformly random order σ. So with Y_k that token's predicted
probability, ELBO = E_σ[Σ_k log Y_k], EUBO_β = Σ_k (1/β) log E_σ[Y_k^β], and the model's own likelihood is
p_θ(x) = E_σ[Π_k Y_k].

Proved here:

1. With the exact denoiser every order's product Π_k Y_k is the chain rule, = p(x): the ELBO is *equal* to log p(x)
   (tight, for any joint, not only a product one) and EUBO_β ≥ log p(x) for every β > 0 (Jensen per token), strict
   for a correlated joint and increasing in β; for a fully factorised p, EUBO_β = log p(x) too.
2. The toolkit's per-token form (``SandwichedBounds.combine``: ELBO = mean_j Σ_{k∈M_j} log p_k / |M_j|,
   EUBO = (1/β) mean_k log u_k, u_k = mean_j 1[k∈M_j] p_k^β / t_j), run on the repo's code path
   (``unit_logprobs`` on the exact denoiser, then ``combine``) with the draws replaced by every mask of SPG's
   one-block masking (m uniform on 1..L, then a uniform m-subset, t = m/L) at its probability, is exactly
   (1/L)·(the sequence-level bound): P(M)/t = w(M). So it sandwiches (1/L)·log p(x), with the lower side tight.
   ``block_masks`` draws those masks with those probabilities.
3. For a denoiser that is *not* the conditionals of one joint (a random mean-field table), the ELBO still lower-
   bounds log p_θ(x), and EUBO_β upper-bounds it for β ≥ L (Hölder), but not for β = 1 or 1.5: at β < L the
   per-token form is not an upper bound of the model's likelihood in general.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from unmask.rl.algorithms.estimators import Units, sampler_of, unit_logprobs
from unmask.rl.algorithms.sandwich import SandwichedBounds, block_masks

from ..toy import EOS, MASK, VOCAB, algorithm
from .test_estimators import exact_elbo, fixed_trajectory

L, V = 3, 3
SEQUENCES = list(itertools.product(range(V), repeat=L))
MASK_SETS = [m for size in range(1, L + 1) for m in itertools.combinations(range(L), size)]
BETAS = (0.5, 1.0, 1.5, 2.0)
TOL = 1e-5  # the repo's scoring path runs in float32


def weight(masked) -> float:
    """w(M) = B(|M|, L − |M| + 1): the 1/t-weighted probability of masking exactly M in continuous time."""
    m = len(masked)
    return math.factorial(m - 1) * math.factorial(L - m) / math.factorial(L)


def block_probability(masked) -> float:
    """SPG's one-block masking: m uniform on 1..L, then a uniform m-subset."""
    return 1 / (L * math.comb(L, len(masked)))


def random_joint(seed: int, product: bool = False) -> torch.Tensor:
    """[V]*L float64: a Dirichlet(1) joint over all sequences, or a product of Dirichlet(1) marginals."""
    g = torch.Generator().manual_seed(seed)
    if product:
        marginals = [-torch.log(torch.rand(V, generator=g, dtype=torch.float64)) for _ in range(L)]
        joint = marginals[0] / marginals[0].sum()
        for m in marginals[1:]:
            joint = joint.unsqueeze(-1) * (m / m.sum())
        return joint
    e = -torch.log(torch.rand(V ** L, generator=g, dtype=torch.float64))
    return (e / e.sum()).view(*[V] * L)


def exact_denoiser(joint: torch.Tensor):
    """q(state, k) = p(x_k = · | the unmasked tokens of state), state a tuple with None where masked."""
    def q(state, k):
        sub = joint[tuple(slice(None) if v is None else v for v in state)]   # dims: the masked positions
        pos = [i for i, v in enumerate(state) if v is None].index(k)
        others = [d for d in range(sub.dim()) if d != pos]
        marginal = sub.sum(others) if others else sub
        return marginal / marginal.sum()
    return q


def random_denoiser(seed: int):
    """A mean-field denoiser with an independent random distribution per (state, position): not the conditionals
    of any one joint."""
    g, table = torch.Generator().manual_seed(seed), {}

    def q(state, k):
        if (state, k) not in table:
            e = -torch.log(torch.rand(V, generator=g, dtype=torch.float64))
            table[state, k] = e / e.sum()
        return table[state, k]
    # fill the table in a fixed order so that values do not depend on the order of queries
    for x in SEQUENCES:
        for masked in MASK_SETS:
            state = tuple(None if i in masked else v for i, v in enumerate(x))
            for k in masked:
                q(state, k)
    return q


def state_of(x, masked) -> tuple:
    return tuple(None if i in masked else v for i, v in enumerate(x))


def sequence_bounds(q, x, betas=BETAS) -> tuple[float, dict[float, float]]:
    """(ELBO(x), {β: EUBO_β(x)}) in the sequence-level form, every mask set enumerated, float64."""
    elbo, u = 0.0, {b: [0.0] * L for b in betas}
    for masked in MASK_SETS:
        state = state_of(x, masked)
        for k in masked:
            y = float(q(state, k)[x[k]])
            elbo += weight(masked) * math.log(y)
            for b in betas:
                u[b][k] += weight(masked) * y ** b
    return elbo, {b: sum(math.log(v) for v in u[b]) / b for b in betas}


def model_loglik(q, x) -> float:
    """log p_θ(x) of the continuous-time reverse process: tokens revealed one at a time in a uniformly random
    order, each drawn from the denoiser — log of the mean over orders of Π_k Y_k."""
    total = 0.0
    for order in itertools.permutations(range(L)):
        state, prod = [None] * L, 1.0
        for k in order:
            prod *= float(q(tuple(state), k)[x[k]])
            state[k] = x[k]
        total += prod
    return math.log(total / math.factorial(L))


class MeanFieldAdapter:
    """Duck-typed model for ``unit_logprobs``: at each masked completion position, logits = log q(· | state) on
    the toy tokens (−inf elsewhere); the prompt is ignored."""

    mask_id, eos_id = MASK, EOS

    def __init__(self, q):
        self.q = q

    def logits(self, ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        n, t = ids.shape
        out = torch.zeros(n, t, VOCAB, dtype=torch.float64)
        for r in range(n):
            state = tuple(None if v == MASK else v for v in ids[r, t - L:].tolist())
            for k in range(L):
                if state[k] is None:
                    out[r, t - L + k] = float("-inf")
                    out[r, t - L + k, :V] = self.q(state, k).log()
        return out


def enumerated_draws() -> torch.Tensor:
    """[N, L] bool: every mask set of SPG's one-block masking, repeated in proportion to its probability, so that a
    plain mean over the N draws is the expectation."""
    n = L * math.lcm(*(math.comb(L, m) for m in range(1, L + 1)))
    rows = []
    for masked in MASK_SETS:
        copies = block_probability(masked) * n
        assert abs(copies - round(copies)) < 1e-9
        rows += [[i in masked for i in range(L)]] * round(copies)
    assert len(rows) == n
    return torch.tensor(rows)


def toolkit_bounds(q, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELBO, EUBO_β) per sequence [V^L] from ``SandwichedBounds.combine`` on log-probs scored through
    ``unit_logprobs`` on the enumerated draws."""
    rows = len(SEQUENCES)
    traj = dataclasses.replace(fixed_trajectory(rows), completion_ids=torch.tensor(SEQUENCES))
    draws = enumerated_draws()
    select = draws.unsqueeze(0).expand(rows, -1, -1)
    targets = traj.completion_ids.unsqueeze(1).expand_as(select)
    prompt = traj.prompt_ids.unsqueeze(1).expand(-1, draws.shape[0], -1)
    inputs = torch.cat([prompt, targets.masked_fill(select, MASK)], 2)
    with torch.no_grad():
        logp = unit_logprobs(MeanFieldAdapter(q), inputs, traj.attention_mask(), targets, sampler_of(traj), 1.0)
    est = SandwichedBounds(algorithm("spg", negative_bound="eubo", eubo_beta=beta))
    out = []
    for upper in (False, True):
        units = Units(inputs=inputs, targets=targets, select=select, coef=torch.ones(select.shape),
                      loss_select=traj.completion_mask.bool().unsqueeze(1),
                      upper=torch.full((rows,), upper))
        out.append(est.combine(logp, units)[:, 0, 0].double())
    return out[0], out[1]


# ------------------------------------------------------------------------------------------------------ tests
def test_block_masking_weights_are_the_continuous_time_weights():
    """P(M)/t under SPG's one-block masking equals w(M), and each weight family sums to 1 over the masks holding k."""
    for masked in MASK_SETS:
        assert abs(block_probability(masked) * L / len(masked) - weight(masked)) < 1e-15
    for k in range(L):
        assert abs(sum(weight(m) for m in MASK_SETS if k in m) - 1) < 1e-15
    assert abs(sum(block_probability(m) for m in MASK_SETS) - 1) < 1e-15


def test_block_masks_draws_the_enumerated_masks():
    """The repo's ``block_masks`` (one block, prompt kept) draws each mask set with the probability enumerated here."""
    rows = 2700
    settings = algorithm("spg", elbo_samples=1, p_mask_prompt=0.0)
    masks = block_masks(fixed_trajectory(rows), settings, torch.Generator().manual_seed(0))[:, 0, 2:]
    counts = {m: 0 for m in MASK_SETS}
    for row in masks.tolist():
        counts[tuple(i for i, v in enumerate(row) if v)] += 1      # KeyError if a draw masks nothing
    for m, c in counts.items():
        p = block_probability(m)
        assert abs(c / rows - p) < 4 * math.sqrt(p * (1 - p) / rows), (m, c / rows, p)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_denoiser_sandwiches_the_exact_loglikelihood(seed):
    joint = random_joint(seed)
    q = exact_denoiser(joint)
    gaps = {b: [] for b in BETAS}
    for x in SEQUENCES:
        logp = math.log(float(joint[x]))
        assert abs(model_loglik(q, x) - logp) < 1e-12          # every order's chain rule gives p(x)
        elbo, eubo = sequence_bounds(q, x)
        assert abs(elbo - logp) < 1e-12                           # the ELBO is tight with the exact denoiser
        for b in BETAS:
            assert eubo[b] >= logp - 1e-12, (x, b, eubo[b], logp)
            gaps[b].append(eubo[b] - logp)
        assert all(eubo[a] <= eubo[b] + 1e-12 for a, b in itertools.pairwise(BETAS))  # power means grow with β
    # the repo's enumerated ELBO (tests/rl/algorithms/test_estimators.py) on the exact denoiser, through the model
    # scoring path, agrees for a few sequences
    for x in SEQUENCES[::9]:
        traj = fixed_trajectory(1, completion=x)
        assert abs(exact_elbo(MeanFieldAdapter(q), traj) - math.log(float(joint[x]))) < TOL
    assert all(max(g) > 1e-3 for g in gaps.values())               # the EUBO is strict for a correlated joint
    if seed == 0:
        print("\nexact denoiser, seed 0: EUBO − log p(x) over the 27 sequences: " + ", ".join(
            f"β={b}: mean {sum(g) / len(g):.4f} max {max(g):.4f}" for b, g in gaps.items()))


def test_both_bounds_are_tight_for_a_factorised_joint():
    joint = random_joint(3, product=True)
    q = exact_denoiser(joint)
    for x in SEQUENCES:
        logp = math.log(float(joint[x]))
        elbo, eubo = sequence_bounds(q, x)
        assert abs(elbo - logp) < 1e-12 and all(abs(v - logp) < 1e-12 for v in eubo.values())


@pytest.mark.parametrize("beta", [1.0, 1.5])
def test_toolkit_per_token_bounds_sandwich_the_per_token_loglikelihood(beta):
    """``SandwichedBounds.combine`` over all masks at their probabilities: ELBO = log p(x)/L ≤ EUBO, and each is the
    sequence-level bound / L."""
    joint = random_joint(0)
    q = exact_denoiser(joint)
    elbo, eubo = toolkit_bounds(q, beta)
    logp = torch.tensor([math.log(float(joint[x])) for x in SEQUENCES], dtype=torch.float64)
    seq = [sequence_bounds(q, x, (beta,)) for x in SEQUENCES]
    torch.testing.assert_close(elbo * L, torch.tensor([e for e, _ in seq], dtype=torch.float64), atol=TOL, rtol=0)
    torch.testing.assert_close(eubo * L, torch.tensor([u[beta] for _, u in seq], dtype=torch.float64),
                               atol=TOL, rtol=0)
    torch.testing.assert_close(elbo, logp / L, atol=TOL, rtol=0)
    assert bool((eubo >= logp / L - TOL).all())
    assert float((eubo - logp / L).max()) > 1e-3


def test_eubo_is_not_an_upper_bound_for_an_inconsistent_denoiser():
    """A random mean-field denoiser: ELBO ≤ log p_θ(x) always (Jensen over orders) and EUBO_β ≥ log p_θ(x) for
    β ≥ L (Hölder), but at β = 1 and 1.5 some sequence's EUBO falls below its log-likelihood."""
    q = random_denoiser(0)
    worst = {b: math.inf for b in (*BETAS, float(L))}
    for x in SEQUENCES:
        loglik = model_loglik(q, x)
        elbo, eubo = sequence_bounds(q, x, tuple(worst))
        assert elbo <= loglik + 1e-12
        assert eubo[float(L)] >= loglik - 1e-12
        for b in worst:
            worst[b] = min(worst[b], eubo[b] - loglik)
    print("\nrandom denoiser, seed 0: min over x of EUBO_β − log p_θ(x): "
          + ", ".join(f"β={b}: {v:+.4f}" for b, v in worst.items()))
    assert worst[1.0] < -0.1 and worst[1.5] < -0.05
    # the toolkit's per-token form inherits it: the enumerated combine() value sits below log p_θ(x) / L there
    _, eubo = toolkit_bounds(q, 1.5)
    loglik = torch.tensor([model_loglik(q, x) for x in SEQUENCES], dtype=torch.float64)
    assert float((eubo - loglik / L).min()) < -0.01
