"""``unmask generate`` and ``unmask demo``: decode with a dLLM from the command line.

``generate`` loads any supported checkpoint (local directory or Hub id) and decodes one or more
prompts as a left-padded batch. ``demo`` is the embedded smoke run: it builds the tiny LLaDA and Dream
models, saves them as real checkpoints, loads them back and decodes — no downloads, a few seconds on CPU.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .adapter import load_model
from .sampling import REMASKING, SCHEDULES, SamplerConfig, generate


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampler (unset options take the model family's reference values)")
    g.add_argument("--max-completion-length", type=int, default=64, help="tokens to generate (default 64)")
    g.add_argument("--diffusion-steps", type=int, default=64, help="denoising steps in total (default 64)")
    g.add_argument("--block-length", type=int, default=None, help="semi-autoregressive block size (default: one block)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--remasking", choices=REMASKING, default=None, help="confidence used to pick what to commit")
    g.add_argument("--schedule", choices=SCHEDULES, default=None, help="tokens committed per step")
    g.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (0 = off)")
    g.add_argument("--top-p", type=float, default=None, help="nucleus filtering (1 = off)")
    g.add_argument("--seed", type=int, default=0, help="seed for sampling (temperature > 0 or random remasking)")


def sampler_config(args: argparse.Namespace) -> SamplerConfig:
    return SamplerConfig(max_completion_length=args.max_completion_length, diffusion_steps=args.diffusion_steps,
                         block_length=args.block_length, temperature=args.temperature, remasking=args.remasking,
                         schedule=args.schedule, top_k=args.top_k, top_p=args.top_p)


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
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow non-native model types via their own code")
    p.add_argument("--mask-token-id", type=int, default=None, help="override config.json's mask_token_id")
    add_sampler_arguments(p)
    p.set_defaults(func=run_generate)


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--prompt-ids expects comma-separated integers, got {text!r}") from None


def run_generate(args: argparse.Namespace) -> int:
    from .adapter import left_pad
    adapter = load_model(args.model, dtype=args.dtype, device=args.device, tokenizer=args.tokenizer,
                         revision=args.revision, trust_remote_code=args.trust_remote_code,
                         mask_token_id=args.mask_token_id)
    if args.prompt_ids:
        ids, mask = left_pad([_parse_ids(t) for t in args.prompt_ids], adapter.pad_id, adapter.device)
    else:
        ids, mask = adapter.encode(args.prompt, system_prompt=args.system_prompt, chat=not args.no_chat)
    cfg = sampler_config(args)
    gen = torch.Generator(adapter.device).manual_seed(args.seed)
    start = time.perf_counter()
    out = generate(adapter, ids, mask, cfg, generator=gen)
    seconds = time.perf_counter() - start
    completions = out[:, ids.shape[1]:]
    for i, row in enumerate(completions):
        text = adapter.decode_completion(row) if not args.prompt_ids else " ".join(map(str, row.tolist()))
        print(f"[{i}] {text}")
    tokens = completions.numel()
    print(f"# {adapter.family.name}: {tokens} tokens in {seconds:.2f} s ({tokens / seconds:.0f} tokens/s)")
    return 0


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="embedded smoke run: tiny LLaDA and Dream models, save, load, decode")
    p.add_argument("--out", default="out/demo", help="where the tiny checkpoints are written (default out/demo)")
    p.add_argument("--prompt", default="What is 12 + 30?", help="prompt to decode")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
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
