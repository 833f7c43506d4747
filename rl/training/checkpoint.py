"""Training checkpoints: everything a run needs to continue exactly, written atomically, in the Hugging Face
layout (transformers' and TRL's ``checkpoint-<step>/``: the model at the folder's root, the trainer state beside it).

``output_dir/checkpoint-<step>/`` holds
- the policy, loadable from the folder itself: LoRA adapter files (``adapter_config.json``,
  ``adapter_model.safetensors``: ``peft.PeftModel.from_pretrained(base, folder)``, ``unmask eval --adapter
  folder``) or full weights (``config.json``, ``model.safetensors``, the tokenizer: ``load_model(folder)``,
  ``unmask eval --model folder``);
- ``reference.safetensors``: a frozen reference copy's weights (full fine-tuning only);
- ``optimizer.pt``: optimizer and LR-scheduler state (tensors and numbers only: ``weights_only`` loads), or
  under DeepSpeed ``deepspeed/`` (its own checkpoint: partitioned optimizer state of every rank);
- ``value/``: TraceRL's value model (``algorithm.value_model``): ``model.safetensors`` and its optimizer;
- ``rng_rank<r>.pt``: Python, NumPy and torch RNG states of each rank;
- ``trainer_state.json``: step counters, the prompt order's position, best eval metric, the logger's
  run id; ``recipe.yaml``: the resolved recipe.

A checkpoint is written to ``checkpoint-<step>.tmp`` and renamed when complete, so a crash during a
save leaves the previous checkpoint as the latest loadable one (leftover ``.tmp`` folders are ignored).
At the end of a run the final policy and its recipe are written to ``output_dir`` itself (:func:`save_model`,
transformers' ``Trainer.save_model``). Checkpoints written before the policy moved to the root kept it in a
``model/`` subfolder; :func:`~unmask.rollouts.models.checkpoint.model_dir` finds it there, so they still resume
and load.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from unmask.rollouts.models.checkpoint import model_dir

PREFIX = "checkpoint-"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))
             and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume_from: str | None, output_dir: str | os.PathLike) -> Path | None:
    """``latest`` → the newest checkpoint in ``output_dir`` (None if there is none yet); a path → itself."""
    if resume_from is None:
        return None
    if resume_from == "latest":
        found = checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"training.resume_from {resume_from!r} is not a checkpoint directory (no "
                                f"trainer_state.json); give a checkpoint-<step> folder or 'latest'")
    return path


def save_model(policy, backend, output_dir: str | os.PathLike, recipe_yaml: str, log=print) -> Path:
    """The final policy (full model or LoRA adapter) and its recipe in ``output_dir`` itself, loadable with
    ``from_pretrained`` as transformers' ``Trainer.save_model`` leaves it; every rank takes part (ZeRO-3 gathers
    the weights), the main rank writes."""
    out = Path(output_dir)
    backend.barrier()
    with backend.full_state():
        if backend.is_main:
            out.mkdir(parents=True, exist_ok=True)
            policy.save(out)
            (out / "recipe.yaml").write_text(recipe_yaml, encoding="utf-8")
    backend.barrier()
    log(f"saved the final {'adapter' if policy.peft_model is not None else 'model'} to {out}")
    return out


def load_policy(policy, checkpoint: Path) -> None:
    """Restore the policy's trainable weights (the LoRA adapter, or the full model) and a frozen reference copy
    from a checkpoint written by the trainers (any rank; the weights are in Hugging Face format)."""
    from safetensors.torch import load_file

    from unmask.rollouts.models.checkpoint import read_state_dict
    source = model_dir(checkpoint)
    if policy.peft_model is not None:
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(policy.peft_model, load_file(str(source / "adapter_model.safetensors")))
    else:
        policy.adapter.load_state_dict(read_state_dict(source))  # one file or shards
    policy.load_reference(checkpoint)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def begin(output_dir: str | os.PathLike, step: int) -> Path:
    """A fresh ``checkpoint-<step>.tmp`` folder to write into (the main rank calls this)."""
    tmp = Path(output_dir) / f"{PREFIX}{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def save_rng(tmp: Path, rank: int = 0) -> None:
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")


def commit(tmp: Path, *, trainer_state: dict, recipe_yaml: str,
           reference: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the run's state next to what the ranks wrote into ``tmp``, then rename it into place."""
    if reference is not None:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp / "reference.safetensors"))
    (tmp / "recipe.yaml").write_text(recipe_yaml, encoding="utf-8")
    (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
    final = tmp.with_name(tmp.name.removesuffix(".tmp"))
    if final.exists():  # re-saving the same step (e.g. the best checkpoint at a save step): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_trainer_state(path: Path) -> dict:
    return json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))


def load_rng_state(path: Path, rank: int = 0) -> dict:
    # Python's RNG state is a tuple of ints: our own file, so a full (pickle) load is safe here
    return torch.load(path / f"rng_rank{rank}.pt", weights_only=False)


def prune(output_dir: str | os.PathLike, keep_last: int | None, keep: set[Path] = frozenset()) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (never those in ``keep``); return the deleted."""
    found = checkpoints(output_dir)
    if keep_last is None:
        return []
    doomed = [p for p in found[:-keep_last] if p not in keep] if keep_last else [p for p in found if p not in keep]
    for p in doomed:
        shutil.rmtree(p)
    for leftover in Path(output_dir).glob(f"{PREFIX}*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    return doomed
