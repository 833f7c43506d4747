"""The shared skeleton of a bidirectional (masked-diffusion) transformer LM.

Each family (``llada.py``, ``dream.py``) declares its parameter layout, exactly as named in the
published checkpoints, and how to read its ``config.json`` into an :class:`ArchConfig`; the forward
pass — embed, blocks, final norm, output head — is the same for all of them and lives here.
Models return *raw* logits [B, T, V]; family conventions such as Dream's logit shift are applied by
the model adapter (``rollouts.adapter``), never here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cache import KVCache
from .layers import (
    apply_rotary,
    bidirectional_attention,
    merge_heads,
    position_ids_from_mask,
    rotary_cos_sin,
    split_heads,
)


class ModelConfigError(ValueError):
    """A checkpoint's config.json asks for something the native implementation cannot run."""


@dataclass(frozen=True)
class ArchConfig:
    """Sizes and switches of a Llama-shaped bidirectional transformer, read from config.json."""

    hidden_size: int
    n_heads: int
    n_kv_heads: int
    n_layers: int
    mlp_hidden_size: int
    vocab_size: int  # width of the output head (LLaDA: embedding_size, which may exceed vocab_size)
    rope_theta: float
    norm_eps: float
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    tie_embeddings: bool = False
    scale_logits: bool = False
    rope_full_precision: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    def check(self, source: str) -> None:
        if self.hidden_size % self.n_heads:
            raise ModelConfigError(f"{source}: hidden size {self.hidden_size} is not divisible by "
                                   f"the number of heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ModelConfigError(f"{source}: {self.n_heads} query heads cannot be grouped over "
                                   f"{self.n_kv_heads} key/value heads")


@dataclass
class AttentionContext:
    """What every layer's attention needs besides its input: RoPE tables, the key mask, and optionally
    cached context keys/values to attend to (``past``) and a list collecting this pass's keys/values."""

    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor | None  # [B, 1, 1, T_keys] bool, None = attend everywhere
    past: KVCache | None = None
    collect: list | None = None


def self_attention(h: torch.Tensor, q_proj: nn.Linear, k_proj: nn.Linear, v_proj: nn.Linear, arch: ArchConfig,
                   ctx: AttentionContext, layer: int) -> torch.Tensor:
    """Bidirectional multi-head (or grouped-query) attention with RoPE; returns [B, T, hidden]."""
    q = apply_rotary(split_heads(q_proj(h), arch.n_heads), ctx.cos, ctx.sin, arch.rope_full_precision)
    k = apply_rotary(split_heads(k_proj(h), arch.n_kv_heads), ctx.cos, ctx.sin, arch.rope_full_precision)
    v = split_heads(v_proj(h), arch.n_kv_heads)
    if ctx.collect is not None:
        ctx.collect.append((k, v))
    if ctx.past is not None:
        k = torch.cat([ctx.past.keys[layer], k], dim=2)
        v = torch.cat([ctx.past.values[layer], v], dim=2)
    return merge_heads(bidirectional_attention(q, k, v, ctx.mask))


def swiglu(h: torch.Tensor, gate: nn.Linear, up: nn.Linear, down: nn.Linear) -> torch.Tensor:
    return down(F.silu(gate(h)) * up(h))


class BidirectionalLM(nn.Module):
    """Forward pass common to all families. Subclasses build the modules and implement ``parts``."""

    family: str = ""

    def __init__(self, arch: ArchConfig, hf_config: dict):
        super().__init__()
        self.arch = arch
        self.hf_config = dict(hf_config)  # written back verbatim when the model is saved
        self.gradient_checkpointing = False

    def parts(self) -> tuple[nn.Embedding, nn.ModuleList, nn.Module, torch.Tensor]:
        """(token embedding, blocks, final norm, output-head weight)."""
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past: KVCache | None = None,
                return_kv: bool = False) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """Logits [B, T, V] for ``input_ids``.

        With ``past``, the tokens attend to the cached context as well as to each other; pass their
        ``position_ids`` (they no longer start at 0). With ``return_kv``, also return a cache of this
        pass's keys/values (masked like ``attention_mask``), to be sliced into prefix/suffix caches.
        """
        embed, blocks, norm, head = self.parts()
        b, t = input_ids.shape
        if position_ids is None:
            if past is not None:
                raise ValueError("a forward pass over cached context needs the active tokens' position_ids")
            position_ids = position_ids_from_mask(attention_mask, b, t, input_ids.device)
        cos, sin = rotary_cos_sin(position_ids, self.arch.head_dim, self.arch.rope_theta)
        active = (torch.ones(b, t, dtype=torch.bool, device=input_ids.device) if attention_mask is None
                  else attention_mask.bool())
        keys = active if past is None else torch.cat([past.mask, active], dim=1)
        ctx = AttentionContext(cos, sin, None if bool(keys.all()) else keys[:, None, None, :], past,
                               [] if return_kv else None)
        x = embed(input_ids)
        for i, block in enumerate(blocks):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, ctx, i, use_reentrant=False)
            else:
                x = block(x, ctx, i)
        logits = F.linear(norm(x), head)
        if self.arch.scale_logits:
            logits = logits * (1.0 / math.sqrt(self.arch.hidden_size))
        if return_kv:
            return logits, KVCache([k for k, _ in ctx.collect], [v for _, v in ctx.collect], active)
        return logits

    def output_head_names(self) -> list[str]:
        """Names of the linear module(s) holding the output head. The forward multiplies by the head's
        weight directly, so LoRA layers there would be ignored unmerged and applied merged: LoRA skips them."""
        head = self.parts()[3]
        return [n for n, m in self.named_modules() if isinstance(m, nn.Linear) and m.weight is head]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
