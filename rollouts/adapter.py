"""The model adapter: a loaded dLLM plus its family's conventions, the one object callers hold.

``load_model(path_or_hub_id)`` reads config.json, picks the family, builds the native model and loads
its weights; the returned :class:`ModelAdapter` gives the mask/eos/pad ids, ``logits()`` that always
mean "logits for position i" (Dream's shift applied here), the chat template, prompt encoding with
left padding, and the LoRA target module names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .families import Family, family_for, supported_model_types
from .models.checkpoint import (
    MAX_SHARD_SIZE,
    CheckpointError,
    checkpoint_source,
    load_weights,
    read_config,
    reads_as_path,
    resolve_checkpoint,
    save_checkpoint,
)
from .tokenizer import load_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Prompt = str | Sequence[dict]


@dataclass(frozen=True)
class TokenIds:
    mask: int
    eos: int
    pad: int
    bos: int | None = None

    @classmethod
    def from_config(cls, cfg: dict, source: str, mask_token_id: int | None = None) -> "TokenIds":
        def first(v):
            return v[0] if isinstance(v, (list, tuple)) and v else v
        mask = mask_token_id if mask_token_id is not None else cfg.get("mask_token_id")
        eos = first(cfg.get("eos_token_id"))
        if mask is None:
            raise CheckpointError(f"{source} has no mask_token_id; pass mask_token_id= (--mask-token-id) "
                                  f"with the id of the model's [MASK] token")
        if eos is None:
            raise CheckpointError(f"{source} has no eos_token_id; add it to config.json")
        pad = first(cfg.get("pad_token_id"))
        return cls(mask=int(mask), eos=int(eos), pad=int(eos if pad is None else pad),
                   bos=None if cfg.get("bos_token_id") is None else int(first(cfg["bos_token_id"])))

    def as_dict(self) -> dict[str, int | None]:
        return {"mask": self.mask, "eos": self.eos, "pad": self.pad, "bos": self.bos}


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device | None = None) -> torch.dtype:
    """A torch dtype; ``"auto"`` is bfloat16 on a GPU that supports it (half the memory of float32:
    16 GB, not 32, for an 8B model) and float32 elsewhere (CPUs are slow in bfloat16)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        gpu = device is not None and device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[dtype]


