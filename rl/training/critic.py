"""TraceRL's diffusion value model in training: a value head on a copy of the backbone, trained with an optimizer
(and, under DeepSpeed, an engine) of its own, turning each rollout batch's group advantages into per-token ones.

Reference: Gen-Verse/dLLM-RL ``train/init_sdar_value_model.py`` (a bias-free linear head on the backbone's last
hidden states, initialised to zero, so every value starts at 0) and ``train/train_sdar_value.py``. Per rollout
batch, as the code's pipeline runs its value stage before the policy stage:

    old values  V^old on every unit of every iteration (no gradient)
    advantages  step GAE from V^old (rl/algorithms/value.py): A_j per token, in the policy loss
    value step  one pass over the rows in the loss, one value optimizer step per mini-batch (``num_minibatches``),
                on the first iteration's units, clipped value loss against the returns R_j

Checkpoints hold it in ``value/`` (``model.safetensors`` and the optimizer: ``optimizer.pt``, or DeepSpeed's
``deepspeed/``), and the final model folder in ``value/model.safetensors``.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import nn

from unmask.rl.algorithms.batch import RolloutBatch
from unmask.rl.algorithms.estimators import Units
from unmask.rl.algorithms.value import clipped_value_loss, step_gae

from .distributed import DeepSpeedZero, make_backend
from .optim import make_optimizer, make_schedule
from .update import minibatches

FOLDER = "value"


class ValueModel(nn.Module):
    """V(x)_i for every position i of the input: a zero-initialised linear head on the backbone's final hidden
    states, shifted as the family shifts its logits (Dream: position i − 1 scores token i)."""

    def __init__(self, backbone: nn.Module, logit_shift: bool):
        super().__init__()
        if not hasattr(backbone, "hidden_states"):
            raise ValueError(f"algorithm.value_model needs a native LLaDA or Dream backbone (its hidden states); "
                             f"{type(backbone).__name__} has none: use the policy's own family, or value_model: null")
        self.backbone, self.logit_shift = backbone, logit_shift
        head = backbone.parts()[3]
        for module_head in backbone.output_head_names():  # the language-model head is unused: no gradient for it
            backbone.get_submodule(module_head).weight.requires_grad_(False)
        self.head = nn.Linear(head.shape[1], 1, bias=False).to(device=head.device, dtype=head.dtype)
        nn.init.zeros_(self.head.weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        values = self.head(self.backbone.hidden_states(input_ids, attention_mask)).squeeze(-1)  # [B, T]
        return torch.cat([values[:, :1], values[:, :-1]], 1) if self.logit_shift else values


def value_backbone(policy, source: str, model_cfg, device) -> nn.Module:
    """The backbone to copy: the policy's starting weights (``policy``; LoRA merged, which at the start changes
    nothing) or another checkpoint of the same family (a path or Hub id), never sharing the policy's tensors."""
    if source == "policy":
        if policy.peft_model is not None:
            return copy.deepcopy(policy.peft_model).merge_and_unload()
        return copy.deepcopy(policy.adapter.model)
    from unmask.rollouts.adapter import load_model
    other = load_model(source, dtype=model_cfg.dtype, device=device)
    if other.mask_id != policy.adapter.mask_id or other.family.name != policy.adapter.family.name:
        raise ValueError(f"algorithm.value_model {source!r} is a {other.family.name} model with mask id "
                         f"{other.mask_id}; the policy is {policy.adapter.family.name} with mask id "
                         f"{policy.adapter.mask_id}: the value model reads the policy's inputs, so give a checkpoint "
                         f"of the same family and tokenizer, or 'policy'")
    return other.model


