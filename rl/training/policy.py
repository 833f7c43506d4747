"""The trainable policy: the model from the recipe, LoRA through PEFT, its reference policy, and
saving/restoring its weights.

LoRA targets come from the recipe or the model family (LLaDA: ``q_proj k_proj v_proj attn_out ff_proj
up_proj ff_out``). Every target must match at least one linear layer — checked on a weightless
(meta-device) copy of the architecture before any weights are loaded, because PEFT silently skips a
name that matches nothing (d1's recipe wraps only 4 of LLaDA's 7 linear types that way).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from unmask.rollouts.adapter import ModelAdapter, load_model, resolve_device, wrap_model
from unmask.rollouts.families import family_for
from unmask.rollouts.models.checkpoint import read_config, resolve_checkpoint

from .reference import AdapterDisabledReference, FrozenCopyReference, ReferencePolicy


def model_config(name_or_path: str, revision: str | None = None) -> dict:
    """config.json of a local checkpoint or a Hub id (only that file is fetched)."""
    return read_config(resolve_checkpoint(name_or_path, revision, patterns=["config.json"]))


def output_head_names(model: torch.nn.Module) -> list[str]:
    """The output head's linear layer(s), which LoRA never wraps (LLaDA names the head ``ff_out`` like every
    block's down-projection, so the family's ``ff_out`` target would otherwise catch it too)."""
    return model.output_head_names() if hasattr(model, "output_head_names") else []


def linear_names(model: torch.nn.Module) -> list[str]:
    """Linear layers LoRA may wrap (all but the output head)."""
    heads = set(output_head_names(model))
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name not in heads]


def lora_matches(names: list[str], targets: list[str]) -> dict[str, int]:
    """How many linear layers each target name matches (PEFT's rule: the module name ends with it)."""
    return {t: sum(n == t or n.endswith("." + t) for n in names) for t in targets}


def is_peft_model(model: torch.nn.Module | None) -> bool:
    return model is not None and hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def check_lora_targets(model_cfg, model: torch.nn.Module | None = None) -> list[str]:
    """Preflight of a recipe's model without loading weights: its config.json can be read (a missing local
    path fails now), and under LoRA (``use_peft``) its LoRA targets, verified against its architecture;
    [] without LoRA. A ``model`` given in memory is checked itself (a PEFT model: its adapter's targets)."""
    if model is None:
        cfg = model_config(model_cfg.name_or_path, model_cfg.revision)
    if not model_cfg.use_peft:
        return []
    if is_peft_model(model):
        return sorted(model.peft_config["default"].target_modules)
    family = family_for(cfg.get("model_type") if model is None else model.config.model_type)
    if family is None:  # remote-code models: their layers are only known once loaded
        return list(model_cfg.lora_target_modules or [])
    targets = list(model_cfg.lora_target_modules or family.lora_target_modules)
    if model is None:
        with torch.device("meta"):
            model = family.build(cfg, model_cfg.name_or_path)
    names = linear_names(model)
    unmatched = [t for t, n in lora_matches(names, targets).items() if n == 0]
    if unmatched:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ValueError(f"model.lora_target_modules {unmatched} match no linear layer of {model_cfg.name_or_path} "
                         f"({family.name}); its linear layers are named {leaves} — use those (or null for the "
                         f"family's defaults {list(family.lora_target_modules)})")
    return targets


def check_4bit(model_cfg, training_cfg) -> None:
    """Preflight of ``model.load_in_4bit`` (QLoRA): a CUDA GPU, bitsandbytes, no CPU placement, no DeepSpeed."""
    if not model_cfg.load_in_4bit:
        return
    from unmask.rollouts.models.quantize import bitsandbytes_problem
    problem = bitsandbytes_problem()
    if problem is None and model_cfg.device == "cpu":
        problem = "the recipe puts the model on the CPU (model.device: cpu)"
    if problem is None and training_cfg.deepspeed:
        problem = "DeepSpeed ZeRO shards full-precision weights and cannot hold bitsandbytes 4-bit layers"
    if problem is not None:
        raise ValueError(f"model.load_in_4bit: {problem}. Set model.load_in_4bit: false (bf16 LoRA of an 8B "
                         f"model fits 24 GB: see recipes/llada-gsm8k-lora-24gb.yaml), or run on one CUDA GPU "
                         f"with bitsandbytes installed and without training.deepspeed")


@dataclass
class Policy:
    adapter: ModelAdapter
    peft_model: torch.nn.Module | None   # the PEFT wrapper when training LoRA
    reference: ReferencePolicy | None

    @property
    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.adapter.model.parameters() if p.requires_grad]

    def save(self, out_dir: Path) -> None:
        if self.peft_model is not None:
            self.peft_model.save_pretrained(str(out_dir))
        else:
            self.adapter.save_pretrained(out_dir)

    def reference_state(self) -> dict[str, torch.Tensor] | None:
        if isinstance(self.reference, FrozenCopyReference):
            state, seen = {}, set()
            for k, v in self.reference.adapter.model.state_dict().items():
                if v.data_ptr() not in seen:  # a tied weight (DiffusionGemma's encoder = decoder) once
                    seen.add(v.data_ptr())
                    state[k] = v.detach().cpu()
            return state
        return None

    def load_reference(self, checkpoint: Path) -> None:
        from safetensors.torch import load_file
        if (checkpoint / "reference.safetensors").is_file() and isinstance(self.reference, FrozenCopyReference):
            self.reference.adapter.load_state_dict(load_file(str(checkpoint / "reference.safetensors")))


