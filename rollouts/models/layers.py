"""Building blocks shared by the native LLaDA and Dream architectures.

Both families are Llama-shaped transformers with *bidirectional* attention: RMSNorm (computed in
float32), rotary position embeddings on the first/second half of each head, and a SwiGLU MLP.
Padding follows the Hugging Face convention (attention_mask 1 = token, 0 = pad; left padding):
padded keys are masked out and positions count real tokens only, so a left-padded row gives the
same logits as the same row without padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm, statistics in float32, scale applied in the input dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def position_ids_from_mask(attention_mask: torch.Tensor | None, batch: int, length: int,
                           device: torch.device) -> torch.Tensor:
    """Positions counting real tokens only (left padding → the first real token is position 0)."""
    if attention_mask is None:
        return torch.arange(length, device=device).unsqueeze(0).expand(batch, length)
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


def rotary_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [B, 1, T, head_dim] in float32 for the given positions."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device,
                                             dtype=torch.int64).float() / head_dim))
    freqs = position_ids.float().unsqueeze(-1) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full_precision: bool) -> torch.Tensor:
    """Rotate [B, H, T, D] queries or keys. ``full_precision`` computes in float32 (LLaDA's
    ``rope_full_precision``); otherwise the tables are cast to the activations' dtype (Dream/Qwen2)."""
    if full_precision:
        xf = x.float()
        return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + _rotate_half(x) * sin


def bidirectional_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor | None) -> torch.Tensor:
    """Full (non-causal) attention over [B, H, T, D] tensors; grouped k/v heads are repeated."""
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, T, H*D] → [B, H, T, D]."""
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D] → [B, T, H*D]."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)