class ValueCritic:
    """The value model, its optimizer and backend; :meth:`advise` is called by the policy update once per batch."""

    def __init__(self, model: ValueModel, settings, training_cfg, batches: int):
        self.model, self.settings = model, settings
        self.micro_batch_size = training_cfg.per_device_train_batch_size
        self.backend = make_backend(training_cfg)
        optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad],
                                   dataclasses.replace(training_cfg, learning_rate=settings.value_learning_rate))
        steps = max(batches * settings.num_minibatches, 1)
        self.backend.wrap(model, optimizer, make_schedule(optimizer, training_cfg, steps), training_cfg,
                          training_cfg.bf16)

    # ---- values --------------------------------------------------------------------------------------------
    def _values(self, batch: RolloutBatch, units: Units, rows, lo: int, hi: int) -> torch.Tensor:
        """Values [b, hi − lo, L] of the completion positions of units lo..hi of ``rows``."""
        traj = batch.traj
        inputs = units.inputs[rows, lo:hi]
        b, u, t = inputs.shape
        attn = None if self.settings.attend_prompt_padding else traj.attention_mask()[rows]
        attn = None if attn is None else attn.unsqueeze(1).expand(b, u, t).reshape(b * u, t)
        values = self.model(inputs.reshape(b * u, t), attn)[:, t - traj.completion_length:]
        return values.float().reshape(b, u, -1)

    def _chunks(self, units: Units) -> list[tuple[int, int]]:
        n, size = units.num_units, self.settings.backward_chunk or units.num_units
        return [(lo, min(lo + size, n)) for lo in range(0, n, size)]

    @torch.no_grad()
    def old_values(self, batch: RolloutBatch, units: Units) -> torch.Tensor:
        self.model.eval()
        with self.backend.full_parameters():
            return torch.cat([self._values(batch, units, slice(None), lo, hi) for lo, hi in self._chunks(units)], 1)

    # ---- one batch ------------------------------------------------------------------------------------------
    def advise(self, batch: RolloutBatch, plans: list) -> dict[str, float]:
        """Set each plan's per-token advantages from the old values, then train the value model on the first."""
        s = self.settings
        if batch.advantages is None or batch.advantages.dim() != 1:
            raise ValueError("the value model turns one group advantage per row into per-token advantages; use "
                             "algorithm.advantage: group")
        first = None
        for plan in plans:
            old = self.old_values(batch, plan.units)
            plan.adv, returns = step_gae(old, plan.units.scored, batch.advantages, s.gae_gamma, s.gae_lambda)
            first = first or (plan.units, old, returns)
        kept = plans[0].units.scored & batch.keep.view(-1, 1, 1)
        metrics = {"value/mean": float((first[1] * kept).sum() / kept.sum().clamp(min=1))}
        return {**metrics, **self._train(batch, *first)}

    def _train(self, batch: RolloutBatch, units: Units, old: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        s, backend = self.settings, self.backend
        any_kept = s.num_minibatches == 1 or round(backend.sum(int(batch.keep.sum()))) > 0
        loss_sum = clipped = tokens = 0.0
        self.model.train()
        for part in minibatches(batch.keep, s.num_minibatches, any_kept):
            size = self.micro_batch_size
            micro = ([slice(i, min(i + size, part.stop)) for i in range(part.start, part.stop, size)]
                     if isinstance(part, slice) else list(part.split(size)))
            scored = units.scored[part] & batch.keep[part].view(-1, 1, 1)
            norm = max(round(backend.sum(int((scored.sum(-1) > 0).sum()))), 1) * batch.traj.completion_length
            with backend.accumulate():
                for rows in micro:
                    mask = units.scored[rows] & batch.keep[rows].view(-1, 1, 1)
                    for lo, hi in self._chunks(units):
                        per_token, wider = clipped_value_loss(self._values(batch, units, rows, lo, hi),
                                                              old[rows, lo:hi], returns[rows, lo:hi], s.value_clip)
                        m = mask[:, lo:hi]
                        loss = (per_token * m).sum() / norm
                        backend.backward(loss * backend.world_size)
                        loss_sum += float(loss.detach())
                        clipped += float((wider & m).sum())
                        tokens += float(m.sum())
            backend.step()
        return {"value/loss": loss_sum / s.num_minibatches, "value/clip_fraction": clipped / max(tokens, 1.0)}

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """The value model and its optimizer into ``directory/value`` (every rank takes part)."""
        out = Path(directory) / FOLDER
        if self.backend.is_main:
            out.mkdir(parents=True, exist_ok=True)
        self.backend.barrier()
        self.save_weights(out)
        self.backend.save_training_state(out)

    def save_weights(self, out: Path) -> None:
        from safetensors.torch import save_file
        with self.backend.full_state():
            if self.backend.is_main:
                out.mkdir(parents=True, exist_ok=True)
                state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
                save_file(state, str(out / "model.safetensors"))

    def load(self, directory: Path) -> None:
        out = Path(directory) / FOLDER
        if not (out / "model.safetensors").is_file():
            raise FileNotFoundError(f"{directory} holds no value model ({FOLDER}/model.safetensors): it was written "
                                    f"without algorithm.value_model; resume it without one, or start afresh")
        if isinstance(self.backend, DeepSpeedZero):
            self.backend.engine.load_checkpoint(str(out / "deepspeed"), tag="state")
            return
        from safetensors.torch import load_file
        self.model.load_state_dict(load_file(str(out / "model.safetensors"), device=str(self.backend.params[0].device)))
        self.backend.load_optimizer_state(out)
