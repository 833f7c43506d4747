"""Tiny random models of each family, for tests and the CPU demo (no downloads).

``make_tiny("llada")`` returns a ready :class:`ModelAdapter` with the built-in byte tokenizer; save it
with ``adapter.save_pretrained(dir)`` and it loads back through ``load_model(dir)`` (or, after ``import
unmask``, ``transformers.AutoModel.from_pretrained(dir)``) like a real checkpoint. Weights are drawn
from a seeded generator, so the same seed gives the same model on every machine.
"""
from __future__ import annotations

import torch

from .adapter import ModelAdapter, TokenIds
from .families import FAMILIES
from .models.dream import tiny_dream_config
from .models.llada import tiny_llada_config
from .tokenizer import CHAT_TEMPLATES, byte_tokenizer

TINY_CONFIGS = {"llada": tiny_llada_config, "dream": tiny_dream_config}


def init_weights(model: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Normal(0, std) matrices and embeddings, unit norms, zero biases — deterministic in ``seed`` (drawn
    on the parameters' device: a CPU model is the same on every machine; a GPU one differs from it)."""
    gens: dict[torch.device, torch.Generator] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                gen = gens.setdefault(p.device, torch.Generator(p.device).manual_seed(seed))
                p.copy_(torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) * std)


def make_tiny(family: str = "llada", seed: int = 0, chat_template: str = "roles", device: str = "cpu",
              dtype: torch.dtype = torch.float32, **sizes) -> ModelAdapter:
    """A small random model of ``family`` ("llada" or "dream"); ``sizes`` override the tiny config
    (e.g. ``d_model=128, n_layers=4`` for LLaDA, ``hidden_size=128`` for Dream). ``chat_template``:
    "roles" (``<|user|>`` markers) or "raw" (the messages' text only) for the byte tokenizer.
    ``device``/``dtype``: built and initialised there directly (large shapes on a GPU, for benchmarks)."""
    if chat_template not in CHAT_TEMPLATES:
        raise ValueError(f"unknown chat_template {chat_template!r}; choose one of {sorted(CHAT_TEMPLATES)}")
    if family not in TINY_CONFIGS:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(TINY_CONFIGS)}")
    cfg = TINY_CONFIGS[family](**sizes)
    with torch.device(device):
        model = FAMILIES[family].build(cfg, f"tiny {family} config").to(dtype)
    init_weights(model, seed)
    model.eval()
    ids = TokenIds.from_config(cfg, f"tiny {family} config")
    # the byte tokenizer needs ids 0-255 for bytes; toy vocabularies (e.g. 5 tokens) go without one
    tokenizer = (byte_tokenizer(ids.mask, ids.eos, ids.bos, CHAT_TEMPLATES[chat_template])
                 if min(ids.mask, ids.eos) >= 256 else None)
    return ModelAdapter(model, FAMILIES[family], ids, tokenizer=tokenizer)
