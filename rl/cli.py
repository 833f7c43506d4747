"""The ``unmask`` command: one entry point, one subcommand per job.

``unmask demo`` runs SFT → RL → eval on the bundled task (``rl.demo``); ``unmask compare`` runs RL methods × seeds
from one start and tabulates them (``rl.compare``); ``unmask generate`` and ``unmask smoke``
decode with a model (``rollouts.cli``); ``unmask bench rollout``
measures the decoding modes; ``unmask train RECIPE`` validates a recipe (``--print-config`` shows it
resolved; it also trains); ``unmask sft RECIPE`` runs masked-diffusion SFT (``rl.sft``), ``unmask dpo RECIPE``
VRPO preference optimisation (``rl.dpo``); ``unmask eval``
scores benchmarks and ``unmask merge`` merges LoRA (``eval.cli``);
``unmask score`` grades completions already written (``eval.score``); ``unmask serve-vllm MODEL`` serves a model with
vLLM in a venv of its own (``eval.vllm_server``).
"""
from __future__ import annotations

import argparse
import sys

from unmask import __version__
from unmask.eval.cli import add_eval_parser, add_merge_parser
from unmask.eval.score import add_score_parser
from unmask.eval.vllm_server import add_serve_parser
from unmask.rollouts.cli import add_generate_parser, add_smoke_parser, add_view_parser

from .compare import add_compare_parser


def add_recipe_parser(sub, name: str, help: str, example: str, func) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument("recipe", help="path to a YAML recipe")
    p.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {example}")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe as YAML and exit")
    p.set_defaults(func=func)


def add_train_parser(sub) -> None:
    add_recipe_parser(sub, "train", "train from a YAML recipe (one process: CPU or one GPU)",
                      "rollout.block_length=64", run_train)
    add_recipe_parser(sub, "sft", "masked-diffusion SFT from a YAML recipe (recipes/sft/; one process: CPU or one GPU)",
                      "training.max_steps=100 sft.completion_length=128", run_train)
    add_recipe_parser(sub, "dpo", "VRPO preference optimisation from a YAML recipe (recipes/dpo/; one process; "
                      "sharded: deepspeed --module unmask.rl.dpo)",
                      "training.max_steps=100 dpo.elbo_samples=4", run_train)


def run_train(args: argparse.Namespace) -> int:
    """``unmask train``, ``unmask sft`` and ``unmask dpo``: validate the recipe, then print it (``--print-config``)
    or run it."""
    from .recipes import load_dpo_recipe, load_recipe, load_sft_recipe, to_yaml
    load = {"sft": load_sft_recipe, "dpo": load_dpo_recipe}.get(args.command, load_recipe)
    cfg = load(args.recipe, args.overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    if args.command == "train":
        from .train import run
        return run(args.recipe, args.overrides)
    if args.command == "dpo":
        from .dpo import dpo as run_offline
    else:
        from .sft import sft as run_offline
    metrics = run_offline(cfg)
    print(f"done: {cfg.training.output_dir} (last loss {metrics.get('loss', float('nan')):.4f})")
    return 0


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that write JSON (rollout: decoding modes' speed and NFE; step: one "
                                     "diffu-GRPO step's phases and the update's MFU)")
    p.add_argument("which", choices=["rollout", "step"], help="what to benchmark")
    p.add_argument("--out", default=None, help="JSON report path (default out/bench/<which>.json)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="step: the device's peak TFLOP/s for the MFU (default: a known GPU's dense bf16 peak)")
    p.add_argument("--trained", default=None,
                   help="also measure this model, trained on the bundled addition task (a confident model; the "
                        "recipe.yaml saved with it names the task), on held-out questions: a checkpoint-<step> folder "
                        "or a run's output folder (the final model), of unmask sft or unmask train")
    p.add_argument("--trained-questions", type=int, default=16,
                   help="held-out questions the trained checkpoint is measured on (one batch; default 16)")
    p.add_argument("--train-minutes", type=float, default=None,
                   help="first SFT the trained model from scratch (recipes/bench/sft.yaml: 4,000 steps, into "
                        "bench-model/ beside --out) for at most this many minutes (sft.max_minutes), then measure it")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the benchmark itself)")
    p.add_argument("--shape", choices=["cpu-20m", "llada-8b"], default="cpu-20m",
                   help="cpu-20m: the 20M-parameter CPU setting (default); llada-8b: d1's setting on a random "
                        "model of LLaDA-8B's shape, bf16 on one CUDA GPU (needs ~20 GB)")
    p.add_argument("--repeats", type=int, default=1, help="time each mode this many times and keep the best")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    args.out = args.out or f"out/bench/{args.which}.json"
    if args.which == "step":
        return run_step(args)

    from unmask.rollouts.bench import BenchSetting, format_table, run_rollout_bench

    from .recipes import RECIPES_DIR, load_sft_recipe
    from .sft import SftTrainer, task_pairs
    setting = (BenchSetting.quick() if args.quick else BenchSetting.llada_8b() if args.shape == "llada-8b"
               else BenchSetting())
    if setting.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("unmask bench rollout --shape llada-8b needs a CUDA GPU; none is visible")
    setting.repeats = max(1, args.repeats)
    trained = args.trained
    if args.train_minutes is not None:
        if not args.train_minutes > 0:
            raise ValueError(f"--train-minutes must be > 0, got {args.train_minutes:g}; give the SFT's wall-time bound")
        cfg = load_sft_recipe(RECIPES_DIR / "bench" / "sft.yaml", [
            f"training.output_dir={Path(args.out).parent / 'bench-model'}", f"sft.max_minutes={args.train_minutes}"])
        trainer = SftTrainer(cfg)
        trainer.setup().train()
        trained = str(trainer.last_checkpoint)  # the model at the checkpoint's root
    elif trained:
        from unmask.rollouts.models.checkpoint import model_dir
        trained = str(model_dir(trained))  # a checkpoint or run folder; an older checkpoint: its model/
    task = task_pairs(trained, args.trained_questions, setting.completion_length) if trained else None
    report = run_rollout_bench(Path(args.out), trained=trained, setting=setting, threads=args.threads, task=task)
    print(format_table(report))
    print(f"written to {args.out}")
    return 0


