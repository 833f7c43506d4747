"""LoRA for DiffusionGemma through PEFT, with its encoder and decoder adapters tied.

DiffusionGemma's encoder (the prompt and the finished canvases) and decoder (the canvas being refined) are separate
modules that share one set of text-layer weights (transformers ties them). PEFT wraps modules, so on its own it gives
the encoder and the decoder separate adapters and the two halves drift apart in training. :func:`apply_lora` wraps
both and makes the decoder's ``lora_A``/``lora_B`` the encoder's own modules: one adapter, as one weight, trained,
saved and loaded once. Merging needs the same care — both halves' base weight is one tensor, so PEFT's
``merge_and_unload`` would add the update twice — hence :func:`merge_lora`.

Targets are the text layers' attention and dense-MLP projections (transformers' names); the vision tower and the MoE
experts (3-D parameter tensors, not linear layers) are left alone. They are checked on a weightless (meta-device) copy
of the architecture before any weights load, as for the other families.
"""
from __future__ import annotations

import re

import torch

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ENCODER, DECODER = "model.encoder.language_model.layers.", "model.decoder.layers."


def lora_pattern(targets=LORA_TARGETS) -> str:
    """PEFT's ``target_modules`` regex: ``targets`` in the text layers of the encoder and the decoder."""
    names = "|".join(re.escape(t) for t in targets)
    return rf"model\.(encoder\.language_model|decoder)\.layers\.\d+\.(self_attn|mlp)\.({names})"


def check_targets(config, targets=LORA_TARGETS) -> list[str]:
    """The targets, each verified to match a linear layer of the text layers of ``config``'s architecture (built on
    the meta device: no weights)."""
    from transformers import DiffusionGemmaForBlockDiffusion
    with torch.device("meta"):
        model = DiffusionGemmaForBlockDiffusion(config)
    pattern = re.compile(lora_pattern(targets))
    found = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and pattern.fullmatch(n)}
    missing = [t for t in targets if t not in found]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                         and (n.startswith(ENCODER) or n.startswith(DECODER))})
        raise ValueError(f"LoRA targets {missing} match no linear layer of DiffusionGemma's text layers; they are "
                         f"named {leaves}")
    return list(targets)


def apply_lora(model, r: int, alpha: int, dropout: float = 0.0, targets=LORA_TARGETS):
    """``model`` wrapped by PEFT with LoRA on ``targets``, the decoder's adapters being the encoder's (returns the
    PEFT model; ``get_base_model()`` is ``model``, now holding the adapters)."""
    from peft import LoraConfig, get_peft_model
    check_targets(model.config, targets)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                  target_modules=lora_pattern(targets)))
    tie_adapters(peft_model)
    return peft_model


def _pairs(peft_model):
    modules = dict(peft_model.get_base_model().named_modules())
    for name, module in modules.items():
        if name.startswith(DECODER) and hasattr(module, "lora_A"):
            yield module, modules[ENCODER + name[len(DECODER):]]


def tie_adapters(peft_model) -> int:
    """Make every decoder LoRA layer use its encoder twin's adapter modules; returns how many were tied."""
    tied = 0
    for decoder, encoder in _pairs(peft_model):
        decoder.lora_A, decoder.lora_B = encoder.lora_A, encoder.lora_B
        decoder.lora_dropout = encoder.lora_dropout
        tied += 1
    return tied


@torch.no_grad()
def merge_lora(peft_model):
    """The base model with the adapters merged into the shared weights once (the decoder's scaling is zeroed first:
    its update is the encoder's, already merged into the same tensor)."""
    for decoder, _ in _pairs(peft_model):
        decoder.scaling = {k: 0.0 for k in decoder.scaling}
    return peft_model.merge_and_unload()
