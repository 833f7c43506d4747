"""The trainer's DiffusionGemma parts, as ``policy.py`` and the rollout engine are for LLaDA and Dream: the policy
(transformers' model with its tokenizer, LoRA with tied encoder/decoder adapters, the reference policy), its
rollout engines and its update. What a DiffusionGemma run does not support is refused before any weights load
(:func:`check_block_diffusion_recipe`).
"""
from __future__ import annotations

from contextlib import contextmanager

from unmask.rollouts.adapter import resolve_device
from unmask.rollouts.diffusion_gemma import BlockDiffusionConfig
from unmask.rollouts.diffusion_gemma_engine import (
    MODEL_TYPE,
    BlockDiffusionAdapter,
    BlockDiffusionEngine,
    is_block_diffusion_checkpoint,
    load_block_diffusion,
)
from unmask.rollouts.diffusion_gemma_lora import LORA_TARGETS, apply_lora, check_targets

from .block_diffusion_update import BlockDiffusionUpdate
from .policy import Policy, model_config, reference_policy

STEP_SELECTIONS = ("all", "every_k", "random")


def is_block_diffusion(model_cfg, model=None) -> bool:
    """Whether the recipe's model (or the model given in memory) is a DiffusionGemma (reads config.json only)."""
    if model is not None:
        return getattr(model.config, "model_type", None) == MODEL_TYPE
    return is_block_diffusion_checkpoint(model_cfg.name_or_path, model_cfg.revision)


def check_block_diffusion_recipe(cfg, model=None) -> list[str]:
    """Preflight of a DiffusionGemma RL recipe (no weights): what its trainer does not support, named with the fix;
    returns the LoRA targets (:func:`check_block_diffusion_model`)."""
    a = cfg.algorithm
    refuse({
        "algorithm.estimator": (a.estimator != "trajectory",
                                f"is {a.estimator!r}; DiffusionGemma is trained on the log-probabilities of each "
                                f"recorded step's accepted samples: use a trajectory method (algorithm.name: cj_grpo)"),
        "algorithm.step_selection": (a.step_selection not in STEP_SELECTIONS,
                                     f"is {a.step_selection!r}; use one of {STEP_SELECTIONS}"),
        "algorithm.advantage": (a.advantage == "mdpo_stepwise", "mdpo_stepwise needs masked-diffusion step "
                                                                "predictions; use group"),
        "algorithm.value_model": (a.value_model is not None, "is not available for DiffusionGemma; set it to null"),
        "algorithm.inpaint_column": (a.inpaint_column is not None, "(IGPO) is not available for DiffusionGemma; set "
                                                                   "it to null")})
    return check_block_diffusion_model(cfg.model, cfg.training, model)


def check_block_diffusion_model(model_cfg, training_cfg, model=None) -> list[str]:
    """Preflight of a DiffusionGemma model section (RL and SFT): DeepSpeed and 4-bit loading are refused; returns
    the LoRA targets, checked on the meta skeleton of the checkpoint's (or ``model``'s) config; [] without LoRA."""
    refuse({"training.deepspeed": (bool(training_cfg.deepspeed), "is not available for DiffusionGemma yet; train on "
                                                                 "one device (LoRA) and set it to null"),
            "model.load_in_4bit": (model_cfg.load_in_4bit, "is not available for DiffusionGemma; set it to false")})
    if not model_cfg.use_peft:
        return []
    if model is not None and hasattr(model, "peft_config"):
        raise ValueError("pass the DiffusionGemma model itself (not a PEFT model): the trainer adds LoRA with the "
                         "encoder's and decoder's adapters tied")
    from transformers import DiffusionGemmaConfig
    config = (model.config if model is not None
              else DiffusionGemmaConfig(**model_config(model_cfg.name_or_path, model_cfg.revision)))
    return check_targets(config, tuple(model_cfg.lora_target_modules or LORA_TARGETS))


def refuse(problems: dict[str, tuple[bool, str]]) -> None:
    for name, (bad, why) in problems.items():
        if bad:
            raise ValueError(f"{name} {why}")


def build_block_diffusion_policy(model_cfg, training_cfg, beta: float, targets: list[str], log=print,
                                 device: str | None = None, model=None, tokenizer=None) -> Policy:
    """Load the checkpoint (or take ``model`` with its ``tokenizer``), wrap it with LoRA when asked (one adapter for
    the tied encoder and decoder), and build its reference policy (if beta > 0)."""
    if model is None:
        model, tokenizer = load_block_diffusion(model_cfg.name_or_path, dtype=model_cfg.dtype,
                                                device=device or model_cfg.device, tokenizer=model_cfg.tokenizer,
                                                revision=model_cfg.revision)
    else:
        model.to(resolve_device(device or model_cfg.device))
    adapter = BlockDiffusionAdapter(model, tokenizer)
    peft_model = None
    if model_cfg.use_peft:
        peft_model = apply_lora(model, model_cfg.lora_r, model_cfg.lora_alpha, model_cfg.lora_dropout, targets)
        peft_model.peft_config["default"].base_model_name_or_path = str(model_cfg.name_or_path)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"LoRA r={model_cfg.lora_r} alpha={model_cfg.lora_alpha} on {', '.join(targets)} (encoder and decoder "
            f"tied); {trainable:,} trainable parameters")
    return Policy(adapter, peft_model, reference_policy(adapter, peft_model, beta, training_cfg))


def block_diffusion_parts(policy: Policy, cfg) -> tuple[BlockDiffusionEngine, BlockDiffusionEngine,
                                                        BlockDiffusionUpdate]:
    """The rollout engine, the evaluation engine (the same sampler: DiffusionGemma has no greedy mode, and a fixed
    seed makes evaluation deterministic) and the update."""
    adapter = policy.adapter
    sampler = BlockDiffusionConfig(**cfg.rollout.block_diffusion_settings())
    engine = BlockDiffusionEngine(adapter.model, adapter.tokenizer, sampler)
    eval_engine = BlockDiffusionEngine(adapter.model, adapter.tokenizer, sampler)
    reference = None if policy.reference is None else (lambda: reference_model(policy.reference))
    update = BlockDiffusionUpdate(adapter.model, cfg.algorithm, reference=reference,
                                  micro_batch_size=cfg.training.per_device_train_batch_size,
                                  checkpoint=cfg.model.gradient_checkpointing)
    return engine, eval_engine, update


@contextmanager
def reference_model(reference):
    """The reference policy's model (the update's ``reference`` context)."""
    with reference.use() as adapter:
        yield adapter.model
