"""DiffusionGemma rollouts from text: prompts rendered with the tokenizer's chat template, left-padded, decoded by
:func:`~unmask.rollouts.diffusion_gemma.sample` (``num_generations`` per prompt, consecutive, as GRPO groups them),
and the completions cut at their first EOS — the interface ``RolloutEngine`` gives the masked-diffusion families.
:func:`load_block_diffusion` loads a checkpoint (local directory or Hub id) with its tokenizer (and a LoRA adapter,
merged once); :class:`BlockDiffusionAdapter` is what the trainer, SFT and evaluation hold, as ``ModelAdapter`` is for
LLaDA and Dream.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .adapter import left_pad, resolve_device, resolve_dtype
from .diffusion_gemma import BlockDiffusionConfig, BlockDiffusionRecord, sample
from .models.checkpoint import CheckpointError, checkpoint_source, read_config, resolve_checkpoint

MODEL_TYPE = "diffusion_gemma"


@dataclass
class BlockDiffusionAdapter:
    """A DiffusionGemma model with its tokenizer and EOS ids (the ``generation_config``'s)."""

    model: Any
    tokenizer: Any

    @property
    def eos_ids(self) -> list[int]:
        return BlockDiffusionConfig().resolve(self.model).eos_token_id

    @property
    def eos_id(self) -> int:
        return self.eos_ids[0]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def decode_completion(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of a completion up to its first EOS."""
        ids, eos = list(map(int, ids)), set(self.eos_ids)
        end = next((i for i, t in enumerate(ids) if t in eos), len(ids))
        return self.tokenizer.decode(ids[:end], skip_special_tokens=True)

    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        """The model and tokenizer in Hugging Face's layout (``load_block_diffusion`` reads it back)."""
        self.model.save_pretrained(str(out_dir))
        self.tokenizer.save_pretrained(str(out_dir))
        return Path(out_dir)

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a saved state dict; the keys it may lack are the tied ones (the encoder's text layers are the
        decoder's, and transformers saves them once)."""
        missing = self.model.load_state_dict(state_dict, strict=False)
        group: dict[str, set[str]] = {}  # each key's tied keys (ties chain: lm_head → decoder → encoder embedding)
        for target, source in (getattr(self.model, "all_tied_weights_keys", {}) or {}).items():
            joined = group.get(target, {target}) | group.get(source, {source})
            group.update({k: joined for k in joined})
        untied = [k for k in missing.missing_keys if not group.get(k, set()) & state_dict.keys()]
        if untied or missing.unexpected_keys:
            raise ValueError(f"the weights do not fit this DiffusionGemma: missing {sorted(untied)[:5]}, unexpected "
                             f"{sorted(missing.unexpected_keys)[:5]}")


class BlockDiffusionEngine:
    def __init__(self, model, tokenizer, config: BlockDiffusionConfig | None = None, *, chat: bool = True,
                 system_prompt: str | None = None):
        self.model, self.tokenizer, self.chat, self.system_prompt = model, tokenizer, chat, system_prompt
        self.config = (config or BlockDiffusionConfig()).resolve(model)
        if self.config.pad_token_id is None:
            self.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompt: str | Sequence[dict] | Sequence[int]) -> list[int]:
        """Token ids of one prompt: a string or chat messages (rendered by the chat template unless ``chat`` is
        off), or ids as they are."""
        if isinstance(prompt, (list, tuple)) and all(isinstance(t, int) for t in prompt):
            return list(prompt)
        if not self.chat:
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if self.system_prompt is not None:
            messages = [{"role": "system", "content": self.system_prompt}] + messages
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def rollout(self, prompts: Sequence, num_generations: int = 1, seed: int = 0) -> BlockDiffusionRecord:
        """One batch: every prompt ``num_generations`` times; the draws from a generator seeded with ``seed``."""
        if num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {num_generations}")
        rows = [ids for ids in map(self.encode, prompts) for _ in range(num_generations)]
        if not rows:
            raise ValueError("no prompts to roll out")
        ids, mask = left_pad(rows, self.config.pad_token_id, self.device)
        return sample(self.model, ids, mask, self.config, generator=torch.Generator(self.device).manual_seed(seed))

    def completions(self, record: BlockDiffusionRecord) -> list[list[int]]:
        """Each row's completion ids up to and including its first EOS (the rest is padding)."""
        out, eos = [], set(self.config.eos_token_id)
        for row in record.sequences[:, record.prompt_ids.shape[1]:].tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            out.append(row[:end])
        return out

    def texts(self, record: BlockDiffusionRecord) -> list[str]:
        return [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in self.completions(record)]


def is_block_diffusion_checkpoint(name_or_path: str | os.PathLike, revision: str | None = None) -> bool:
    """Whether a checkpoint (local or Hub id; only config.json is read) is a DiffusionGemma."""
    checkpoint_source(name_or_path)
    path = resolve_checkpoint(name_or_path, revision, patterns=["config.json"])
    return read_config(path).get("model_type") == MODEL_TYPE


def load_block_diffusion(name_or_path: str | os.PathLike, *, dtype: str | torch.dtype = "auto",
                         device: str | torch.device = "auto", tokenizer: str | None = None,
                         revision: str | None = None, adapter: str | os.PathLike | None = None):
    """(model, tokenizer) of a DiffusionGemma checkpoint, through transformers' own classes. ``tokenizer``: None →
    the checkpoint's, ``"bytes"`` → the byte tokenizer (ids from the config; tiny test models), else a path or Hub
    id. ``adapter``: a LoRA adapter directory (``unmask train``'s), merged into the shared weights once. Another model
    type is refused, naming the loader for it."""
    from transformers import DiffusionGemmaForBlockDiffusion

    from .tokenizer import load_tokenizer
    checkpoint_source(name_or_path)  # a wrong local path fails now, before any download
    path = resolve_checkpoint(name_or_path, revision)
    cfg = read_config(path)
    if cfg.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{path / 'config.json'}: model_type {cfg.get('model_type')!r} is not diffusion_gemma; "
                              f"load masked-diffusion models (LLaDA, Dream) with unmask.rollouts.load_model")
    dev = resolve_device(device)
    model = DiffusionGemmaForBlockDiffusion.from_pretrained(str(path), dtype=resolve_dtype(dtype, dev)).to(dev).eval()
    if adapter is not None:
        from peft import PeftModel

        from .diffusion_gemma_lora import merge_lora
        model = merge_lora(PeftModel.from_pretrained(model, str(adapter))).eval()
    text = model.config.get_text_config()
    eos = getattr(model.generation_config, "eos_token_id", None) or getattr(text, "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list) else eos
    ids = {"mask": text.vocab_size - 1 if tokenizer == "bytes" else None, "eos": eos,
           "bos": getattr(text, "bos_token_id", None)}
    return model, load_tokenizer(tokenizer, path, ids, revision)
