"""unmask.rl — recipe/config schema, advantages, log-prob estimators, losses and the training loop."""
