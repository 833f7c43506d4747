"""``unmask generate`` and ``unmask smoke``: decode with a dLLM from the command line.

``generate`` loads any supported checkpoint (local directory or Hub id) and decodes one or more
prompts as a left-padded batch. ``smoke`` is the embedded smoke run: it builds the tiny LLaDA and Dream
models, saves them as real checkpoints, loads them back and decodes — no downloads, a few seconds on CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from pathlib import Path

from .sampler_config import SamplerConfig

CLI_DEFAULTS = {"max_completion_length": 64, "diffusion_steps": 64}  # small enough for a CPU try-out


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per SamplerConfig field (``--block-length``, ``--cache``, ``--rcr`` ...), help from its metadata."""
    g = p.add_argument_group("sampler (unset options take the model family's reference values)")
    hints = typing.get_type_hints(SamplerConfig)
    for f in dataclasses.fields(SamplerConfig):
        flag, tp = "--" + f.name.replace("_", "-"), hints[f.name]
        args = typing.get_args(tp)
        literal = next((typing.get_args(a) for a in (tp, *args) if typing.get_origin(a) is typing.Literal), None)
        default = CLI_DEFAULTS.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())
        if tp is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        elif literal:
            g.add_argument(flag, choices=literal, default=default, help=f.metadata["help"])
        elif typing.get_origin(tp) is list:
            g.add_argument(flag, type=float, nargs="+", default=default, help=f.metadata["help"])
        else:
            base = next(a for a in (tp, *args) if a in (int, float, str))
            g.add_argument(flag, type=base, default=default, help=f.metadata["help"])
    p.add_argument("--seed", type=int, default=0, help="seed for sampling (temperature > 0 or random remasking)")


def sampler_config(args: argparse.Namespace) -> SamplerConfig:
    return SamplerConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SamplerConfig)})


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="decode prompts with a dLLM checkpoint",
                       description="Decode one or more prompts (a left-padded batch) with a dLLM checkpoint.")
    p.add_argument("--model", required=True, help="checkpoint directory or Hugging Face Hub id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="prompt text (repeat for a batch)")
    src.add_argument("--prompt-ids", action="append", help="comma-separated token ids (repeat for a batch)")
    p.add_argument("--tokenizer", default=None, help="tokenizer path or Hub id; 'bytes' = built-in byte tokenizer "
                                                     "(default: the checkpoint's own)")
    p.add_argument("--system-prompt", default=None, help="system message placed before the prompt")
    p.add_argument("--no-chat", action="store_true", help="feed the prompt as is, without the chat template")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weights dtype; default auto: bfloat16 on a GPU, float32 on CPU")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow non-native model types via their own code")
    p.add_argument("--mask-token-id", type=int, default=None, help="override config.json's mask_token_id")
    p.add_argument("--adapter", default=None, help="LoRA adapter directory (a training checkpoint folder or a run's "
                                                   "output_dir), merged into the model's weights before decoding")
    p.add_argument("--show", action="store_true",
                   help="draw the canvas in the terminal as it denoises (commits highlighted, masks dimmed)")
    p.add_argument("--save-trajectory", default=None, metavar="PATH",
                   help="save the rollout's trajectory record (safetensors; unmask view PATH replays it)")
    add_sampler_arguments(p)
    p.set_defaults(func=run_generate)


def add_view_parser(sub) -> None:
    p = sub.add_parser("view", help="write one self-contained HTML page replaying a saved trajectory step by step")
    p.add_argument("trajectory", help="a trajectory record (.safetensors: unmask generate --save-trajectory)")
    p.add_argument("--out", default=None, help="the HTML file (default: the trajectory's name with .html)")
    p.add_argument("--row", type=int, action="append", default=None, help="rows to include (repeat; default all)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint directory or Hub id whose tokenizer decodes the tokens")
    src.add_argument("--tokenizer", help="tokenizer path or Hub id; 'bytes' = the built-in byte tokenizer")
    p.set_defaults(func=run_view)


