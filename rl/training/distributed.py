"""How the trainer steps, sums across ranks and saves: one process (plain torch) or DeepSpeed ZeRO.

The policy update makes a variable number of backward calls per optimizer step (micro-batches ×
chunks), each loss already normalised by batch-wide counts. Under DeepSpeed that needs (measured on
2 CPU ranks, gloo; see the README's DeepSpeed notes):
- every backward of an optimizer step inside ``engine.coalesce_grad_reduction()``, with
  ``scale_wrt_gas=False`` and ``gradient_accumulation_steps: 1`` in the config (one reduction per step;
  otherwise ZeRO-2 silently keeps only the last backward);
- normalisers summed over ranks and the loss multiplied by the world size, since DeepSpeed averages
  gradients over ranks (``bnpo``'s local normaliser is the exception: TRL's DDP semantics average it);
- ZeRO-3: the same number of forward+backward passes on every rank (collective parameter gathers), so
  short ranks add zero-loss passes; rollouts and gradient-free scoring run with all parameters
  gathered once and DeepSpeed's per-layer hooks removed (ranks may then run different numbers of
  forwards), not one gather per layer per forward;
- gradient clipping from the config (``training.max_grad_norm``), the LR schedule stepped by the engine.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Iterator

import torch

from unmask.rl.recipes import find_recipe

from .checkpoint import load_policy


class SingleProcess:
    """One process, CPU or one GPU: plain torch."""

    rank, world_size, is_main = 0, 1, True

    def wrap(self, model: torch.nn.Module, optimizer, scheduler, training_cfg, bf16: bool) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.max_grad_norm = training_cfg.max_grad_norm
        self.params = [p for p in model.parameters() if p.requires_grad]

    def sum(self, value: float) -> float:
        return value

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    @contextlib.contextmanager
    def accumulate(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def full_parameters(self) -> Iterator[None]:
        yield

    def step(self) -> float:
        """Clip, step, schedule, zero; return the total gradient norm before clipping (TRL's ``grad_norm``)."""
        # without clipping (max_grad_norm 0) a bound of inf: the norm is measured, the gradients scaled by exactly 1
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm if self.max_grad_norm > 0 else math.inf)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def autocast(self, device: torch.device, bf16: bool):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def barrier(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def save_training_state(self, directory: Path) -> None:
        """Optimizer and scheduler state beside the policy's weights (which the trainer writes to the folder's root)."""
        if self.is_main:
            torch.save(self.state_dict(), directory / "optimizer.pt")

    def load_training_state(self, directory: Path, policy) -> None:
        load_policy(policy, directory)  # the model (or adapter) at the checkpoint's root; model/ in older ones
        self.load_optimizer_state(directory)

    def load_optimizer_state(self, directory: Path) -> None:
        state = torch.load(directory / "optimizer.pt", map_location=self.params[0].device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    @contextlib.contextmanager
    def full_state(self) -> Iterator[None]:
        """Around saving the policy's weights (ZeRO-3 gathers them; every rank must enter)."""
        yield

    def close(self) -> None:
        pass


def launched_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class DeepSpeedZero(SingleProcess):
    """DeepSpeed ZeRO stage 2 or 3 (``training.deepspeed``: a JSON config; batch sizes, clipping and
    precision come from the recipe)."""

    def __init__(self, config_path: str):
        import deepspeed
        import torch.distributed as dist
        self.deepspeed, self.dist = deepspeed, dist
        self.config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        if not dist.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self.calls = 0

    def wrap(self, model, optimizer, scheduler, training_cfg, bf16):
        cfg = {**self.config, "train_micro_batch_size_per_gpu": training_cfg.per_device_train_batch_size,
               "gradient_accumulation_steps": 1, "steps_per_print": 10 ** 9,
               "gradient_clipping": training_cfg.max_grad_norm, "bf16": {"enabled": bf16}}
        cfg.pop("train_batch_size", None)
        if not isinstance(optimizer, torch.optim.AdamW):
            cfg["zero_allow_untested_optimizer"] = True
        self.engine, self.optimizer, _, self.scheduler = self.deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=cfg)
        self.model = model
        self.stage = self.engine.zero_optimization_stage()

    def _comm_device(self) -> torch.device:
        """Where collective tensors must live: NCCL reduces only CUDA tensors, gloo CPU ones."""
        return (torch.device("cuda", torch.cuda.current_device()) if self.dist.get_backend() == "nccl"
                else torch.device("cpu"))

    def sum(self, value: float) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        self.dist.all_reduce(t)
        return float(t)

    def backward(self, loss):
        self.engine.backward(loss, scale_wrt_gas=False)
        self.calls += 1

    @contextlib.contextmanager
    def accumulate(self):
        self.calls = 0
        with self.engine.coalesce_grad_reduction():
            yield
            if self.stage == 3:  # equal numbers of forward+backward passes on every rank
                n = torch.tensor([self.calls], device=self._comm_device())
                self.dist.all_reduce(n, op=self.dist.ReduceOp.MAX)
                for _ in range(int(n) - self.calls):
                    self.backward(self._dummy_loss())

    def _dummy_loss(self) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model(torch.zeros(1, 2, dtype=torch.long, device=device)).float().sum() * 0.0

    @contextlib.contextmanager
    def full_parameters(self):
        if self.stage != 3:
            yield
            return
        offload = self.engine.optimizer.parameter_offload
        with self.deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
            for hook in offload.forward_hooks + offload.backward_hooks:
                hook.remove()
            offload.forward_hooks, offload.backward_hooks = [], []
            try:
                yield
            finally:
                offload._register_deepspeed_module(offload.module)

    def step(self) -> float | None:
        self.engine.step()  # clipping (config), optimizer, LR schedule; gradients zeroed
        norm = self.engine.get_global_grad_norm()  # before clipping; None where DeepSpeed computes none
        return None if norm is None else float(norm)

    def autocast(self, device, bf16):
        return contextlib.nullcontext()  # DeepSpeed's bf16 mode casts the model itself

    def barrier(self):
        self.dist.barrier()

    @contextlib.contextmanager
    def full_state(self):
        if self.stage != 3:
            yield
            return
        with self.deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
            yield

    def save_training_state(self, directory: Path) -> None:
        """DeepSpeed's own checkpoint (every rank's optimizer partition) in ``deepspeed/``; the trainer writes the
        gathered policy to the folder's root."""
        self.engine.save_checkpoint(str(directory / "deepspeed"), tag="state")

    def load_training_state(self, directory: Path, policy) -> None:
        self.engine.load_checkpoint(str(directory / "deepspeed"), tag="state")  # the weights too, partitioned
        if (directory / "reference.safetensors").is_file():
            policy.load_reference(directory)

    def close(self):
        self.dist.barrier()
        self.dist.destroy_process_group()


def rank_device(backend, device: str) -> str:
    """Each rank of a multi-GPU launch takes its own GPU; otherwise ``device`` (the recipe's)."""
    if backend.world_size > 1 and torch.cuda.is_available() and device in ("auto", "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def make_backend(training_cfg):
    """DeepSpeed when the recipe names a config, else one process (a multi-rank launch needs one)."""
    if training_cfg.deepspeed:
        return DeepSpeedZero(str(find_recipe(training_cfg.deepspeed)))
    if launched_distributed():
        raise ValueError("launched with several ranks but training.deepspeed is null; set training.deepspeed to "
                         "a config such as recipes/deepspeed/zero2.json")
    return SingleProcess()
