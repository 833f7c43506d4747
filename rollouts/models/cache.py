"""Key/value caches for bidirectional dLLMs (Fast-dLLM's prefix and dual caches).

A :class:`KVCache` holds, per layer, the keys (after RoPE) and values of a set of *context* positions,
plus which of them may be attended to. A forward pass given a cache computes only the *active* tokens
(their own positions passed explicitly) and lets them attend to context ∪ active. Because attention is
bidirectional and positions are baked into the keys, the order of context keys does not matter: a
prefix cache and a suffix cache are simply concatenated. Cached values are stale once the tokens they
came from change — that is the approximation the caller opts into.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    keys: list[torch.Tensor]    # per layer [B, H_kv, T, D]
    values: list[torch.Tensor]  # per layer [B, H_kv, T, D]
    mask: torch.Tensor          # [B, T] bool: True = may be attended to

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def slice(self, lo: int, hi: int | None = None) -> "KVCache":
        """Positions lo:hi (of the sequence the cache was computed on)."""
        return KVCache([k[:, :, lo:hi] for k in self.keys], [v[:, :, lo:hi] for v in self.values], self.mask[:, lo:hi])

    def cat(self, other: "KVCache") -> "KVCache":
        return KVCache([torch.cat([a, b], 2) for a, b in zip(self.keys, other.keys)],
                       [torch.cat([a, b], 2) for a, b in zip(self.values, other.values)],
                       torch.cat([self.mask, other.mask], 1))