def run_step(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from .bench_step import StepSetting, format_step, run_step_bench
    setting = (StepSetting.quick() if args.quick else StepSetting.llada_8b() if args.shape == "llada-8b"
               else StepSetting.cpu())
    if setting.model.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("unmask bench step --shape llada-8b needs a CUDA GPU; none is visible")
    print(format_step(run_step_bench(Path(args.out), setting, args.peak_tflops, args.threads)))
    print(f"written to {args.out}")
    return 0


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job on a CPU: SFT a tiny LLaDA, RL it (recipes/demo/rl.yaml), evaluate")
    p.add_argument("overrides", nargs="*", help="overrides of recipes/demo/rl.yaml, e.g. algorithm.name=gdpo")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo); must not hold an RL run")
    p.add_argument("--sft-steps", type=int, default=5000,
                   help="SFT steps before RL (default 5000, ~4.5 min on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, data order and sampling")
    p.add_argument("--sft-model", default=None, metavar="DIR",
                   help="skip SFT and start RL from this SFT'd model (e.g. out/demo/sft, or tests/fixtures/demo-sft: "
                        "the same start on every machine)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo as demo
    demo(args.out, args.overrides, sft_steps=args.sft_steps, seed=args.seed, sft_model=args.sft_model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unmask", description="RL post-training for masked diffusion LMs.")
    parser.add_argument("--version", action="version", version=f"unmask {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub)
    add_bench_parser(sub)
    add_generate_parser(sub)
    add_view_parser(sub)
    add_demo_parser(sub)
    add_compare_parser(sub)
    add_smoke_parser(sub)
    add_eval_parser(sub)
    add_score_parser(sub)
    add_serve_parser(sub)
    add_merge_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the exact command, for reports
    # argparse stops collecting `overrides` at the first option: let override words come after options too
    # (a word without `=` is then reported by the recipe loader as a malformed override, as it is before them)
    if extra and args.command in ("train", "sft", "demo", "compare") and not any(e.startswith("-") for e in extra):
        args.overrides += extra
    elif args.command == "serve-vllm":
        args.vllm_args = [e for e in extra if e != "--"]  # `unmask serve-vllm MODEL -- --max-model-len 4096`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # config, checkpoint, tokenizer and sampler errors all derive from these
        print(f"unmask {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
