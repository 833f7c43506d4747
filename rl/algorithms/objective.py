"""The three registries an RL method is composed from — log-prob estimators, advantages, policy
losses — and the batch that flows between them. Torch is imported only when an entry is looked up
(importing the implementation modules registers the built-ins), so recipe validation stays light.
"""
from __future__ import annotations

from unmask.rewards.registry import Registry

ESTIMATORS = Registry("log-prob estimator", ("unmask.rl.algorithms.estimators", "unmask.rl.algorithms.sandwich"))
ADVANTAGES = Registry("advantage estimator", ("unmask.rl.algorithms.advantages",))
POLICY_LOSSES = Registry("policy loss", ("unmask.rl.algorithms.losses",))

register_estimator = ESTIMATORS.register
register_advantage = ADVANTAGES.register
register_policy_loss = POLICY_LOSSES.register
