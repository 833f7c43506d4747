"""4-bit (QLoRA) base weights for the native models, through bitsandbytes.

Every linear layer but the output head becomes a ``bitsandbytes.nn.Linear4bit`` (NF4 with double
quantisation, QLoRA's defaults), computing in the model's dtype; embeddings, norms and the head stay
in that dtype (the head is multiplied by its weight directly, as in transformers' QLoRA, which skips
``lm_head``). Quantisation happens when a layer's weight moves to the GPU, one layer at a time, so the
GPU never holds the unquantised model. bitsandbytes is optional: only this path imports it.
"""
from __future__ import annotations

import torch
from torch import nn


def bitsandbytes_problem() -> str | None:
    """Why 4-bit loading cannot run here (None when it can)."""
    if not torch.cuda.is_available():
        return "4-bit loading needs a CUDA GPU and none is visible"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        return f"4-bit loading needs bitsandbytes ({e}); install it with `pip install bitsandbytes`"
    return None


def quantize_linears_4bit(model: nn.Module, device: torch.device, skip: list[str], compute_dtype: torch.dtype,
                          quant_type: str = "nf4", double_quant: bool = True) -> list[str]:
    """Replace the linear layers of ``model`` (on the CPU) not named in ``skip`` by 4-bit ones on
    ``device``; returns the replaced names. The rest of the model is left where it is."""
    import bitsandbytes as bnb
    replaced = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            if type(child) is not nn.Linear or full in skip:
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute_dtype, compress_statistics=double_quant,
                                      quant_type=quant_type, device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False,
                                             compress_statistics=double_quant, quant_type=quant_type)
            if child.bias is not None:
                layer.bias = nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, layer.to(device))  # quantises here
            replaced.append(full)
    return replaced
