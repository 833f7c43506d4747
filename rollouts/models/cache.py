"""Key/value caches for bidirectional dLLMs (Fast-dLLM's prefix and dual caches).

A :class:`KVCache` holds, per layer, the keys (after RoPE) and values of a set of *context* positions,
plus which of them may be attended to. A forward pass given a cache computes only the *active* tokens
(their own positions passed explicitly) and lets them attend to context ∪ active. Because attention is
bidirectional and positions are baked into the keys, the order of context keys does not matter: a
prefix cache and a suffix cache are simply concatenated. Cached values are stale once the tokens they
came from change — that is the approximation the caller opts into.

A cache may carry *room*: per-layer buffers preallocated for the context plus the active tokens of the forward
passes that will use it (:meth:`KVCache.with_room`). Each such pass writes its keys/values into the room in place
(:meth:`KVCache.extend`) and attends over the whole buffer, so a step costs no copy of the context: the same keys in
the same order as concatenating, hence bit-identical attention.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    keys: list[torch.Tensor]    # per layer [B, H_kv, T, D]
    values: list[torch.Tensor]  # per layer [B, H_kv, T, D]
    mask: torch.Tensor          # [B, T] bool: True = may be attended to
    room: int = 0               # free slots after the context in every buffer (keys/values are [B, H_kv, T + room, D])
    all_visible: bool = False   # every position may be attended to (known on the host: no need to read ``mask``)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def with_room(self, active: int) -> "KVCache":
        """The same context in buffers with ``active`` free slots after it, for passes over ``active`` tokens."""
        def grow(t: torch.Tensor) -> torch.Tensor:
            buffer = t.new_empty(*t.shape[:2], self.length + active, t.shape[3])
            buffer[:, :, : self.length] = t[:, :, : self.length]
            return buffer
        return KVCache([grow(k) for k in self.keys], [grow(v) for v in self.values], self.mask, active,
                       self.all_visible)

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H_kv, T + T_active, D] of the context then the active tokens ``k``, ``v``: written into
        the room in place when the cache has room for exactly them (and no gradient is taken), else concatenated."""
        n = self.length
        if self.room == k.shape[2] and not torch.is_grad_enabled():  # (a graph may not see its inputs overwritten)
            self.keys[layer][:, :, n:] = k
            self.values[layer][:, :, n:] = v
            return self.keys[layer], self.values[layer]
        return torch.cat([self.keys[layer][:, :, :n], k], 2), torch.cat([self.values[layer][:, :, :n], v], 2)

    def slice(self, lo: int, hi: int | None = None) -> "KVCache":
        """Positions lo:hi (of the sequence the cache was computed on)."""
        return KVCache([k[:, :, lo:hi] for k in self.keys], [v[:, :, lo:hi] for v in self.values], self.mask[:, lo:hi],
                       all_visible=self.all_visible)

    def cat(self, other: "KVCache") -> "KVCache":
        return KVCache([torch.cat([a, b], 2) for a, b in zip(self.keys, other.keys)],
                       [torch.cat([a, b], 2) for a, b in zip(self.values, other.values)],
                       torch.cat([self.mask, other.mask], 1), all_visible=self.all_visible and other.all_visible)
