"""The ``algorithm`` section: the RL method (estimator × advantage × loss), clipping, KL and the rewards."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .schema import ConfigError, _bound, _join, _nonempty


@dataclass
class RewardSpec:
    """One weighted reward function of the recipe: a registered name or an import path."""

    name: str = field(
        metadata={"help": "Reward function: a name in the rewards registry (e.g. 'gsm8k_correct'), or your own "
                          "function's import path 'package.module:function' (TRL's reward signature)."},
    )
    weight: float = field(default=1.0, metadata={"help": "Multiplier of this reward in the summed scalar reward."})
    args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Keyword arguments of a configurable reward, e.g. {max_completion_length: 256, penalty: "
                          "-1.0} for length_penalty; checked against its signature before any weights load."},
    )

    def validate(self, where: str = "reward") -> None:
        _nonempty(self, where, "name")
        if not math.isfinite(self.weight):
            raise ConfigError(f"{where}.weight must be a finite number, got {self.weight!r}")


def _d1_rewards() -> list[RewardSpec]:
    return [RewardSpec("gsm8k_correct", 2.0), RewardSpec("xml_format", 0.5)]


@dataclass
class AlgorithmConfig:
    """The RL method: log-prob estimator × advantage × loss, with clipping, KL and rewards.

    ``name`` picks a named composition (``rl.algorithms.methods``); fields the recipe leaves out take that
    method's defaults, and any of them can be overridden (e.g. ``diffu_grpo`` with ``loss_type: grpo``).
    """

    name: str = field(
        default="diffu_grpo",
        metadata={"help": "Named method (rl/algorithms/methods.py): diffu_grpo, gdpo, mdpo, cj_grpo, wd1, spg, espo, "
                          "coupled_grpo, just_grpo, d2, bgpo, tracerl, igpo; its defaults fill "
                          "the fields the recipe leaves out."},
    )
    estimator: str = field(
        default="one_step",
        metadata={"help": "Log-prob estimator (rl/algorithms/estimators.py, sandwich.py): one_step (d1, wd1), elbo_mc, "
                          "elbo_sdmc (GDPO), coupled (coupled-GRPO), elbo_stratified (ESPO), elbo_block (SPG), "
                          "trajectory (CJ-GRPO, JustGRPO, d2, TraceRL), step_prediction (MDPO)."},
    )
    advantage: str = field(
        default="group",
        metadata={"help": "Advantage estimator (rl/algorithms/advantages.py): group (r - group mean, optional std "
                          "scaling), softmax_weights (wd1's signed softmax weights) or mdpo_stepwise (per-step, from "
                          "intermediate rewards)."},
    )
    loss: str = field(
        default="clipped",
        metadata={"help": "Policy loss (rl/algorithms/losses.py): clipped (PPO/GRPO surrogate), reinforce (plain "
                          "policy gradient, no ratio) or bgpo (BGPO's per-sample linear bound)."},
    )
    beta: float = field(
        default=0.04,
        metadata={"help": "KL penalty coefficient against the reference model (or the old policy, kl_target: old); 0 "
                          "skips the reference model."},
    )
    kl_target: Literal["reference", "old"] = field(
        default="reference",
        metadata={"help": "What the KL penalty pulls towards: the reference model, or the old policy — the log-probs "
                          "recomputed before the batch's first update (TraceRL's code; no reference model is kept)."},
    )
    kl_estimator: Literal["k3", "k2"] = field(
        default="k3",
        metadata={"help": "Per-token KL estimator: k3 = exp(ref-new) - (ref-new) - 1 (d1, CJ-GRPO), k2 = (new-ref)^2 / "
                          "2 (MDPO)."},
    )
    kl_level: Literal["token", "sequence", "token_sum"] = field(
        default="token",
        metadata={"help": "KL penalty per token, on each unit's summed log-ratio (ESPO: k2 of the sequence ELBO "
                          "difference) spread evenly over the unit's scored tokens, or per token and summed over the "
                          "unit where the policy term is averaged (token_sum: TraceRL's code)."},
    )
    epsilon: float = field(
        default=0.5,
        metadata={"help": "Lower clipping range of the importance ratio (ratio >= 1 - epsilon)."},
    )
    epsilon_high: float | None = field(
        default=None,
        metadata={"help": "Upper clipping range (ratio <= 1 + epsilon_high); null uses epsilon (DAPO's clip-higher "
                          "sets it larger)."},
    )
    num_iterations: int = field(
        default=4,
        metadata={"help": "Policy updates per generated batch (mu in GRPO); >1 reuses rollouts with importance "
                          "ratios."},
    )
    num_minibatches: int = field(
        default=1,
        metadata={"help": "Optimizer steps per inner iteration, each on the next 1/k of the batch's rows (PPO "
                          "mini-batches; TRL's steps_per_generation): every step after the first is off-policy, its "
                          "ratios taken against the log-probs from before the batch's first update."},
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "sum", "step_bnpo", "step_sum", "unit_mean"] = field(
        default="bnpo",
        metadata={"help": "Loss normalisation: per-sequence mean (grpo; per unit, then over units, for per-step "
                          "estimators), constant length (dr_grpo), tokens in the global batch (dapo) or in the local "
                          "batch (bnpo), a plain sum over the micro-batch (sum, wd1's code); for per-step estimators "
                          "also bnpo per unit averaged over units (step_bnpo, CJ-GRPO's code) or grpo's unit means "
                          "summed over units (step_sum, MDPO's code), or each unit's token mean averaged over every "
                          "non-empty unit of the batch, whatever its row (unit_mean, TraceRL's code)."},
    )
    scale_rewards: Literal["group", "batch", "none"] = field(
        default="none",
        metadata={"help": "Divide advantages by the reward std of the group, of the batch, or not at all."},
    )
    reward_std: Literal["unbiased", "population"] = field(
        default="unbiased",
        metadata={"help": "The std scale_rewards divides by: unbiased (n - 1, TRL; + 1e-4) or population (n, "
                          "TraceRL's code: no epsilon, a group with std 0 keeps advantage 0)."},
    )
    difficulty_filter: list[float] | None = field(
        default=None,
        metadata={"help": "[lo, hi]: train only on groups whose accuracy (share of completions with reward >= "
                          "correct_reward) lies in [lo, hi] (TraceRL: [0.2, 0.8]); the rest are dropped from the "
                          "loss. null keeps every group."},
    )
    correct_reward: float = field(
        default=1.0,
        metadata={"help": "A completion counts as correct (difficulty_filter's accuracy) when its reward is at least "
                          "this."},
    )
    truncated_reward: float | None = field(
        default=None,
        metadata={"help": "Reward of a completion that never ends (no EOS within max_completion_length), in place "
                          "of its score (TraceRL counts such answers wrong: 0); null keeps the score."},
    )
    inpaint_column: str | None = field(
        default=None,
        metadata={"help": "IGPO: the dataset column holding each prompt's reference solution; set, a group whose "
                          "completions are all wrong (reward < correct_reward) is rolled out again with chunks of it "
                          "fixed in the canvas, and up to inpaint_replacements correct ones replace the first of its "
                          "completions. null: no inpainting."},
    )
    inpaint_ratio: list[float] = field(
        default_factory=lambda: [0.2, 0.6],
        metadata={"help": "IGPO: [lo, hi) of the share of the solution's chunks revealed, drawn per completion and "
                          "sorted within the group (the last chunk is always revealed, as in the code)."},
    )
    inpaint_chunk: list[int] = field(
        default_factory=lambda: [5, 10],
        metadata={"help": "IGPO: [min, max] tokens per solution chunk (a remainder shorter than min is never shown)."},
    )
    inpaint_free_tail: int = field(
        default=30, metadata={"help": "IGPO: completion positions at the end never given a hint token."})
    inpaint_max_spacing: int = field(
        default=100, metadata={"help": "IGPO: largest gap between revealed chunks once stretched to the canvas."})
    inpaint_replacements: int = field(
        default=4, metadata={"help": "IGPO: at most this many correct inpainted completions replace originals."})
    hint_entropy_keep: float = field(
        default=1.0,
        metadata={"help": "IGPO: share of a completion's hint (inpainted) tokens kept in the loss, those of highest "
                          "entropy under the old policy (IGPO: 0.2); 1 keeps them all."},
    )
    baseline: Literal["mean", "leave_one_out"] = field(
        default="mean",
        metadata={"help": "group advantage's baseline: the group's mean reward (d1), or the mean of the other "
                          "completions' rewards (leave-one-out: ESPO, coupled-GRPO), i.e. G/(G-1) x (r - mean)."},
    )
    importance_sampling_level: Literal["token", "sequence", "sequence_sum"] = field(
        default="token",
        metadata={"help": "Importance ratio per token (GRPO), per sequence from the mean log-ratio (GSPO), or per "
                          "sequence from the summed log-ratio, i.e. the ELBO ratio, with the loss divided by the "
                          "length (GDPO)."},
    )
    p_mask_prompt: float = field(
        default=0.15,
        metadata={"help": "Probability of masking each prompt token when estimating log-probs (d1's random prompt "
                          "masking; one_step and, once per iteration, trajectory units as in d2)."},
    )
    elbo_nodes: int = field(
        default=3,
        metadata={"help": "elbo_sdmc: Gauss-Legendre quadrature nodes over the masking ratio t."},
    )
    elbo_masks_per_node: int = field(default=1, metadata={"help": "elbo_sdmc: random masks drawn at each node."})
    elbo_samples: int = field(default=2, metadata={"help": "elbo_mc: (t, mask) draws per sequence (forward passes)."})
    elbo_per_sample: bool = field(
        default=False,
        metadata={"help": "ELBO estimators: keep each Monte Carlo sample as its own unit, valued by its own ELBO "
                          "estimate (BGPO's per-sample bound; lets backward_chunk bound memory), instead of averaging "
                          "the samples into one value per token."},
    )
    elbo_coupled: bool = field(
        default=False,
        metadata={"help": "elbo_mc: draw masks in complementary pairs (mask with ratio t, then its complement with "
                          "ratio 1-t), so every token is scored once per pair."},
    )
    coupled_t_min: float = field(
        default=0.2,
        metadata={"help": "coupled: smallest masking ratio t of the complementary pair (DiffuCoder: U(0.2, 0.8))."},
    )
    coupled_t_max: float = field(default=0.8, metadata={"help": "coupled: largest masking ratio t of the pair."})
    negative_bound: Literal["eubo", "mix", "elbo", "zero"] = field(
        default="mix",
        metadata={"help": "elbo_block (SPG): the value of completions with advantage <= 0 — the upper bound EUBO, its "
                          "mixture with the ELBO, the ELBO, or 0 (positive advantages always take the ELBO)."},
    )
    eubo_beta: float = field(default=1.5, metadata={"help": "elbo_block (SPG): the EUBO's exponent beta."})
    bound_mix_weight: float = field(
        default=0.5,
        metadata={"help": "elbo_block (SPG): weight of the EUBO in negative_bound: mix (the ELBO takes the rest)."},
    )
    step_selection: Literal["all", "top_k", "every_k", "merge", "random"] = field(
        default="all",
        metadata={"help": "Per-step estimators: which recorded steps are trained: all, the step_k with the largest "
                          "|advantage| (MDPO), every step_k-th, groups of step_k consecutive steps merged into one "
                          "(TraceRL's shrink), or step_k at random."},
    )
    step_k: int = field(default=8, metadata={"help": "The k of step_selection."})
    confidence_weighting: bool = field(
        default=False,
        metadata={"help": "step_prediction: weight each token by its rollout confidence and each step by L/|masked| "
                          "(MDPO)."},
    )
    filter_zero_std_groups: bool = field(
        default=False,
        metadata={"help": "Drop groups whose rewards are all equal from the loss (their advantage is 0); the fraction "
                          "is logged either way."},
    )
    old_logp: Literal["recompute", "rollout"] = field(
        default="recompute",
        metadata={"help": "Old-policy log-probs for num_iterations > 1: recomputed by an exact forward before the "
                          "first update, or (trajectory estimator only) the rollout's recorded values."},
    )
    old_masks: Literal["shared", "independent"] = field(
        default="shared",
        metadata={"help": "Masks of the old-policy estimate for num_iterations > 1: the new estimate's own (the "
                          "ratio's noise cancels), or independent draws (GDPO's code)."},
    )
    logp_temperature: float | None = field(
        default=1.0,
        metadata={"help": "Temperature applied to logits when scoring (d1: 1, raw logits); null uses the rollout "
                          "temperature (1 for greedy rollouts)."},
    )
    logp_policy: Literal["sampler", "model"] = field(
        default="model",
        metadata={"help": "Distribution the log-probs are taken under: the rollout's sampling policy (mask token "
                          "removed, the sampler's top-k/top-p filters) or the model's softmax over the whole "
                          "vocabulary (what d1, GDPO, MDPO and CJ-GRPO's code score)."},
    )
    attend_prompt_padding: bool = field(
        default=False,
        metadata={"help": "Score with the prompts' left padding visible to the model, and maskable like any prompt "
                          "token, as d1's and GDPO's code do (they pass no attention mask); default hides it, as the "
                          "rollouts do."},
    )
    elbo_masking: Literal["bernoulli", "count"] = field(
        default="bernoulli",
        metadata={"help": "ELBO estimators: mask each completion token with probability t, or exactly floor(t * L) "
                          "of the L positions chosen uniformly (GDPO's code); both weight masked tokens by 1/t."},
    )
    score_eos_padding: bool = field(
        default=False,
        metadata={"help": "Also score the EOS padding after a completion's first EOS (CJ-GRPO's reference does); "
                          "default scores tokens up to and including the first EOS."},
    )
    score_eos: bool = field(
        default=True,
        metadata={"help": "Score the completion's EOS tokens; false leaves every EOS out of the loss, the first one "
                          "too (TraceRL's code, post_num 0: LLaDA pads with its EOS)."},
    )
    backward_chunk: int | None = field(
        default=None,
        metadata={"help": "Units (steps, ELBO samples) per backward pass; null backpropagates all at once. 1 keeps "
                          "peak activation memory at one forward for per-step estimators."},
    )
    value_model: str | None = field(
        default=None,
        metadata={"help": "TraceRL's diffusion value model: 'policy' (a value head on a copy of the starting model) "
                          "or a checkpoint of the policy's family; its step-GAE advantages replace the group's per "
                          "token (trajectory estimator only). null: none."},
    )
    value_learning_rate: float = field(default=5e-6, metadata={"help": "The value model's AdamW learning rate."})
    value_clip: float = field(default=0.2, metadata={"help": "The value loss's clip range around the old values."})
    gae_gamma: float = field(default=1.0, metadata={"help": "The value model's discount over decoding steps."})
    gae_lambda: float = field(default=1.0, metadata={"help": "The value model's GAE lambda (1 with gamma 1: R - V)."})
    rewards: list[RewardSpec] = field(
        default_factory=_d1_rewards,
        metadata={"help": "Weighted reward functions; each name resolves in the rewards registry."},
    )

    @property
    def reference_beta(self) -> float:
        """The KL coefficient against a reference model (0 when there is none to keep: beta 0 or kl_target old)."""
        return self.beta if self.kl_target == "reference" else 0.0

    @property
    def updates_per_batch(self) -> int:
        """Optimizer steps one rollout batch gives."""
        return self.num_iterations * self.num_minibatches

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    def validate(self, where: str = "algorithm") -> None:
        _nonempty(self, where, "name", "estimator", "advantage", "loss")
        from unmask.rl.algorithms.methods import METHODS
        from unmask.rl.algorithms.objective import ADVANTAGES, ESTIMATORS, POLICY_LOSSES
        for key, registry in (("name", METHODS), ("estimator", ESTIMATORS), ("advantage", ADVANTAGES),
                              ("loss", POLICY_LOSSES)):
            try:
                registry.get(getattr(self, key), _join(where, key))
            except KeyError as e:
                raise ConfigError(str(e)) from None
        _bound(self, where, "beta", 0.0)
        _bound(self, where, ("epsilon", "epsilon_high"), 0.0, strict=True)
        _bound(self, where, ("num_iterations", "num_minibatches", "elbo_nodes", "elbo_masks_per_node", "elbo_samples",
                             "step_k", "backward_chunk"), 1)
        _bound(self, where, "p_mask_prompt", 0.0, hi=1.0)
        _bound(self, where, ("coupled_t_min", "coupled_t_max"), 0.0, strict=True, below=1.0)
        _bound(self, where, "eubo_beta", 0.0, strict=True)
        _bound(self, where, "bound_mix_weight", 0.0, hi=1.0)
        if self.difficulty_filter is not None:
            lo_hi = self.difficulty_filter
            if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1] <= 1:
                raise ConfigError(f"{where}.difficulty_filter must be [lo, hi] with 0 <= lo <= hi <= 1 (TraceRL: [0.2, "
                                  f"0.8]), got {lo_hi!r}")
        _bound(self, where, "hint_entropy_keep", 0.0, strict=True, hi=1.0)
        _bound(self, where, ("inpaint_free_tail", "inpaint_max_spacing", "inpaint_replacements"), 0)
        lo, hi = (list(self.inpaint_ratio) + [None, None])[:2]
        if len(self.inpaint_ratio) != 2 or not 0 < lo <= hi <= 1:
            raise ConfigError(f"{where}.inpaint_ratio must be [lo, hi] with 0 < lo <= hi <= 1 (IGPO: [0.2, 0.6]), got "
                              f"{self.inpaint_ratio!r}")
        lo, hi = (list(self.inpaint_chunk) + [None, None])[:2]
        if len(self.inpaint_chunk) != 2 or not 1 <= lo <= hi:
            raise ConfigError(f"{where}.inpaint_chunk must be [min, max] tokens with 1 <= min <= max (IGPO: [5, 10]), "
                              f"got {self.inpaint_chunk!r}")
        if self.kl_target == "old" and self.beta > 0 and self.num_iterations * self.num_minibatches == 1:
            raise ConfigError(f"{where}.kl_target 'old' penalises moving away from the policy before the batch's first "
                              f"update, which a single update never does (its KL and gradient are 0): set "
                              f"{where}.num_minibatches or num_iterations above 1, or beta: 0")
        if self.coupled_t_min > self.coupled_t_max:
            raise ConfigError(f"{where}.coupled_t_min ({self.coupled_t_min}) is above {where}.coupled_t_max "
                              f"({self.coupled_t_max}); give a range lo <= hi")
        _bound(self, where, "logp_temperature", 0.0, strict=True)
        if self.elbo_coupled and self.elbo_samples % 2:
            raise ConfigError(f"{where}.elbo_coupled draws masks in pairs; set {where}.elbo_samples to an even number")
        if self.old_logp == "rollout" and self.estimator != "trajectory":
            raise ConfigError(f"{where}.old_logp 'rollout' reuses the rollout's recorded log-probs, which only the "
                              f"'trajectory' estimator scores; use 'recompute' with {self.estimator!r}")
        if self.old_logp == "rollout" and (self.logp_policy != "sampler" or self.attend_prompt_padding
                                           or self.p_mask_prompt > 0):
            raise ConfigError(f"{where}.old_logp 'rollout' reuses what the sampler recorded, so the loss must score as "
                              f"the sampler did: set {where}.logp_policy: sampler, {where}.attend_prompt_padding: "
                              f"false and {where}.p_mask_prompt: 0, or old_logp: recompute")
        if self.advantage == "mdpo_stepwise" and self.estimator != "step_prediction":
            raise ConfigError(f"{where}.advantage 'mdpo_stepwise' gives one advantage per recorded step; it needs "
                              f"{where}.estimator 'step_prediction'")
        _bound(self, where, ("value_learning_rate", "value_clip"), 0.0, strict=True)
        _bound(self, where, ("gae_gamma", "gae_lambda"), 0.0, hi=1.0)
        if self.value_model is not None and (self.estimator != "trajectory" or self.advantage != "group"
                                             or self.step_selection not in ("all", "merge")):
            raise ConfigError(f"{where}.value_model values every decoding step of a trajectory from one group "
                              f"advantage per row: it needs estimator 'trajectory' with step_selection 'all' or "
                              f"'merge' and advantage 'group' (as tracerl), or value_model: null")
        if not self.rewards:
            raise ConfigError(f"{where}.rewards is empty; list at least one reward, e.g. [{{name: gsm8k_correct}}]")
        for i, spec in enumerate(self.rewards):
            spec.validate(f"{where}.rewards[{i}]")
