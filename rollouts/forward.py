"""One denoising step's model call: exact, or with Fast-dLLM's prefix / dual KV cache, and with
classifier-free guidance. Returns "logits for position i" over the current block onwards.

- ``none``: the whole sequence every step (what the reference samplers do).
- ``prefix``: at each block's first step, one full pass whose keys/values before the block are kept;
  later steps run only the block and everything after it against that cache.
- ``dual``: the same full pass also caches everything after the block; later steps run the block only.

The cache is preallocated with room for the later steps' active tokens, which each step writes in place (no
per-step concatenation of the context; ``models/cache.py``). Cached keys/values are not refreshed inside a block,
so the cached modes are approximations (opt-in, reported by the benchmark). For families whose logits are shifted
(Dream: position i is predicted by output i−1) the active window starts one token earlier, so every shifted logit
comes from a fresh output. With ``cfg_scale > 0`` the conditional and unconditional (prompt masked) rows run as one
batch.
"""
from __future__ import annotations

import torch

from .adapter import ModelAdapter
from .models.base import BidirectionalLM
from .models.cache import KVCache
from .models.layers import position_ids_from_mask


class StepForward:
    """Model calls for one batch: call :meth:`start_block` at each block, then :meth:`__call__` per step."""

    def __init__(self, adapter: ModelAdapter, x: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int,
                 cache: str = "none", cfg_scale: float = 0.0):
        if cache != "none" and not isinstance(adapter.model, BidirectionalLM):
            raise ValueError(f"cache={cache!r} needs a native model (llada, dream); {adapter.family.name} has none")
        self.adapter, self.cache_mode, self.cfg_scale = adapter, cache, cfg_scale
        self.shift = 1 if adapter.logit_shift else 0
        self.batch = x.shape[0]
        self.attn = attention_mask if cfg_scale == 0 else torch.cat([attention_mask, attention_mask])
        self.positions = position_ids_from_mask(self.attn, self.attn.shape[0], self.attn.shape[1], x.device)
        self.visible = None if bool(self.attn.all()) else self.attn  # no padding: the model needs no mask
        # with padding a native model is told so once, rather than checking the mask at every step
        self.mask_kwargs = {"padded": True} if self.visible is not None and isinstance(adapter.model,
                                                                                         BidirectionalLM) else {}
        self.prompt_region = torch.zeros_like(self.attn, dtype=torch.bool)
        self.prompt_region[self.batch:, :prompt_length] = cfg_scale > 0  # rows of the unconditional half
        self.past: KVCache | None = None
        self.lo = self.hi = 0
        self.nfe = 0

    def start_block(self, lo: int, hi: int) -> None:
        """Sequence positions [lo, hi) form the next block; the next call refreshes any cache."""
        self.lo, self.hi, self.past = lo, hi, None

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg_scale == 0:
            return x
        both = torch.cat([x, x])
        return both.masked_fill(self.prompt_region, self.adapter.mask_id)

    def _guide(self, logits: torch.Tensor) -> torch.Tensor:
        if self.cfg_scale == 0:
            return logits
        cond, uncond = logits[: self.batch], logits[self.batch:]
        return uncond + (self.cfg_scale + 1) * (cond - uncond)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, T - lo, V] for positions lo.. (``dual``: lo..hi only), float32."""
        self.nfe += 1
        inputs = self._inputs(x)
        if self.cache_mode == "none":
            raw = self.adapter.model(inputs, attention_mask=self.visible, **self.mask_kwargs)
            return self._guide(self.adapter.logits_from_raw(raw)[:, self.lo:]).float()
        start = self.lo - self.shift
        if self.past is None:  # the block's first step: one full pass, keep the context's keys/values
            raw, kv = self.adapter.model(inputs, attention_mask=self.visible, return_kv=True, **self.mask_kwargs)
            self.past = kv.slice(0, start)
            if self.cache_mode == "dual":
                self.past = self.past.cat(kv.slice(self.hi))
            end = self.hi if self.cache_mode == "dual" else inputs.shape[1]
            self.past = self.past.with_room(end - start)  # later steps write their keys there, no per-step copy
            logits = self.adapter.logits_from_raw(raw)[:, self.lo:]
            return self._guide(logits if self.cache_mode == "prefix" else logits[:, : self.hi - self.lo]).float()
        end = self.hi if self.cache_mode == "dual" else inputs.shape[1]
        raw = self.adapter.model(inputs[:, start:end], past=self.past, position_ids=self.positions[:, start:end],
                                 attention_mask=None if self.visible is None else self.attn[:, start:end],
                                 **self.mask_kwargs)
        # with a shift, raw output j (position start + j) scores position start + j + 1 = lo + j
        return self._guide(raw[:, : end - self.lo]).float()
