"""Named RL methods: each published algorithm is a composition estimator × advantage × loss with its
reference's defaults. A recipe picks one with ``algorithm.name`` and may override any part; keys it leaves
out take the method's values here (then the schema's). Torch-free. Each method's loss is checked against an
independent transcription of its reference code (``tests/rl/algorithms/test_parity.py``), with the reference's
own settings; what a method does differently by default is listed with it, each one override away.

- ``diffu_grpo`` (d1, ``diffu-grpo/diffu_grpo_trainer.py``): estimator one-step, prompt masked with p = 0.15;
  advantage r − group mean; loss token-clipped, k3 KL, bnpo. Scored as d1 scores: raw logits (temperature 1)
  over the whole vocabulary. The loss is d1's exactly for prompts of one length — d1's published setting,
  where a micro-batch is one prompt's group. With prompts of different lengths in a batch, d1's code lets the
  model see the left padding (it passes no attention mask, in its rollouts too) and may mask it; unmask hides
  it as its rollouts do (``attend_prompt_padding: true`` is d1's). The run's ``num_iterations`` is 4, not
  d1's 12 (users report collapse at 12).
- ``gdpo`` (GDPO, ``gdpo/likelihood_estimators.py``, ``gdpo_trainer.py``): estimator semi-deterministic ELBO,
  3 Gauss–Legendre nodes × 1 mask of exactly floor(t·L) positions; advantage r − group mean; loss clipped on
  the sequence ratio exp((ELBO − ELBO_old) / L), L the completion width (EOS padding scored, raw logits over
  the whole vocabulary, as the code does). Departs: the old ELBO uses the new one's masks (the paper's intent;
  the code draws them apart), a KL term (β > 0; 0 by default) is per token, not on sequence ELBOs, prompt
  padding is hidden as for d1, and ``num_iterations`` is 1, not the published run's 12.
  ``importance_sampling_level: sequence_sum`` is the paper's formula (ratio of summed ELBOs, loss / |y|).
- ``mdpo`` (MDPO, ``src/open_r1/mdpo/mdpo_trainer.py``): estimator per step, the step's full prediction on its
  masked set, confidence- and L/(|M_t| + 1e-4)-weighted, scored at the rollout temperature over the whole
  vocabulary; advantage step-wise, normalised per step over the group; loss token-clipped, k2 KL, top-8 steps by
  |A|. Departs: the k selected steps' losses are averaged (``loss_type: grpo``), where the code sums them
  (``loss_type: step_sum``): a factor k, i.e. a learning-rate rescale; and the code's temperature carries
  + the logits' dtype epsilon (2^-7 in bf16), which we leave out.
- ``cj_grpo`` (CJ-GRPO, ``cj-grpo/cj_grpo_trainer*.py``; + EOSER, ASS rollouts): estimator per step, the tokens
  committed at that step (EOS padding included, as the code does), raw logits over the whole vocabulary;
  advantage r − group mean; loss token-clipped per step, k3 KL. Departs: the per-step token means are
  per rollout, then averaged over steps and rollouts (the paper's Eq. 11, ``loss_type: grpo``), where the code
  pools each step's tokens over the micro-batch (``loss_type: step_bnpo``); prompt padding is hidden as for
  d1; ``num_iterations`` is 4, not 12 / 8.
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
                   importance_sampling_level="token", kl_estimator="k3", logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))

register_method(Method(
    "gdpo", "GDPO: sequence-level ELBO ratio, ELBO by semi-deterministic Monte Carlo (Gauss-Legendre nodes)",
    algorithm=dict(estimator="elbo_sdmc", advantage="group", loss="clipped", elbo_nodes=3, elbo_masks_per_node=1,
                   elbo_masking="count", beta=0.0, epsilon=0.5, num_iterations=1, loss_type="grpo",
                   scale_rewards="none", importance_sampling_level="sequence", score_eos_padding=True,
                   kl_estimator="k3", logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))

register_method(Method(
    "mdpo", ("MDPO: per-step policy gradient on the model's full predictions, "
             "step-wise advantages from intermediate rewards"),
    algorithm=dict(estimator="step_prediction", advantage="mdpo_stepwise", loss="clipped", step_selection="top_k",
                   step_k=8, confidence_weighting=True, beta=0.02, epsilon=0.2, num_iterations=1, loss_type="grpo",
                   importance_sampling_level="token", kl_estimator="k2", backward_chunk=1, logp_policy="model",
                   logp_temperature=None),
    rollout=dict(temperature=0.4, record_predictions=True, block_length=None, remasking="low_confidence")))

register_method(Method(
    "cj_grpo", "CJ-GRPO: per-step log-probs of the tokens committed at each recorded step (consistency trajectory)",
    algorithm=dict(estimator="trajectory", advantage="group", loss="clipped", step_selection="all",
                   beta=0.04, epsilon=0.5, num_iterations=4, loss_type="grpo", scale_rewards="none",
                   importance_sampling_level="token", kl_estimator="k3", backward_chunk=1, logp_policy="model",
                   logp_temperature=1.0, score_eos_padding=True),
    rollout=dict(temperature=1.0, eoser=True, eoser_gamma_min=0.01, schedule="ass", block_length=None,
                 remasking="low_confidence")))


def method_defaults(name: str) -> Method | None:
    """The registered method called ``name``, or None (unknown names are reported by validation)."""
    return METHODS.get(name) if name in METHODS else None
