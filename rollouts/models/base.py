"""The shared skeleton of a bidirectional (masked-diffusion) transformer LM, a transformers ``PreTrainedModel``.

Each family (``llada.py``, ``dream.py``) declares its parameter layout, exactly as named in the
published checkpoints, its ``PretrainedConfig`` (``configuration.py``) and how to read that config into an
:class:`ArchConfig`; the forward pass — embed, blocks, final norm, output head — is the same for all of
them and lives here. Models return *raw* logits [B, T, V] (``return_dict=True``: a transformers
``MaskedLMOutput`` holding them); family conventions such as Dream's logit shift are applied by the model
adapter (``rollouts.adapter``), never here. Attention is always PyTorch's scaled-dot-product attention.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import MaskedLMOutput
from transformers.modeling_utils import PreTrainedModel

from .cache import KVCache
from .layers import (
    RMSNorm,
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


def rope_theta(cfg: dict, default: float) -> float:
    """RoPE base: ``rope_theta``, or inside ``rope_parameters`` where transformers 5 may move it."""
    theta = cfg.get("rope_theta")
    if theta is None:
        theta = (cfg.get("rope_parameters") or {}).get("rope_theta", default)
    return float(theta)


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
        k, v = ctx.past.extend(layer, k, v)
    return merge_heads(bidirectional_attention(q, k, v, ctx.mask))


def swiglu(h: torch.Tensor, gate: nn.Linear, up: nn.Linear, down: nn.Linear) -> torch.Tensor:
    return down(F.silu(gate(h)) * up(h))


class BidirectionalLM(PreTrainedModel):
    """Forward pass common to all families. Subclasses set ``config_class`` and ``read_arch``, build their
    modules after ``super().__init__(config)``, call :meth:`finish_init` and implement ``parts``."""

    family: str = ""
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @staticmethod
    def read_arch(cfg: dict, source: str) -> ArchConfig:
        raise NotImplementedError

    def __init__(self, config):
        super().__init__(config)
        self.arch = self.read_arch(config.to_dict(), config.name_or_path or "config.json")
        self.gradient_checkpointing = False

    def finish_init(self) -> None:
        """transformers' ``post_init`` (weight init, tying bookkeeping). Building the modules already drew
        torch's default initialisation from the global RNG; this second draw is kept off it, so building a
        model consumes the random stream as a plain ``nn.Module`` did (seeded code after it is unchanged)."""
        device = next(self.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self.post_init()

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether checkpointing is on (PEFT asks under this name, which transformers 5 deprecates with a warning)."""
        return bool(self.gradient_checkpointing)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range or init_std, else 0.02) matrices and embeddings, zero biases, unit norms
        (transformers calls this for fresh models and for weights a checkpoint lacks)."""
        std = float(getattr(self.config, "initializer_range", None) or getattr(self.config, "init_std", None) or 0.02)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    def parts(self) -> tuple[nn.Embedding, nn.ModuleList, nn.Module, torch.Tensor]:
        """(token embedding, blocks, final norm, output-head weight)."""
        raise NotImplementedError

    def get_input_embeddings(self) -> nn.Embedding:
        return self.parts()[0]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support replacing its embedding")

    def get_output_embeddings(self) -> nn.Linear | None:
        """The output head's linear layer, None when the head is the (tied) embedding itself."""
        head = self.parts()[3]
        return next((m for m in self.modules() if isinstance(m, nn.Linear) and m.weight is head), None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past: KVCache | None = None,
                return_kv: bool = False, return_dict: bool = False, padded: bool = False):
        """Logits [B, T, V] for ``input_ids`` (``return_dict=True``: a ``MaskedLMOutput``).

        With ``past``, the tokens attend to the cached context as well as to each other; pass their
        ``position_ids`` (they no longer start at 0). With ``return_kv``, also return a cache of this
        pass's keys/values (masked like ``attention_mask``), to be sliced into prefix/suffix caches. ``padded``: the
        caller knows the masks hide some position, so they are used without checking (a host synchronisation).
        """
        hidden, ctx, active = self._trunk(input_ids, attention_mask, position_ids, past, return_kv, padded)
        logits = F.linear(hidden, self.parts()[3])
        if self.arch.scale_logits:
            logits = logits * (1.0 / math.sqrt(self.arch.hidden_size))
        kv = (KVCache([k for k, _ in ctx.collect], [v for _, v in ctx.collect], active, all_visible=ctx.mask is None)
              if return_kv else None)
        out = MaskedLMOutput(logits=logits) if return_dict else logits
        return (out, kv) if return_kv else out

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final normalised hidden states [B, T, H] the output head reads (a value head reads them too)."""
        return self._trunk(input_ids, attention_mask, None, None, False)[0]

    def _trunk(self, input_ids, attention_mask, position_ids, past, return_kv, padded=False):
        """Embedding, blocks and final norm: (hidden states [B, T, H], the attention context, active keys)."""
        embed, blocks, norm, _ = self.parts()
        b, t = input_ids.shape
        if position_ids is None:
            if past is not None:
                raise ValueError("a forward pass over cached context needs the active tokens' position_ids")
            position_ids = position_ids_from_mask(attention_mask, b, t, input_ids.device)
        cos, sin = rotary_cos_sin(position_ids, self.arch.head_dim, self.arch.rope_theta)
        active = (torch.ones(b, t, dtype=torch.bool, device=input_ids.device) if attention_mask is None
                  else attention_mask.bool())
        if attention_mask is None and (past is None or past.all_visible):
            mask = None  # everything visible, known without asking the device (a host synchronisation on a GPU)
        else:
            keys = active if past is None else torch.cat([past.mask, active], dim=1)
            mask = keys[:, None, None, :] if padded or not bool(keys.all()) else None
        ctx = AttentionContext(cos, sin, mask, past, [] if return_kv else None)
        x = embed(input_ids)
        for i, block in enumerate(blocks):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, ctx, i, use_reentrant=False)
            else:
                x = block(x, ctx, i)
        return norm(x), ctx, active

    def output_head_names(self) -> list[str]:
        """Names of the linear module(s) holding the output head. The forward multiplies by the head's
        weight directly, so LoRA layers there would be ignored unmerged and applied merged: LoRA skips them."""
        head = self.parts()[3]
        return [n for n, m in self.named_modules() if isinstance(m, nn.Linear) and m.weight is head]
