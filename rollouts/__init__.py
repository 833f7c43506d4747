"""unmask.rollouts — native dLLM models (LLaDA, Dream), family adapters, samplers and trajectories; DiffusionGemma's
sampler on transformers' model (``diffusion_gemma.py``)."""
