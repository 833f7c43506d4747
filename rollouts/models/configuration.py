"""transformers configuration classes of the native families: ``LLaDAConfig`` and ``DreamConfig``.

A config holds the published ``config.json`` as it is: every key becomes an attribute and is written back
when the model is saved, so the published modelling code (remote code) still finds the fields it reads.
Nothing is given a default here; the architecture readers (``llada_arch``, ``dream_arch``) name what is
missing. Two keys are adjusted:

- ``auto_map`` entries that point at modelling files (``modeling_llada.LLaDAModelLM``) are written only
  when that file is saved next to config.json; a native save never writes them, so a saved checkpoint
  loads without remote code and never names a file that is not there. References into another Hub repo
  (``org/name--module.Class``) are kept.
- ``attn_implementation`` (Dream's published config asks for ``flash_attention_2``) is dropped: the native
  models always compute attention with ``torch.nn.functional.scaled_dot_product_attention``.

Only ``transformers.configuration_utils`` is imported, so registering these with ``AutoConfig`` is cheap.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from transformers.configuration_utils import PretrainedConfig


def auto_map_reachable(reference, directory: Path) -> bool:
    """Whether an ``auto_map`` value can be resolved from ``directory``: a ``module.Class`` whose
    ``module.py`` is there, a reference into another repo (``org/name--module.Class``), or a list of them
    (tokenizers: ``[slow, fast]``, None for a missing one)."""
    if reference is None:
        return True
    if isinstance(reference, (list, tuple)):
        return all(auto_map_reachable(r, directory) for r in reference)
    if not isinstance(reference, str) or "--" in reference:
        return True
    module = reference.rsplit(".", 1)[0]
    return (directory / (module.replace(".", "/") + ".py")).is_file()


class NativeConfig(PretrainedConfig):
    """What the native families' configs share: pass-through of every key, and saving that never points
    at modelling files which are not saved."""

    def __init__(self, **kwargs):
        kwargs.pop("attn_implementation", None)
        super().__init__(**kwargs)

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        text = self.to_json_string(use_diff=use_diff)
        data = json.loads(text)
        auto_map = data.get("auto_map")
        if isinstance(auto_map, dict):
            directory = Path(json_file_path).parent
            kept = {k: v for k, v in auto_map.items() if auto_map_reachable(v, directory)}
            if kept != auto_map:
                if kept:
                    data["auto_map"] = kept
                else:
                    del data["auto_map"]
                text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        Path(json_file_path).write_text(text, encoding="utf-8")


class LLaDAConfig(NativeConfig):
    """LLaDA's ``config.json`` (``model_type: llada``; the keys of LLaDA-8B's ``configuration_llada.py``).
    ``hidden_size``, ``num_attention_heads`` and ``num_hidden_layers`` read ``d_model``, ``n_heads`` and
    ``n_layers``, as the published config's properties do."""

    model_type = "llada"
    attribute_map = {"hidden_size": "d_model", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}

    def __init__(self, **kwargs):
        # LLaDA says weight_tying; transformers reads tie_word_embeddings (and, in 4.x, defaults it to True,
        # which would tie the separate output head ff_out to the embedding)
        kwargs.setdefault("tie_word_embeddings", bool(kwargs.get("weight_tying", False)))
        super().__init__(**kwargs)


class DreamConfig(NativeConfig):
    """Dream's ``config.json`` (``model_type: Dream``, as published; the Qwen2 keys)."""

    model_type = "Dream"

    def __init__(self, **kwargs):
        kwargs.setdefault("tie_word_embeddings", False)
        if "rope_scaling" in kwargs and kwargs["rope_scaling"] is None:  # the published default; transformers 5
            del kwargs["rope_scaling"]  # warns about the key even when it is null
        super().__init__(**kwargs)
