"""``python -m unmask.rl.train RECIPE [key=value ...]``: train from a recipe (also ``unmask train``).

One process, CPU or one GPU:   unmask train recipes/tiny-cpu.yaml training.max_steps=8
DeepSpeed ZeRO, N ranks:       deepspeed --num_gpus N --module unmask.rl.train RECIPE
                                   training.deepspeed=recipes/deepspeed/zero2.json
(on a CPU-only machine the ranks use gloo; add a hostfile for several nodes, as DeepSpeed's launcher documents)

``unmask sft`` and ``unmask dpo`` launch the same way: ``deepspeed --num_gpus N --module unmask.rl.sft RECIPE`` (or
``unmask.rl.dpo``) with ``training.deepspeed`` set.
"""
from __future__ import annotations

import argparse
import os
import sys

DESCRIPTIONS = {"train": "Train a masked diffusion LM with RL from a recipe.",
                "sft": "Supervised fine-tuning of a masked diffusion LM from a recipe.",
                "dpo": "VRPO preference optimisation of a masked diffusion LM from a recipe."}


def main(argv: list[str] | None = None, command: str = "train") -> int:
    parser = argparse.ArgumentParser(prog=f"unmask.rl.{command}", description=DESCRIPTIONS[command])
    parser.add_argument("recipe", help="path to a YAML recipe")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.max_steps=10")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args = parser.parse_args(argv)
    if command != "train":
        from . import dpo, sft
        from .recipes import load_dpo_recipe, load_sft_recipe
        load, fit = (load_dpo_recipe, dpo.dpo) if command == "dpo" else (load_sft_recipe, sft.sft)
        fit(load(args.recipe, args.overrides))
        return 0
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
