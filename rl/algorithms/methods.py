"""Named RL methods: each published algorithm is a composition estimator × advantage × loss with its
paper's defaults. A recipe picks one with ``algorithm.name`` and may override any part; keys it leaves
out take the method's values here (then the schema's, which are d1's). Torch-free.

- ``diffu_grpo`` (d1): estimator one-step, prompt masked with p = 0.15; advantage r − group mean;
  loss token-clipped, k3 KL, bnpo.
- ``gdpo`` (GDPO): estimator semi-deterministic ELBO, 3 Gauss–Legendre nodes × 1 mask; advantage r − group mean;
  loss sequence (ELBO) ratio, / |y|.
- ``mdpo`` (MDPO): estimator per step, the step's full prediction on its masked set, confidence- and L/|M_t|-weighted;
  advantage step-wise, normalised per step over the group; loss token-clipped, k2 KL, top-8 steps by |A|.
- ``cj_grpo`` (CJ-GRPO, + EOSER, ASS rollouts): estimator per step, the tokens committed at that step;
  advantage r − group mean; loss token-clipped per step, averaged over steps, k3 KL.

Simplifications, stated once: MDPO's reference sums the k selected steps' losses; we average them
(``loss_type: grpo`` over units), which differs by the constant factor k (a learning-rate rescale).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from unmask.rewards.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    algorithm: dict = field(default_factory=dict)  # AlgorithmConfig defaults of this method
    rollout: dict = field(default_factory=dict)    # RolloutConfig defaults (sampler settings it pairs with)


METHODS: Registry[Method] = Registry("RL method")


def register_method(method: Method) -> Method:
    METHODS.register(method.name)(method)
    return method


register_method(Method(
    "diffu_grpo", "d1's diffu-GRPO: one-step mean-field log-probs with random prompt masking",
    algorithm=dict(estimator="one_step", advantage="group", loss="clipped", beta=0.04, epsilon=0.5,
                   num_iterations=4, p_mask_prompt=0.15, loss_type="bnpo", scale_rewards="none",
                   importance_sampling_level="token", kl_estimator="k3"),
    rollout=dict(temperature=0.9, remasking="low_confidence")))

register_method(Method(
    "gdpo", "GDPO: sequence-level ELBO ratio, ELBO by semi-deterministic Monte Carlo (Gauss-Legendre nodes)",
    algorithm=dict(estimator="elbo_sdmc", advantage="group", loss="clipped", elbo_nodes=3, elbo_masks_per_node=1,
                   beta=0.0, epsilon=0.2, num_iterations=1, loss_type="grpo", scale_rewards="none",
                   importance_sampling_level="sequence_sum", kl_estimator="k3"),
    rollout=dict(temperature=0.9, remasking="low_confidence")))

register_method(Method(
    "mdpo", ("MDPO: per-step policy gradient on the model's full predictions, "
             "step-wise advantages from intermediate rewards"),
    algorithm=dict(estimator="step_prediction", advantage="mdpo_stepwise", loss="clipped", step_selection="top_k",
                   step_k=8, confidence_weighting=True, beta=0.02, epsilon=0.2, num_iterations=1, loss_type="grpo",
                   importance_sampling_level="token", kl_estimator="k2", backward_chunk=1),
    rollout=dict(temperature=0.4, record_predictions=True, block_length=None, remasking="low_confidence")))

register_method(Method(
    "cj_grpo", "CJ-GRPO: per-step log-probs of the tokens committed at each recorded step (consistency trajectory)",
    algorithm=dict(estimator="trajectory", advantage="group", loss="clipped", step_selection="all",
                   beta=0.04, epsilon=0.5, num_iterations=4, loss_type="grpo", scale_rewards="none",
                   importance_sampling_level="token", kl_estimator="k3", backward_chunk=1),
    rollout=dict(temperature=1.0, eoser=True, eoser_gamma_min=0.01, schedule="ass", block_length=None,
                 remasking="low_confidence")))


def method_defaults(name: str) -> Method | None:
    """The registered method called ``name``, or None (unknown names are reported by validation)."""
    return METHODS.get(name) if name in METHODS else None
