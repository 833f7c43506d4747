"""Native PyTorch implementations of the dLLM architectures unmask trains (no remote code)."""
