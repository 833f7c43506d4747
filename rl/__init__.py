"""unmask.rl — recipes and their schema, the RL and SFT trainers, ``algorithms/`` and ``training/``, the demo and
the CLI."""
