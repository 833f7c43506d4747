"""Reading and writing Hugging Face-format checkpoints (config.json + safetensors) for native models.

Handles a local directory or a Hub id, single-file or sharded safetensors
(``model.safetensors.index.json``), dtype and device choice, and builds the model on the meta device
so an 8B checkpoint is materialised once, directly in its target dtype. Every failure names the
file and the fix. Saving is transformers' ``save_pretrained`` (sharded above ``MAX_SHARD_SIZE``), so what
is written loads back here and through ``transformers.AutoModel`` alike.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from .base import BidirectionalLM

MAX_SHARD_SIZE = "5GB"  # the Hub's usual shard size: an 8B model in bfloat16 is four files
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.py"]


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read or matched to its architecture."""


def checkpoint_source(name_or_path: str | os.PathLike) -> Path | str:
    """Where a model comes from, decided at once and offline: an existing local directory (a Path) or a
    Hub id (the string). A name that reads as a local path — starting with '.', '/' or '~', with more
    than one '/', or inside a local directory as ``out/run`` is when ``out/`` exists — and is not a
    directory raises "no such directory" instead of being looked up on the Hub."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint directory that holds config.json")
    name = os.fspath(name_or_path)
    if reads_as_path(name_or_path):
        raise CheckpointError(f"no such directory: {name}{_nearest(path)}; pass an existing checkpoint directory "
                              f"(the one holding config.json), or a Hub id 'org/name'")
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(name)
        hub_id = name.count("/") == 1
    except HFValidationError:
        hub_id = False
    if not hub_id:
        raise CheckpointError(f"model {name!r} is not a local directory and not a Hub id of the form 'org/name'")
    return name


def reads_as_path(name_or_path: str | os.PathLike) -> bool:
    """Whether a name can only mean a local path (a Hub id is 'org/name', and 'org' is not a local folder)."""
    name = os.fspath(name_or_path)
    first = name.split("/")[0]
    return (not isinstance(name_or_path, str) or name.startswith((".", "/", "~")) or os.path.isabs(name)
            or name.count("/") > 1 or (os.sep != "/" and os.sep in name) or (bool(first) and Path(first).is_dir()))


def _nearest(path: Path) -> str:
    """' (DIR holds: a, b, ...)' for the deepest existing folder above ``path``, unless it is the working
    directory, the home directory or the root (too broad to help)."""
    parent = next((p for p in path.parents if p.is_dir()), None)
    if parent is None or parent.resolve() in (Path.cwd(), Path.home()) or parent.resolve().parent == parent.resolve():
        return ""
    entries = sorted(p.name for p in parent.iterdir())
    more = f", ... ({len(entries)} in all)" if len(entries) > 6 else ""
    return f" ({parent} holds: {', '.join(entries[:6])}{more})" if entries else f" ({parent} is empty)"


def resolve_checkpoint(name_or_path: str | os.PathLike, revision: str | None = None,
                       patterns: list[str] | None = None) -> Path:
    """A local directory as is, otherwise a Hub id downloaded (or read from the HF cache); ``patterns``
    limits the download (e.g. ``["config.json"]`` to inspect a model without its weights). A missing
    local path fails at once (:func:`checkpoint_source`)."""
    source = checkpoint_source(name_or_path)
    if isinstance(source, Path):
        return source
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(source, revision=revision, allow_patterns=patterns or HUB_PATTERNS))
    except Exception as e:  # offline, missing repo, gated repo: all reported the same way
        raise CheckpointError(f"could not fetch {source!r} from the Hugging Face Hub ({type(e).__name__}: {e}); "
                              f"check the id and your network, or pass a local directory") from e


def read_config(path: Path) -> dict:
    file = path / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path} has no config.json; is this a model checkpoint directory?")
    try:
        cfg = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    return cfg


MODEL_FILES = ("config.json", "adapter_config.json")  # a full model's or a LoRA adapter's


def model_dir(path: str | os.PathLike) -> Path:
    """Where the model or LoRA adapter of a training checkpoint (or of a run's ``output_dir``) lies: the folder
    itself, or for a checkpoint written before the policy moved to the root, its ``model/`` subfolder."""
    path = Path(path)
    if not any((path / f).is_file() for f in MODEL_FILES) and any((path / "model" / f).is_file() for f in MODEL_FILES):
        return path / "model"
    return path


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint, single-file or sharded."""
    if (path / INDEX).is_file():
        try:
            weight_map = json.loads((path / INDEX).read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{path / INDEX} is not a safetensors index (no 'weight_map')") from e
        files = [path / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{path / INDEX} lists shards that are missing: {missing[:5]}")
        return files
    if (path / WEIGHTS).is_file():
        return [path / WEIGHTS]
    present = sorted(p.name for p in path.iterdir())[:10]
    raise CheckpointError(f"no safetensors weights in {path} (expected {WEIGHTS} or {INDEX}; found {present}); "
                          f"convert .bin checkpoints with `safetensors` first")


def _names(names) -> str:
    names = sorted(names)
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(names[:5]) + more


def read_state_dict(path: Path, dtype: torch.dtype | None = None, device: torch.device | str = "cpu") -> dict:
    """All tensors of a checkpoint's safetensors (single-file or sharded), floating ones cast to ``dtype``; a
    progress bar over the shards on a terminal."""
    from tqdm.auto import tqdm
    state: dict[str, torch.Tensor] = {}
    files = weight_files(Path(path))
    for file in tqdm(files, desc="loading weights", unit="shard", disable=True if len(files) < 2 else None):
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            for key in f.keys():
                t = f.get_tensor(key)
                state[key] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return state


def load_weights(model: BidirectionalLM, path: Path, dtype: torch.dtype, device: torch.device) -> None:
    """Fill a meta-device model from the checkpoint's safetensors, checking names and shapes."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state = read_state_dict(path, dtype, device)
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    if missing or unexpected:
        parts = [f"missing {len(missing)}: {_names(missing)}" if missing else "",
                 f"unexpected {len(unexpected)}: {_names(unexpected)}" if unexpected else ""]
        raise CheckpointError(f"weights in {path} do not match the {model.family} architecture from its "
                              f"config.json ({'; '.join(p for p in parts if p)})")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(s)}" for k, s in expected.items() if state[k].shape != s]
    if wrong:
        raise CheckpointError(f"weights in {path} have shapes that disagree with config.json: {'; '.join(wrong[:5])}")
    model.load_state_dict(state, strict=True, assign=True)


def save_checkpoint(model: nn.Module, out_dir: str | os.PathLike, max_shard_size: int | str = MAX_SHARD_SIZE) -> Path:
    """Write config.json + safetensors (``model.safetensors``, or shards and their index) with transformers'
    ``save_pretrained``: the family's published format, loadable without remote code. A remote-code model
    saves its inner transformers model (with its code files)."""
    from transformers.modeling_utils import PreTrainedModel
    inner = getattr(model, "inner", model)
    if not isinstance(inner, PreTrainedModel):
        raise TypeError(f"cannot save a {type(model).__name__}: not a transformers PreTrainedModel")
    from transformers.utils import logging as hf_logging
    out = Path(out_dir)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every training checkpoint
    try:
        inner.save_pretrained(str(out), max_shard_size=max_shard_size)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return out
