"""unmask.rollouts — native dLLM models (LLaDA, Dream), family adapters, samplers and trajectories."""
