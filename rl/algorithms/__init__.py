"""RL algorithms as compositions: log-prob estimators × advantages × policy losses, their registries, and the
named published methods (diffu-GRPO, GDPO, MDPO, CJ-GRPO) that recipes pick by ``algorithm.name``."""