def run_view(args: argparse.Namespace) -> int:
    from .models.checkpoint import checkpoint_source, resolve_checkpoint
    from .tokenizer import load_tokenizer
    from .trajectory import Trajectory
    from .viewer import write_view
    if not Path(args.trajectory).is_file():
        raise FileNotFoundError(f"{args.trajectory} does not exist; save one with unmask generate ... "
                                f"--save-trajectory PATH")
    try:
        traj = Trajectory.load(args.trajectory)
    except Exception as e:  # another safetensors file (a model's weights), or not safetensors at all
        raise ValueError(f"{args.trajectory} is not a trajectory record ({type(e).__name__}: {e}); save one with "
                         f"unmask generate ... --save-trajectory PATH") from None
    ids = {"mask": traj.mask_id, "eos": traj.pad_id, "bos": None}
    if args.model is not None:
        checkpoint_source(args.model)
        tokenizer = load_tokenizer(None, resolve_checkpoint(args.model), ids)
    else:
        tokenizer = load_tokenizer(args.tokenizer, Path("."), ids)
    out = write_view(args.trajectory, args.out or Path(args.trajectory).with_suffix(".html"), tokenizer, args.row)
    print(f"wrote {out}")
    return 0


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--prompt-ids expects comma-separated integers, got {text!r}") from None


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from .adapter import left_pad, load_model
    from .sampling import sample
    adapter = load_model(args.model, dtype=args.dtype, device=args.device, tokenizer=args.tokenizer,
                         revision=args.revision, trust_remote_code=args.trust_remote_code,
                         mask_token_id=args.mask_token_id, adapter=args.adapter)
    if args.prompt_ids:
        ids, mask = left_pad([_parse_ids(t) for t in args.prompt_ids], adapter.pad_id, adapter.device)
    else:
        ids, mask = adapter.encode(args.prompt, system_prompt=args.system_prompt, chat=not args.no_chat)
    gen = torch.Generator(adapter.device).manual_seed(args.seed)
    cfg = sampler_config(args)
    if args.show and sys.stdout.isatty():  # the canvas at every step; elsewhere (a pipe, a file) the plain lines
        from .live import LiveCanvas
        length, width = cfg.max_completion_length, cfg.block_length or cfg.max_completion_length
        blocks = [(lo, min(lo + width, length)) for lo in range(0, length, width)]
        with LiveCanvas(adapter.tokenizer, ids, mask, adapter.mask_id, blocks) as canvas:
            traj = sample(adapter, ids, mask, cfg, generator=gen, seed=args.seed, on_step=canvas.on_step)
            canvas.finish(traj.completion_ids, int(traj.num_steps.max()), traj.nfe)
    else:
        traj = sample(adapter, ids, mask, cfg, generator=gen, seed=args.seed)
    for i, row in enumerate(traj.completion_ids):
        text = adapter.decode_completion(row) if not args.prompt_ids else " ".join(map(str, row.tolist()))
        print(f"[{i}] {text}")
    tokens = traj.completion_ids.numel()
    print(f"# {adapter.family.name}: {tokens} tokens, {traj.nfe} forward passes, {traj.seconds:.2f} s "
          f"({tokens / traj.seconds:.0f} tokens/s)")
    if args.save_trajectory:
        traj.save(args.save_trajectory)
        print(f"# trajectory saved to {args.save_trajectory} (unmask view {args.save_trajectory} --model "
              f"{args.model} --out view.html)")
    return 0


def add_smoke_parser(sub) -> None:
    p = sub.add_parser("smoke", help="embedded smoke run: tiny LLaDA and Dream models, save, load, decode")
    p.add_argument("--out", default="out/demo", help="where the tiny checkpoints are written (default out/demo)")
    p.add_argument("--prompt", default="What is 12 + 30?", help="prompt to decode")
    p.set_defaults(func=run_smoke)


def run_smoke(args: argparse.Namespace) -> int:
    from .adapter import load_model
    from .sampling import generate
    from .tiny import make_tiny
    cfg = SamplerConfig(max_completion_length=32, diffusion_steps=16, block_length=8)
    for family in ("llada", "dream"):
        path = make_tiny(family, seed=0).save_pretrained(Path(args.out) / f"tiny-{family}")
        adapter = load_model(path, device="cpu")
        ids, mask = adapter.encode([args.prompt, "Hi"])
        start = time.perf_counter()
        out = generate(adapter, ids, mask, cfg)
        seconds = time.perf_counter() - start
        n = adapter.model.num_parameters()
        print(f"{family}: {n / 1e3:.0f}k parameters, saved to {path}, reloaded; 2 prompts × 32 tokens in "
              f"{cfg.diffusion_steps} steps, {seconds:.2f} s")
        for row in out[:, ids.shape[1]:]:
            print(f"  completion ids: {row.tolist()}")
    print("The tiny models are untrained, so the completions are noise; the pipeline (save, load, chat "
          "template, left padding, blockwise decoding) is what this run checks.")
    return 0
