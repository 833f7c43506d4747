"""unmask.rewards — verifiers and reward functions: ``fn(prompts, completions, **columns) -> list[float | None]``."""
