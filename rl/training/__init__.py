"""The trainer machinery: the RL step (rollout → rewards → update), the chunked policy update, the reference
policy, the LoRA/QLoRA policy, DeepSpeed ZeRO, checkpoints, logging and the optimizer."""
