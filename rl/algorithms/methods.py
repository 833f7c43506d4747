"""Named RL methods: each published algorithm is a composition estimator × advantage × loss with its
reference code's defaults. A recipe picks one with ``algorithm.name`` and may override any part; keys it leaves
out take the method's values here (then the schema's). Torch-free.

Each method names the reference file its loss follows and says what it does differently by default (each
difference one override away); ``tests/rl/algorithms/test_parity.py`` checks every method's loss and gradient
against an independent transcription of that file's formulas, with the reference's settings.

Two methods are called GDPO. ``gdpo`` here is Group Diffusion Policy Optimization (Rojas et al., arXiv
2510.08554): a dLLM likelihood method, the sequence ELBO ratio. NVIDIA's GDPO in TRL and NeMo is Group
reward-Decoupled normalization Policy Optimization (Liu et al., arXiv 2601.05242): a multi-reward advantage
rule (normalise each reward within its group, sum, normalise over the batch), independent of how a dLLM's
likelihood is estimated; it is not registered here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from unmask.rewards.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    reference: str = ""                            # the file (repository/path) whose loss the method follows
    departs: str = ""                              # what it does differently by default, and the override
    algorithm: dict = field(default_factory=dict)  # AlgorithmConfig defaults of this method
    rollout: dict = field(default_factory=dict)    # RolloutConfig defaults (sampler settings it pairs with)


METHODS: Registry[Method] = Registry("RL method")
PADDING = ("prompts of different lengths in one batch: the code shows the model their left padding (no attention "
           "mask) and may mask it; unmask hides it as its rollouts do (attend_prompt_padding: true)")


def register_method(method: Method) -> Method:
    METHODS.register(method.name)(method)
    return method


register_method(Method(
    "diffu_grpo", "d1's diffu-GRPO: one-step mean-field log-probs with random prompt masking",
    reference="dllm-reasoning/d1 diffu-grpo/diffu_grpo_trainer.py",
    departs=f"{PADDING}; num_iterations 4, not 12 (users report collapse at 12)",
    algorithm=dict(estimator="one_step", advantage="group", loss="clipped", beta=0.04, epsilon=0.5,
                   num_iterations=4, p_mask_prompt=0.15, loss_type="bnpo", scale_rewards="none",
                   importance_sampling_level="token", kl_estimator="k3", logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))

register_method(Method(
    "gdpo", ("GDPO (Group Diffusion Policy Optimization): sequence ELBO ratio exp(dELBO / L), the ELBO by "
             "semi-deterministic Monte Carlo (3 Gauss-Legendre nodes, floor(t L) masks)"),
    reference="KevinRojas1499/GDPO gdpo/likelihood_estimators.py, gdpo/gdpo_trainer.py",
    departs=("the old ELBO uses the new one's masks (the paper's intent; the code draws them independently: "
             "old_masks: independent); a KL term (beta > 0, off by default) is per token, not on sequence ELBOs; "
             + PADDING +
             "; num_iterations 1, not 12. importance_sampling_level: sequence_sum is the paper's formula"),
    algorithm=dict(estimator="elbo_sdmc", advantage="group", loss="clipped", elbo_nodes=3, elbo_masks_per_node=1,
                   elbo_masking="count", beta=0.0, epsilon=0.5, num_iterations=1, loss_type="grpo",
                   scale_rewards="none", importance_sampling_level="sequence", score_eos_padding=True,
                   kl_estimator="k3", logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))

register_method(Method(
    "mdpo", ("MDPO: per-step policy gradient on the model's full predictions, "
             "step-wise advantages from intermediate rewards"),
    reference="autonomousvision/mdpo src/open_r1/mdpo/mdpo_trainer.py",
    departs=("the k selected steps' losses are averaged, the code sums them (loss_type: step_sum; a factor k, a "
             "learning-rate rescale); the code's temperature carries + the logits' dtype epsilon (logp_temperature: "
             "T + 2^-7 in bf16)"),
    algorithm=dict(estimator="step_prediction", advantage="mdpo_stepwise", loss="clipped", step_selection="top_k",
                   step_k=8, confidence_weighting=True, beta=0.02, epsilon=0.2, num_iterations=1, loss_type="grpo",
                   importance_sampling_level="token", kl_estimator="k2", backward_chunk=1, logp_policy="model",
                   logp_temperature=None, p_mask_prompt=0.0),
    rollout=dict(temperature=0.4, record_predictions=True, block_length=None, remasking="low_confidence")))

register_method(Method(
    "cj_grpo", "CJ-GRPO: per-step log-probs of the tokens committed at each recorded step (consistency trajectory)",
    reference="yjyddq/EOSER-ASS-RL cj-grpo/cj_grpo_trainer*.py",
    departs=("per-step token means are taken per rollout, then averaged over steps and rollouts (the paper's Eq. "
             "11), the code pools each step's tokens over the micro-batch (loss_type: step_bnpo): the same whenever "
             "every rollout commits as many tokens per step (fixed schedules), not under threshold decoding or "
             f"stop_at_eos; {PADDING}; num_iterations 4, not 12 / 8"),
    algorithm=dict(estimator="trajectory", advantage="group", loss="clipped", step_selection="all",
                   beta=0.04, epsilon=0.5, num_iterations=4, loss_type="grpo", scale_rewards="none",
                   importance_sampling_level="token", kl_estimator="k3", backward_chunk=1, logp_policy="model",
                   logp_temperature=1.0, score_eos_padding=True, p_mask_prompt=0.0),
    rollout=dict(temperature=1.0, eoser=True, eoser_gamma_min=0.01, schedule="ass", block_length=None,
                 remasking="low_confidence")))

register_method(Method(
    "wd1", "wd1: ratio-free weighted likelihood, softmax(A) - softmax(-A) weights on d1's one-step log-probs",
    reference="xiaohangt/wd1 wd1/trainers/rev_grpo_trainer.py",
    departs=(f"the weights' softmax runs over each group, the code's over a device's micro-batch (one group in its "
             f"setting: per-device batch = num_generations); {PADDING}; num_iterations 4, not 12"),
    algorithm=dict(estimator="one_step", advantage="softmax_weights", loss="reinforce", beta=0.0, num_iterations=4,
                   p_mask_prompt=0.15, loss_type="sum", scale_rewards="none", logp_policy="model",
                   logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))

register_method(Method(
    "coupled_grpo", ("coupled-GRPO (DiffuCoder): token ratios on the fully masked completion averaged with a "
                     "complementary mask pair at a shared t ~ U(0.2, 0.8); leave-one-out advantages"),
    reference="apple/ml-diffucoder src/open_r1/coupled_grpo.py",
    departs=f"{PADDING}; the code's sampler is Dream's (its model is DiffuCoder): set it with rollout settings",
    algorithm=dict(estimator="coupled", advantage="group", baseline="leave_one_out", loss="clipped", beta=0.01,
                   epsilon=0.5, num_iterations=2, loss_type="bnpo", scale_rewards="none",
                   importance_sampling_level="token", kl_estimator="k3", elbo_masking="bernoulli", logp_policy="model",
                   logp_temperature=1.0),
    rollout=dict(temperature=1.0)))

register_method(Method(
    "espo", ("ESPO: sequence ELBO ratio exp(dELBO / L) with exact-count masks stratified across the batch and "
             "their complements, k2 KL on the sequence ELBO; leave-one-out advantages"),
    reference="ML-GSAI/ESPO espo/espo_trainer.py",
    departs=(f"mask counts are stratified across the batch's rows, the code's across a micro-batch's (the same "
             f"when the micro-batch is the batch); {PADDING}"),
    algorithm=dict(estimator="elbo_stratified", elbo_samples=1, advantage="group", baseline="leave_one_out",
                   loss="clipped", beta=0.01, kl_estimator="k2", kl_level="sequence", epsilon=0.2,
                   num_iterations=2, loss_type="grpo", scale_rewards="none", importance_sampling_level="sequence",
                   score_eos_padding=True, logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=1.0, remasking="low_confidence")))

register_method(Method(
    "just_grpo", ("JustGRPO: left-to-right rollouts (block 1, one token per step) scored by their exact "
                  "autoregressive-order likelihood, one token per trajectory step"),
    reference="LeapLabTHU/JustGRPO grpo.py",
    departs=("the loss divides by the batch's rows with A != 0 (filter_zero_std_groups, dr_grpo), the code each "
             "prompt's group by its own count (+1e-5) and sums over the prompts of a step: the same for one prompt "
             "per step and otherwise a constant factor when every group has signal"),
    algorithm=dict(estimator="trajectory", step_selection="all", advantage="group", scale_rewards="group",
                   filter_zero_std_groups=True, loss="clipped", epsilon=0.2, beta=0.0, num_iterations=1,
                   loss_type="dr_grpo", importance_sampling_level="token", score_eos_padding=True,
                   backward_chunk=1, logp_policy="model", logp_temperature=1.0, p_mask_prompt=0.0),
    rollout=dict(temperature=1.0, block_length=1, remasking="low_confidence")))

register_method(Method(
    "d2", ("d2-StepMerge: the trajectory cut into segments of step_k consecutive steps, each scored from the state "
           "before it with the prompt re-masked (p = 0.15); token ratios, k3 KL"),
    reference="kuleshov-group/d2 diffu-grpo/diffu_grpo_trainer.py (d2StepMergeTrainer)",
    departs=(f"every segment is scored each iteration (the code cycles one segment per micro-step over 2N "
             f"accumulation steps, which sums to the same loss); step_k is a step count (the code's N segments: "
             f"step_k = diffusion_steps / N); {PADDING}; num_iterations 4, not 12"),
    algorithm=dict(estimator="trajectory", step_selection="merge", step_k=16, advantage="group", loss="clipped",
                   beta=0.04, epsilon=0.5, num_iterations=4, p_mask_prompt=0.15, loss_type="bnpo",
                   scale_rewards="none", importance_sampling_level="token", kl_estimator="k3", backward_chunk=1,
                   logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))


register_method(Method(
    "spg", ("SPG (Sandwiched Policy Gradient): REINFORCE on the ELBO for positive advantages and on an upper bound "
            "(the EUBO, mixed with the ELBO) for the others, block-wise masks"),
    reference="facebookresearch/SPG spg/spg_trainer.py",
    departs=(f"{PADDING}; masks are drawn once per inner iteration from its seed, where the code's step counter "
             f"reuses some seeds (with its gradient accumulation, 2 distinct masks over 4 iterations)"),
    algorithm=dict(estimator="elbo_block", elbo_samples=2, negative_bound="mix", eubo_beta=1.5, bound_mix_weight=0.5,
                   p_mask_prompt=0.15, advantage="group", scale_rewards="none", loss="reinforce", beta=0.0,
                   num_iterations=4, loss_type="bnpo", logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))


register_method(Method(
    "bgpo", ("BGPO (Boundary-Guided Policy Optimization): a linear lower bound of the ELBO-ratio objective, one term "
             "per Monte Carlo sample, so memory stays flat in the sample count (backward_chunk: 1)"),
    reference="arXiv 2510.11683 Eqs. 13-14, 18-19 (THU-KEG/BGPO's code is not public here)",
    departs=("follows the paper, not DARE's port (which divides each sample's ELBO by the response length, draws "
             "stratified exact-count masks and adds PPO and dual clipping); the sample mean runs over samples that "
             "mask at least one token"),
    algorithm=dict(estimator="elbo_mc", elbo_samples=16, elbo_per_sample=True, elbo_coupled=False,
                   elbo_masking="bernoulli", advantage="group", scale_rewards="group", loss="bgpo", beta=0.0,
                   num_iterations=1, loss_type="grpo", backward_chunk=1, logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.9, remasking="low_confidence")))


register_method(Method(
    "tracerl", ("TraceRL: the trajectory in units of step_k consecutive decoding steps (shrink), each scored from the "
                "state before it; token ratios, k3 KL to the old policy summed per unit, the loss a mean over every "
                "unit of the batch; z-scored correctness on groups of accuracy in [0.2, 0.8]"),
    reference="Gen-Verse/dLLM-RL train/rl_llada.py, reward/rl_reward.py",
    departs=("units merge the batch's active steps, the code each row's own (the same under a fixed schedule); "
             "num_minibatches cuts the rollout batch's rows in 4 optimizer steps, the code takes one every 256 units "
             "in its order (64 per rollout batch at its defaults, 1 at the demo's 192 units); a completion with no "
             "EOS counts as wrong (truncated_reward), the code's test is length >= max - 5; the diffusion value "
             "model of its block-diffusion configs is not implemented"),
    algorithm=dict(estimator="trajectory", step_selection="merge", step_k=8, advantage="group", scale_rewards="group",
                   reward_std="population", difficulty_filter=[0.2, 0.8], correct_reward=1.0, truncated_reward=0.0,
                   loss="clipped", epsilon=0.2, beta=0.01, kl_estimator="k3", kl_target="old", kl_level="token_sum",
                   loss_type="unit_mean", num_iterations=1, num_minibatches=4, importance_sampling_level="token",
                   score_eos=False, p_mask_prompt=0.0, backward_chunk=1, logp_policy="model", logp_temperature=1.0),
    rollout=dict(temperature=0.8, remasking="low_confidence")))


register_method(Method(
    "igpo", ("IGPO: d1's one-step log-probs, GSPO's sequence ratio; a group whose answers are all wrong is rolled "
             "out again with chunks of the reference solution inpainted, and up to 4 correct ones replace its first "
             "completions; of the hint tokens only the 20% of highest entropy stay in the loss"),
    reference="facebookresearch/igpo trainer_igpo.py, utils/generate.py",
    departs=("the sequence ratio averages the log-ratio over the tokens in the loss, so the hint tokens the entropy "
             "filter drops get no gradient, as the paper says (the code averages over every completion position: "
             "its filter only reweights sequences in the policy term); a completion is correct when its summed "
             "reward reaches correct_reward (the code reads its correctness reward alone); hints are drawn from the "
             "run's seed (the code's random is unseeded); the code decodes in L/2 steps whatever diffusion_steps "
             "says: set rollout.diffusion_steps; inpaint_column defaults to TRL's completion column (the code's "
             "MetaMathQA column is reasoning)"),
    algorithm=dict(estimator="one_step", p_mask_prompt=0.0, advantage="group", scale_rewards="none", loss="clipped",
                   importance_sampling_level="sequence", epsilon=0.2, beta=0.01, kl_estimator="k3", num_iterations=4,
                   loss_type="bnpo", score_eos_padding=True, logp_policy="model", logp_temperature=1.0,
                   inpaint_column="completion", hint_entropy_keep=0.2, correct_reward=1.0),
    rollout=dict(temperature=1.2, remasking="low_confidence")))


def method_defaults(name: str) -> Method | None:
    """The registered method called ``name``, or None (unknown names are reported by validation)."""
    return METHODS.get(name) if name in METHODS else None
