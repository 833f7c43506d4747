"""The trajectory record: everything a rollout decided, in O(B·L), and exact replay of any state.

For B completions of length L decoded over S steps the record keeps the final tokens, the step at
which each position received its final token (``commit_step``), the log-probability of that token
under the sampling policy at that step (``rollout_logp``, the "old policy" value for ratios), the
block layout, the sampler settings, the seed and the cost (NFE, seconds). Any intermediate state is a
pure function of it:

    x_s = prompt ++ where(commit_step < s, completion_ids, MASK)

(samplers that undo commits, like RCR, also store their re-mask events, which ``state`` replays; tokens fixed
before the first step — IGPO's inpainted hints — have commit step −1, so every state holds them, and are marked in
``extras["hint_mask"]``).
Records save to and load from a single safetensors file — tensors plus JSON metadata, no pickle.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields

import torch
from safetensors.torch import load_file, save_file

NOT_COMMITTED = -1


@dataclass
class Trajectory:
    prompt_ids: torch.Tensor       # [B, P] left-padded with the pad id
    prompt_mask: torch.Tensor      # [B, P] 1 = prompt token, 0 = padding
    completion_ids: torch.Tensor   # [B, L] final tokens
    completion_mask: torch.Tensor  # [B, L] bool: tokens up to and including the first EOS
    commit_step: torch.Tensor      # [B, L] int16: step whose forward pass chose the final token
    rollout_logp: torch.Tensor     # [B, L] float32: log p(token | x_{commit_step}) under the sampling policy
    num_steps: torch.Tensor        # [B] int: steps the row took (early stop / threshold make them differ)
    mask_id: int
    pad_id: int
    blocks: list[tuple[int, int]]  # completion-relative [lo, hi) of each block, in decoding order
    sampler: dict                  # resolved sampler settings
    seed: int
    nfe: int                       # model forward passes, over all batches
    seconds: float
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # optional, only when asked for

    @property
    def batch_size(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def completion_length(self) -> int:
        return self.completion_ids.shape[1]

    def state(self, step: int | torch.Tensor) -> torch.Tensor:
        """The exact model input [B, P + L] before ``step``'s forward pass (a scalar or one per row)."""
        step_t = torch.as_tensor(step, device=self.commit_step.device)
        if step_t.dim() == 1:
            step_t = step_t.unsqueeze(1)
        present = self.commit_step < step_t
        completion = torch.where(present, self.completion_ids, self.completion_ids.new_full((), self.mask_id))
        events = self.extras.get("remask_events")
        if events is not None and len(events):
            # a token committed at c and re-masked at r is present in the states of steps c+1 .. r
            row, pos, token, c, r = events.long().unbind(1)
            s = step_t.reshape(-1).expand(self.batch_size)[row]
            live = (c < s) & (s <= r)
            completion = completion.clone()
            completion[row[live], pos[live]] = token[live]
        return torch.cat([self.prompt_ids, completion], dim=1)

    def attention_mask(self) -> torch.Tensor:
        """Attention mask [B, P + L] for ``state``: prompt padding hidden, completion visible."""
        return torch.cat([self.prompt_mask, torch.ones_like(self.completion_ids)], dim=1).long()

    def committed_at(self, step: int) -> torch.Tensor:
        """Boolean [B, L]: the positions whose final token was chosen at ``step``."""
        return self.commit_step == step

    # ---- persistence ---------------------------------------------------------------------
    _TENSORS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "commit_step",
                "rollout_logp", "num_steps")

    def save(self, path: str | os.PathLike) -> None:
        tensors = {k: getattr(self, k).contiguous().cpu() for k in self._TENSORS}
        tensors.update({f"extra.{k}": v.contiguous().cpu() for k, v in self.extras.items()})
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._TENSORS + ("extras",)}
        save_file(tensors, str(path), metadata={"trajectory": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Trajectory":
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["trajectory"])
        tensors = load_file(str(path), device=str(device))
        extras = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
        meta["blocks"] = [tuple(b) for b in meta["blocks"]]
        return cls(**{k: tensors[k] for k in cls._TENSORS}, **meta, extras=extras)

    def take(self, rows: list[int] | torch.Tensor) -> "Trajectory":
        """The record of these rows, in this order (re-mask events follow their rows)."""
        index = torch.as_tensor(rows, dtype=torch.long)
        extras = {}
        for key, value in self.extras.items():
            if key == "remask_events":  # [E, 5] (row, pos, ...): each kept row's events, renumbered
                events = [value[value[:, 0].long() == int(r)] for r in index]
                events = [e.clone() for e in events]
                for new_row, e in enumerate(events):
                    e[:, 0] = new_row
                extras[key] = torch.cat(events) if events else value[:0]
            else:
                extras[key] = value[index.to(value.device)]
        return Trajectory(**{k: getattr(self, k)[index.to(getattr(self, k).device)] for k in self._TENSORS},
                          mask_id=self.mask_id, pad_id=self.pad_id, blocks=self.blocks, sampler=self.sampler,
                          seed=self.seed, nfe=self.nfe, seconds=self.seconds, extras=extras)

    @classmethod
    def cat(cls, parts: list["Trajectory"]) -> "Trajectory":
        """Concatenate batches decoded with the same settings (prompts re-padded to one width)."""
        first = parts[0]
        if any(p.completion_length != first.completion_length or p.blocks != first.blocks for p in parts):
            raise ValueError("only trajectories with the same completion length and blocks can be concatenated")
        width = max(p.prompt_ids.shape[1] for p in parts)

        def left(t: torch.Tensor, value) -> torch.Tensor:
            return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

        extras = {}
        for key in first.extras:
            if key == "remask_events":  # [E, 5] (row, pos, token, commit, remask): rows renumbered
                offsets = torch.tensor([0] + [p.batch_size for p in parts[:-1]]).cumsum(0)
                extras[key] = torch.cat([p.extras[key] + torch.tensor([int(o), 0, 0, 0, 0], dtype=p.extras[key].dtype)
                                         for p, o in zip(parts, offsets)])
            else:  # per-row; per-step extras [B, S, ...] are padded to the longest S
                values = [p.extras[key] for p in parts]
                if values[0].dim() >= 2 and len({v.shape[1] for v in values}) > 1:
                    longest = max(v.shape[1] for v in values)
                    fill = float("nan") if values[0].is_floating_point() else -1
                    values = [torch.cat([v, v.new_full((v.shape[0], longest - v.shape[1], *v.shape[2:]), fill)], 1)
                              for v in values]
                extras[key] = torch.cat(values)
        return cls(
            prompt_ids=torch.cat([left(p.prompt_ids, first.pad_id) for p in parts]),
            prompt_mask=torch.cat([left(p.prompt_mask, 0) for p in parts]),
            **{k: torch.cat([getattr(p, k) for p in parts]) for k in cls._TENSORS[2:]},
            mask_id=first.mask_id, pad_id=first.pad_id, blocks=first.blocks, sampler=first.sampler, seed=first.seed,
            nfe=sum(p.nfe for p in parts), seconds=sum(p.seconds for p in parts), extras=extras)
