"""Model families: what differs between LLaDA, Dream and other dLLMs, in one registry.

A :class:`Family` says how to build the native model (a transformers ``PreTrainedModel``) from config.json,
whether logits are shifted (Dream predicts position i from output i-1), which linear layers LoRA should wrap,
the chat template to fall back on when a tokenizer ships none, and the unmasking schedule its reference
sampler uses.
New families register with :func:`register_family` without touching callers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .models.base import ArchConfig, BidirectionalLM
from .models.dream import DreamModel, dream_arch
from .models.llada import LLaDAModelLM, llada_arch

# LLaDA-8B-Instruct's published chat template (tokenizer_config.json).
LLADA_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
)
# Dream-v0-Instruct's template without its tool-calling branches (Qwen2 ChatML).
DREAM_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + "
    "'<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif %}{%- for message in messages %}{%- if (message.role == 'user') or (message.role == "
    "'system' and not loop.first) or (message.role == 'assistant') %}{{- '<|im_start|>' + message.role "
    "+ '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json "model_type" values, compared case-insensitively
    arch: Callable[[dict, str], ArchConfig]
    model_class: type[BidirectionalLM]
    logit_shift: bool
    lora_target_modules: tuple[str, ...]
    chat_template: str | None
    # What the family's published sampler does when the caller does not say: schedule ("llada" or
    # "dream"), confidence ("remasking") and top_k (0 = off).
    sampler_defaults: dict = field(default_factory=dict)
    eot_token: str | None = None  # end-of-turn token, treated like EOS by EOS-handling sampler options

    def build(self, hf_config: dict, source: str = "config.json") -> BidirectionalLM:
        """The native model for a config.json dict (weights initialised; build under ``torch.device("meta")``
        to fill them from a checkpoint). The config is checked first, so errors name ``source``."""
        self.arch(hf_config, source)
        return self.model_class(self.model_class.config_class.from_dict(dict(hf_config)))


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def family_for(model_type: str | None) -> Family | None:
    wanted = (model_type or "").lower()
    return next((f for f in FAMILIES.values() if wanted in f.model_types), None)


def supported_model_types() -> list[str]:
    return sorted(t for f in FAMILIES.values() for t in f.model_types)


register_family(Family(
    name="llada", model_types=("llada",), arch=llada_arch, model_class=LLaDAModelLM, logit_shift=False,
    lora_target_modules=("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"),
    chat_template=LLADA_CHAT_TEMPLATE,
    sampler_defaults={"schedule": "llada", "remasking": "low_confidence", "top_k": 0}, eot_token="<|eot_id|>"))

register_family(Family(
    name="dream", model_types=("dream",), arch=dream_arch, model_class=DreamModel, logit_shift=True,
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    chat_template=DREAM_CHAT_TEMPLATE,
    # Dream's generation code inherits top_k=50 from transformers' GenerationConfig (before v5), so
    # even its greedy decoding ranks confidences on top-50-renormalised probabilities.
    sampler_defaults={"schedule": "dream", "remasking": "top1_prob", "top_k": 50}, eot_token="<|im_end|>"))


def remote_family(hf_config: dict) -> Family:
    """A family for a model loaded through its own remote code; its conventions come from config.json
    (``logit_shift``, ``lora_target_modules`` if the authors provide them), else plain defaults."""
    return Family(name=f"remote:{hf_config.get('model_type')}", model_types=(), arch=None, model_class=None,
                  logit_shift=bool(hf_config.get("logit_shift", False)),
                  lora_target_modules=tuple(hf_config.get("lora_target_modules", ())),
                  chat_template=None,
                  sampler_defaults={"schedule": "llada", "remasking": "low_confidence", "top_k": 0})
