"""``unmask eval`` (score a model on benchmarks) and ``unmask merge`` (write a LoRA-merged checkpoint).

    unmask eval --model GSAI-ML/LLaDA-8B-Instruct --benchmark gsm8k,math500 --dtype bfloat16 \\
        --max-completion-length 256 --block-length 32 --diffusion-steps 128 --out out/eval/llada
    unmask eval --model BASE --adapter out/run/checkpoint-500 --benchmark gsm8k --limit 200
    unmask eval --model BASE --adapter out/run --benchmark gsm8k   # the run's final adapter
    unmask eval --model out/full-run/checkpoint-500 --benchmark gsm8k  # full fine-tuning: the checkpoint is the model
    unmask eval --model tests/fixtures/llada-tiny --tokenizer bytes --benchmark gsm8k \\
        --data-files tests/fixtures/data/gsm8k/test.jsonl --limit 8   # offline
    unmask eval --model google/diffusiongemma-26B-A4B-it --adapter out/dg-run --benchmark gsm8k \\
        --max-denoising-steps 48   # DiffusionGemma (its own sampler; a LoRA adapter is merged once)
    unmask eval --backend openai --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct \\
        --benchmark gsm8k   # an autoregressive baseline served by vllm serve (any OpenAI-compatible server)
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from unmask.tasks import BENCHMARKS, TEMPLATES


def add_eval_parser(sub) -> None:
    from unmask.rollouts.cli import add_sampler_arguments
    p = sub.add_parser("eval", help="score a model on GSM8K, MATH-500, HumanEval (per-sample JSONL + summary)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_arguments(p)
    p.add_argument("--benchmark", required=True, help="comma-separated: gsm8k, math500, humaneval, mbpp, countdown, "
                                                      "sudoku")
    p.add_argument("--data-files", action="append", default=None,
                   help="local file of the benchmark instead of the Hub (repeat per benchmark, same order)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N problems only")
    p.add_argument("--num-samples", type=int, default=1, help="samples per problem (pass@k for k <= N)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generation batch")
    p.add_argument("--template", default=None,
                   help="prompt template (tasks/: d1, plain, boxed, code, mbpp, countdown, sudoku, and lm-eval's "
                        "gsm8k_cot, gsm8k_cot_5shot, minerva_math, humaneval_instruct); default: the benchmark's own")
    p.add_argument("--system-prompt", default=None, help="replace the template's instruction")
    p.add_argument("--out", default="out/eval", help="output directory (JSONL per sample, summary JSON/Markdown)")
    p.add_argument("--save-trajectories", type=int, default=0, metavar="N",
                   help="write the first N rollouts' trajectory records and HTML replays (unmask view) to "
                        "OUT/trajectories/BENCHMARK/ (LLaDA and Dream)")
    add_sampler_arguments(p)
    g = p.add_argument_group("DiffusionGemma sampler (unset: the checkpoint's generation_config; of the sampler "
                             "options above only --max-completion-length and --seed apply)")
    g.add_argument("--max-denoising-steps", type=int, default=None, help="denoising steps per canvas")
    g.add_argument("--entropy-bound", type=float, default=None, help="the entropy-bound acceptance's bound")
    o = p.add_argument_group("OpenAI-compatible server (--backend openai: --model is the served model's name; of the "
                             "sampler options above --max-completion-length, --temperature and --seed apply)")
    o.add_argument("--backend", choices=["dllm", "openai"], default="dllm",
                   help="dllm: load --model and decode it here; openai: ask a server (vllm serve, ...) at --base-url")
    o.add_argument("--base-url", default=None, help="the server's API root, e.g. http://127.0.0.1:8000/v1")
    o.add_argument("--api-key", default=None, help="the server's key (default: $OPENAI_API_KEY, else EMPTY)")
    o.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    o.add_argument("--timeout", type=float, default=120.0, help="seconds per request attempt")
    o.add_argument("--max-retries", type=int, default=4, help="retries of a failed request, with exponential backoff")
    p.set_defaults(func=run_eval, max_completion_length=None)


def _model_arguments(p) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory or Hugging Face Hub id")
    p.add_argument("--adapter", default=None,
                   help="LoRA adapter directory, evaluated as is (no merge step): a training checkpoint-<step> "
                        "folder, or a run's output folder (its final adapter)")
    p.add_argument("--tokenizer", default=None, help="tokenizer path or Hub id; 'bytes' = built-in byte tokenizer")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weights dtype; default auto: bfloat16 on a GPU (16 GB for an 8B model, not 32), "
                        "float32 on CPU")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ...")


def run_eval(args: argparse.Namespace) -> int:
    from unmask.rollouts.adapter import load_model
    from unmask.rollouts.cli import sampler_config
    from unmask.rollouts.diffusion_gemma import BlockDiffusionConfig
    from unmask.rollouts.diffusion_gemma_engine import (
        BlockDiffusionEngine,
        is_block_diffusion_checkpoint,
        load_block_diffusion,
    )
    from unmask.rollouts.engine import RolloutEngine
    from unmask.rollouts.models.checkpoint import model_dir

    from .runner import engine_generator, run_benchmark
    names = [n.strip() for n in args.benchmark.split(",") if n.strip()]
    benches = [BENCHMARKS.get(n, "--benchmark") for n in names]
    if args.template is not None:
        TEMPLATES.get(args.template, "--template")
        benches = [dataclasses.replace(b, template=args.template) for b in benches]
    if args.data_files is not None and len(args.data_files) != len(benches):
        raise ValueError(f"--data-files given {len(args.data_files)} times for {len(benches)} benchmarks; "
                         f"give one per benchmark, in the order of --benchmark")
    if args.num_samples < 1:
        raise ValueError("--num-samples must be >= 1")
    server = args.backend == "openai"
    if server:
        check_server_arguments(args)
    else:
        args.adapter = None if args.adapter is None else str(model_dir(args.adapter))  # an older checkpoint's model/
        check_sources(args)  # a mistyped path fails now, not after the benchmark data downloads
    loaded = [(b, b.load(None if args.data_files is None else args.data_files[i])) for i, b in enumerate(benches)]
    if server:
        return evaluate_on_server(args, loaded)
    block_diffusion = is_block_diffusion_checkpoint(args.model)
    if block_diffusion:  # DiffusionGemma: transformers' model, a LoRA adapter merged once
        model, tokenizer = load_block_diffusion(args.model, dtype=args.dtype, device=args.device,
                                                tokenizer=args.tokenizer, adapter=args.adapter)
    else:
        adapter = load_model(args.model, dtype=args.dtype, device=args.device, tokenizer=args.tokenizer,
                             adapter=args.adapter, merge_adapter=False)
    command = "unmask " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    for bench, rows in loaded:
        length = args.max_completion_length or bench.default_length
        if block_diffusion:
            engine = BlockDiffusionEngine(model, tokenizer, BlockDiffusionConfig(
                max_new_tokens=length, max_denoising_steps=args.max_denoising_steps, entropy_bound=args.entropy_bound))
        else:
            cfg = sampler_config(args)
            cfg.max_completion_length = length
            engine = RolloutEngine(adapter, cfg)
        subset = rows[: args.limit] if args.limit else rows
        generator = engine_generator(engine, Path(args.out) / "trajectories" / bench.name, args.save_trajectories)
        summary = run_benchmark(bench, subset, generator, Path(args.out), num_samples=args.num_samples,
                                batch_size=args.batch_size, seed=args.seed, settings=engine.config.as_dict(),
                                total=len(rows), limited=args.limit is not None, command=command,
                                system_prompt=args.system_prompt)
        report(bench, summary, args.out)
    return 0


def check_server_arguments(args: argparse.Namespace) -> None:
    """--backend openai: a server URL, and none of the options that only a model loaded here takes."""
    if not args.base_url or not args.base_url.startswith(("http://", "https://")):
        raise ValueError(f"--backend openai needs --base-url http(s)://HOST:PORT/v1 (got {args.base_url!r}); start a "
                         f"server first, e.g. vllm serve MODEL --port 8000")
    if args.adapter is not None or args.tokenizer is not None:
        raise ValueError("--adapter and --tokenizer apply to a model loaded here; with --backend openai the server "
                         "holds the model (serve the adapter with vLLM's --lora-modules)")
    if args.concurrency < 1 or args.max_retries < 0 or not args.timeout > 0:
        raise ValueError("--concurrency must be >= 1, --max-retries >= 0 and --timeout > 0")


def evaluate_on_server(args: argparse.Namespace, loaded: list) -> int:
    """``unmask eval --backend openai``: every benchmark through the server, written and summarised as a dLLM run."""
    import os

    from .openai_backend import ServerSettings, openai_generator
    from .runner import run_benchmark
    command = "unmask " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    for bench, rows in loaded:
        server = ServerSettings(
            base_url=args.base_url, model=args.model, max_tokens=args.max_completion_length or bench.default_length,
            temperature=args.temperature or 0.0, top_p=args.top_p or 1.0, stop=list(TEMPLATES.get(bench.template).stop),
            concurrency=args.concurrency, timeout=args.timeout, max_retries=args.max_retries,
            api_key=args.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY")
        subset = rows[: args.limit] if args.limit else rows
        summary = run_benchmark(bench, subset, openai_generator(server), Path(args.out), num_samples=args.num_samples,
                                batch_size=args.batch_size, seed=args.seed, settings=server.as_dict(),
                                total=len(rows), limited=args.limit is not None, command=command,
                                system_prompt=args.system_prompt)
        report(bench, summary, args.out)
    return 0


def report(bench, summary: dict, out: str) -> None:
    score = summary["accuracy"][summary["primary_grader"]]["accuracy"]
    shown = f"{100 * score:.2f}" if summary["final"] else "no final score (incomplete)"
    print(f"{bench.name}: {shown} ({summary['scored']}/{summary['total']} scored) -> {out}")


def check_sources(args: argparse.Namespace) -> None:
    """--model is an existing directory or a Hub id, --adapter an adapter directory (no download)."""
    from unmask.rollouts.adapter import check_adapter
    from unmask.rollouts.models.checkpoint import checkpoint_source
    checkpoint_source(args.model)
    if args.adapter is not None:
        check_adapter(args.adapter)


def add_merge_parser(sub) -> None:
    p = sub.add_parser("merge", help="write a checkpoint with a LoRA adapter merged into the base weights")
    _model_arguments(p)
    p.add_argument("--out", required=True, help="directory for the merged checkpoint")
    p.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from unmask.rollouts.adapter import load_model
    from unmask.rollouts.models.checkpoint import model_dir
    if args.adapter is None:
        raise ValueError("unmask merge needs --adapter (the LoRA directory to merge into --model)")
    args.adapter = str(model_dir(args.adapter))  # an older checkpoint: its model/
    adapter = load_model(args.model, dtype=args.dtype, device=args.device, tokenizer=args.tokenizer,
                         adapter=args.adapter, merge_adapter=True)
    print(f"merged {args.adapter} into {args.model}: {adapter.save_pretrained(args.out)}")
    return 0
