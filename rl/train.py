"""``python -m unmask.rl.train RECIPE [key=value ...]``: train from a recipe (also ``unmask train``).

One process, CPU or one GPU:   unmask train recipes/tiny-cpu.yaml training.max_steps=8
DeepSpeed ZeRO, N ranks:       deepspeed --num_gpus N --module unmask.rl.train RECIPE
                                   training.deepspeed=recipes/deepspeed/zero2.json
(on a CPU-only machine the ranks use gloo; add a hostfile for several nodes, as DeepSpeed's launcher documents)
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unmask.rl.train",
                                     description="Train a masked diffusion LM with RL from a recipe.")
    parser.add_argument("recipe", help="path to a YAML recipe")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.max_steps=10")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args = parser.parse_args(argv)
    return run(args.recipe, args.overrides)


def run(recipe: str, overrides: list[str]) -> int:
    from .recipes import load_recipe
    from .trainer import train
    cfg = load_recipe(recipe, overrides)
    metrics = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {cfg.training.output_dir} (last reward {metrics.get('reward', float('nan')):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