class ModelAdapter:
    """A dLLM (native or wrapped) with its family conventions and (lazily loaded) tokenizer."""

    def __init__(self, model: nn.Module, family: Family, token_ids: TokenIds, *, tokenizer=None,
                 tokenizer_spec: str | None = None, source: Path | None = None, revision: str | None = None):
        self.model = model
        self.family = family
        self.token_ids = token_ids
        self._tokenizer = tokenizer
        self._tokenizer_spec = tokenizer_spec
        self.source = source
        self.revision = revision

    # ---- ids and conventions -------------------------------------------------------------
    @property
    def mask_id(self) -> int:
        return self.token_ids.mask

    @property
    def eos_id(self) -> int:
        return self.token_ids.eos

    @property
    def pad_id(self) -> int:
        return self.token_ids.pad

    @property
    def logit_shift(self) -> bool:
        return self.family.logit_shift

    @property
    def lora_target_modules(self) -> list[str]:
        return list(self.family.lora_target_modules)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ---- forward ---------------------------------------------------------------------------
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V] where row i scores the token at position i, for every family."""
        return self.logits_from_raw(self.model(input_ids, attention_mask=attention_mask))

    def logits_from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Apply the family's logit shift to a full-sequence model output."""
        return torch.cat([raw[:, :1], raw[:, :-1]], dim=1) if self.logit_shift else raw

    @property
    def stop_token_ids(self) -> list[int]:
        """EOS plus the family's end-of-turn token when the tokenizer knows it (LLaDA ``<|eot_id|>``,
        Dream ``<|im_end|>``): the ids EOS-handling options act on."""
        ids = [self.eos_id]
        if self.family.eot_token:
            try:
                eot = self.tokenizer.convert_tokens_to_ids(self.family.eot_token)
            except (ValueError, OSError):  # no tokenizer available: EOS alone
                eot = None
            if isinstance(eot, int) and eot not in ids and eot != getattr(self.tokenizer, "unk_token_id", None):
                ids.append(eot)
        return ids

    # ---- text ------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.source is None:
                raise ValueError("this model was built in memory without a tokenizer; pass tokenizer=")
            self._tokenizer = load_tokenizer(self._tokenizer_spec, self.source, self.token_ids.as_dict(), self.revision)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or self.family.chat_template

    def format_prompt(self, prompt: Prompt, *, system_prompt: str | None = None, chat: bool = True) -> str:
        """A prompt string, or chat messages, rendered with the chat template (``chat=False``: as is).
        Messages ending with an assistant turn are continued from it (a pre-filled answer)."""
        if not chat:
            if not isinstance(prompt, str):
                raise TypeError("chat=False needs plain-text prompts, not message lists")
            return prompt
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if system_prompt is not None:
            messages = [{"role": "system", "content": system_prompt}] + messages
        template = self.chat_template
        if template is None:
            raise ValueError(f"neither the tokenizer nor the {self.family.name} family has a chat template; "
                             f"pass chat=False (--no-chat) to use raw prompts")
        prefill = messages[-1]["role"] == "assistant"  # the completion continues a pre-filled answer
        return self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=not prefill, continue_final_message=prefill)

    def encode(self, prompts: Sequence[Prompt], *, system_prompt: str | None = None,
               chat: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask [B, P], left-padded with the pad id, on the model's device."""
        texts = [self.format_prompt(p, system_prompt=system_prompt, chat=chat) for p in prompts]
        rows = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return left_pad(rows, self.pad_id, self.device)

    def decode_completion(self, completion_ids: torch.Tensor | Sequence[int]) -> str:
        """Text of one completion, cut at its first EOS, special tokens dropped."""
        ids = completion_ids.tolist() if isinstance(completion_ids, torch.Tensor) else list(completion_ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def save_pretrained(self, out_dir: str | os.PathLike, max_shard_size: int | str = MAX_SHARD_SIZE) -> Path:
        """config.json + safetensors (sharded above ``max_shard_size``) + the tokenizer, if one is loaded:
        a checkpoint that ``load_model`` and, after ``import unmask``, ``transformers.AutoModel`` load."""
        out = save_checkpoint(self.model, out_dir, max_shard_size)
        if self._tokenizer is not None:
            self._tokenizer.save_pretrained(str(out))
        return out

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a saved state dict into the model, every key (``BlockDiffusionAdapter``'s allows tied ones out)."""
        self.model.load_state_dict(state_dict)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload model", max_shard_size: int | str = MAX_SHARD_SIZE) -> str:
        """Upload what :meth:`save_pretrained` writes to the Hub repo ``repo_id`` (created if needed); returns
        the commit's URL."""
        import tempfile

        from huggingface_hub import HfApi
        api = HfApi(token=token)
        repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, max_shard_size)
            return str(api.upload_folder(repo_id=repo, folder_path=tmp, commit_message=commit_message))


def left_pad(rows: Sequence[Sequence[int]], pad_id: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad variable-length id lists into (ids, attention_mask) tensors."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every prompt must have at least one token")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def load_model(name_or_path: str | os.PathLike, *, dtype: str | torch.dtype = "float32",
               device: str | torch.device = "auto", tokenizer: str | None = None, revision: str | None = None,
               trust_remote_code: bool = False, mask_token_id: int | None = None,
               adapter: str | os.PathLike | None = None, merge_adapter: bool = True,
               load_in_4bit: bool = False) -> ModelAdapter:
    """Load a dLLM checkpoint (local directory or Hub id) into a :class:`ModelAdapter`.

    ``tokenizer``: None → the checkpoint's own (loaded on first use), ``"bytes"`` → the built-in byte
    tokenizer, else a path or Hub id. Unknown model types need ``trust_remote_code=True``. ``adapter``:
    a PEFT LoRA directory (``adapter_config.json`` + weights), merged into the loaded weights, or with
    ``merge_adapter=False`` kept as separate LoRA layers inside the model (evaluated as trained).
    ``load_in_4bit``: the linear layers (not the head) as bitsandbytes NF4 on a CUDA device, for QLoRA
    (``models/quantize.py``); native families only. ``dtype="auto"``: bfloat16 on a GPU, float32 on CPU.
    A local path that does not exist (model, adapter or tokenizer) fails at once, before any download.
    """
    checkpoint_source(name_or_path)  # a wrong path (model, adapter, tokenizer) fails now, before any download
    if adapter is not None:
        check_adapter(adapter)
    if tokenizer not in (None, "bytes") and reads_as_path(tokenizer) and not Path(tokenizer).expanduser().is_dir():
        raise CheckpointError(f"no such tokenizer directory: {tokenizer}; pass a tokenizer directory, a Hub id, "
                              f"or 'bytes' for the built-in byte tokenizer")
    path = resolve_checkpoint(name_or_path, revision)
    cfg = read_config(path)
    source = str(path / "config.json")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    family = family_for(cfg.get("model_type"))
    if load_in_4bit and (family is None or dev.type != "cuda"):
        raise ValueError(f"load_in_4bit: 4-bit loading needs a native model family ({supported_model_types()}) on a "
                         f"CUDA device; got model_type {cfg.get('model_type')!r} on {dev}")
    if family is not None:
        with torch.device("meta"):
            model = family.build(cfg, source)
        if load_in_4bit:
            from .models.quantize import quantize_linears_4bit
            load_weights(model, path, torch_dtype, torch.device("cpu"))
            quantize_linears_4bit(model, dev, skip=model.output_head_names(), compute_dtype=torch_dtype)
            model.to(dev)
        else:
            load_weights(model, path, torch_dtype, dev)
    elif trust_remote_code:
        from .families import remote_family
        from .models.remote import RemoteCodeModel
        family = remote_family(cfg)
        model = RemoteCodeModel.from_pretrained(path, torch_dtype, dev)
    else:
        raise CheckpointError(f"{source}: unknown model_type {cfg.get('model_type')!r}; native families are "
                              f"{supported_model_types()}. To load another Hugging Face masked-diffusion model "
                              f"through its own code, pass trust_remote_code=True (--trust-remote-code)")
    ids = TokenIds.from_config(cfg, source, mask_token_id)
    width = model.arch.vocab_size if hasattr(model, "arch") else cfg.get("vocab_size")
    if width is not None and not 0 <= ids.mask < width:
        raise CheckpointError(f"{source}: mask_token_id {ids.mask} is outside the vocabulary (0..{width - 1})")
    if adapter is not None:
        model = apply_lora(model, adapter, merge=merge_adapter)
    model.eval()
    return ModelAdapter(model, family, ids, tokenizer_spec=tokenizer, source=path, revision=revision)


def wrap_model(model: nn.Module, tokenizer=None, *, mask_token_id: int | None = None) -> ModelAdapter:
    """A :class:`ModelAdapter` around a model already in memory: a native family's ``PreTrainedModel`` (from
    ``AutoModel.from_pretrained`` after ``import unmask``, or ``load_model(...).model``). ``tokenizer``: a
    tokenizer object, or None to load the one at the model's ``name_or_path`` when first needed."""
    config = getattr(model, "config", None)
    family = family_for(getattr(config, "model_type", None))
    if family is None or not isinstance(model, family.model_class):
        raise TypeError(f"model must be a native {' or '.join(supported_model_types())} model (a PreTrainedModel "
                        f"from AutoModel.from_pretrained after import unmask, or load_model(...).model), got "
                        f"{type(model).__name__}; other models load by path with trust_remote_code")
    name = str(getattr(model, "name_or_path", "") or "")
    ids = TokenIds.from_config(config.to_dict(), f"{type(model).__name__}.config", mask_token_id)
    return ModelAdapter(model, family, ids, tokenizer=tokenizer, tokenizer_spec=name or None,
                        source=Path(name) if name else None)


def check_adapter(adapter_dir: str | os.PathLike) -> None:
    """Raise CheckpointError unless ``adapter_dir`` is a LoRA adapter directory (with adapter_config.json)."""
    path = Path(adapter_dir).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"no such adapter directory: {adapter_dir}; pass a LoRA adapter directory "
                              f"(a training checkpoint folder, or the run's output_dir, when use_peft was on)")
    if not (path / "adapter_config.json").is_file():
        raise CheckpointError(f"{adapter_dir} has no adapter_config.json; pass a LoRA adapter directory "
                              f"(a training checkpoint folder, or the run's output_dir, when use_peft was on)")


def apply_lora(model: nn.Module, adapter_dir: str | os.PathLike, merge: bool = True) -> nn.Module:
    """``model`` with the LoRA adapter in ``adapter_dir``: merged into its weights (a plain module
    again), or injected as LoRA layers in place (``merge=False``; the native model keeps its KV caches)."""
    check_adapter(adapter_dir)
    from peft import LoraConfig, PeftModel
    config = LoraConfig.from_pretrained(str(adapter_dir))
    heads = model.output_head_names() if hasattr(model, "output_head_names") else []
    if heads:  # the head is used by weight, not by module call: a LoRA there would act only once merged
        config.exclude_modules = sorted(set(config.exclude_modules or []) | set(heads))
    wrapped = PeftModel.from_pretrained(model, str(adapter_dir), config=config)
    return wrapped.merge_and_unload() if merge else model