def build_policy(model_cfg, training_cfg, beta: float, targets: list[str], log=print,
                 device: str | None = None, model: torch.nn.Module | None = None, tokenizer=None) -> Policy:
    """Load the model (or take ``model``, a native model or a PEFT model around one, moved to ``device``),
    wrap it with LoRA when asked, and build its reference policy (if beta > 0)."""
    peft_model = model if is_peft_model(model) else None
    if model is None:
        adapter = load_model(model_cfg.name_or_path, dtype=model_cfg.dtype, device=device or model_cfg.device,
                             tokenizer=model_cfg.tokenizer, revision=model_cfg.revision,
                             trust_remote_code=model_cfg.trust_remote_code, load_in_4bit=model_cfg.load_in_4bit)
    else:
        adapter = wrap_model(model.get_base_model() if peft_model is not None else model, tokenizer)
        adapter.model.to(resolve_device(device or model_cfg.device))
    if tokenizer is not None:
        adapter.tokenizer = tokenizer
    adapter.model.gradient_checkpointing = model_cfg.gradient_checkpointing
    if model_cfg.use_peft and peft_model is None:
        from peft import LoraConfig, get_peft_model
        counts = lora_matches(linear_names(adapter.model), targets)
        peft_model = get_peft_model(adapter.model, LoraConfig(
            r=model_cfg.lora_r, lora_alpha=model_cfg.lora_alpha, lora_dropout=model_cfg.lora_dropout,
            target_modules=targets, exclude_modules=output_head_names(adapter.model) or None))
        peft_model.peft_config["default"].base_model_name_or_path = str(model_cfg.name_or_path)
        trainable = sum(p.numel() for p in adapter.model.parameters() if p.requires_grad)
        log(f"LoRA r={model_cfg.lora_r} alpha={model_cfg.lora_alpha}: {sum(counts.values())} linear layers wrapped "
            f"({', '.join(f'{t} x{n}' for t, n in counts.items())}); {trainable:,} trainable parameters")
    return Policy(adapter, peft_model, reference_policy(adapter, peft_model, beta, training_cfg))


def reference_policy(adapter, peft_model, beta: float, training_cfg) -> ReferencePolicy | None:
    """The reference for a KL term (beta > 0): the LoRA model with its adapters off, else a frozen copy re-synced
    every ``ref_model_sync_steps`` (``sync_ref_model``); None without one."""
    if beta <= 0:
        return None
    if peft_model is not None:
        return AdapterDisabledReference(adapter, peft_model)
    return FrozenCopyReference(adapter, sync_steps=training_cfg.ref_model_sync_steps
                               if training_cfg.sync_ref_model else 0)
