"""The reference policy π_ref for the KL penalty.

- Under LoRA: the policy's own base model with the adapters switched off (PEFT's
  ``disable_adapter()``) — no second copy of the weights.
- Full fine-tuning: a frozen copy of the initial policy, optionally kept on another device (e.g. the
  CPU), re-synced to the policy every ``sync_steps`` optimizer steps (TR-DPO, as d1 does; 0 = never).
"""
from __future__ import annotations

import copy
import dataclasses
from contextlib import contextmanager
from typing import Iterator

import torch

from unmask.rollouts.adapter import ModelAdapter


class ReferencePolicy:
    """``use()`` yields the adapter to score with; ``maybe_sync(step)`` after each optimizer step."""

    @contextmanager
    def use(self) -> Iterator[ModelAdapter]:
        raise NotImplementedError
        yield

    def maybe_sync(self, step: int) -> bool:
        return False


class AdapterDisabledReference(ReferencePolicy):
    """The LoRA-wrapped policy with its adapters disabled (``peft_model`` wraps ``policy.model``)."""

    def __init__(self, policy: ModelAdapter, peft_model):
        if not hasattr(peft_model, "disable_adapter"):
            raise TypeError("AdapterDisabledReference needs a PEFT model (with disable_adapter())")
        self.policy, self.peft_model = policy, peft_model

    @contextmanager
    def use(self):
        with self.peft_model.disable_adapter():
            yield self.policy


class FrozenCopyReference(ReferencePolicy):
    """A frozen copy of the policy on ``device``; its scores come back on the policy's device."""

    def __init__(self, policy: ModelAdapter, device: str | torch.device | None = None, sync_steps: int = 0):
        self.policy, self.sync_steps = policy, sync_steps
        model = copy.deepcopy(policy.model).to(device or policy.device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        # a DiffusionGemma adapter (a dataclass) is copied as it is, its model replaced, on the policy's device
        self.adapter = (_DeviceBridge(model, policy) if isinstance(policy, ModelAdapter)
                        else dataclasses.replace(policy, model=model))

    @contextmanager
    def use(self):
        yield self.adapter

    def maybe_sync(self, step: int) -> bool:
        if self.sync_steps and step > 0 and step % self.sync_steps == 0:
            with torch.no_grad():
                for ref, live in zip(self.adapter.model.parameters(), self.policy.model.parameters()):
                    ref.copy_(live.detach().to(ref.device))
            return True
        return False


class _DeviceBridge(ModelAdapter):
    """A ModelAdapter over a model that may live on another device: inputs go there, logits come back."""

    def __init__(self, model, policy: ModelAdapter):
        super().__init__(model, policy.family, policy.token_ids, tokenizer=policy._tokenizer,
                         tokenizer_spec=policy._tokenizer_spec, source=policy.source, revision=policy.revision)
        self._home = policy

    def logits(self, input_ids, attention_mask=None):
        dev = next(self.model.parameters()).device
        out = super().logits(input_ids.to(dev), None if attention_mask is None else attention_mask.to(dev))
        return out.to(input_ids.device)
