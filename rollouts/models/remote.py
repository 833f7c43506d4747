"""Opt-in wrapper for other Hugging Face masked-diffusion models loaded through remote code.

Used only when config.json names a model_type with no native family *and* the user passes
``trust_remote_code=True``. The wrapped model must return logits (``.logits`` or the first output);
its attention-mask handling is whatever its authors wrote (LLaDA's own remote code, for instance,
silently turns attention causal when a padding mask is given — prefer the native families).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class RemoteCodeModel(nn.Module):
    family = "remote"

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.gradient_checkpointing = False

    @classmethod
    def from_pretrained(cls, path: Path, dtype: torch.dtype, device: torch.device) -> "RemoteCodeModel":
        from transformers import AutoModel
        inner = AutoModel.from_pretrained(str(path), trust_remote_code=True, dtype=dtype)
        return cls(inner.to(device))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"attention_mask": attention_mask} if attention_mask is not None else {}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        out = self.inner(input_ids=input_ids, **kwargs)
        return out.logits if hasattr(out, "logits") else out[0]
