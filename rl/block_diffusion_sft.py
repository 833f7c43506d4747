"""DiffusionGemma SFT: a denoising objective for its uniform-noise block diffusion. transformers defines no training
loss for ``DiffusionGemmaForBlockDiffusion`` (its forward returns logits only); this is the one unmask implements.

Teacher forcing, canvas by canvas, as the sampler (``rollouts/diffusion_gemma.py``) builds its context: the encoder
caches the prompt and the clean earlier canvases; each canvas y of L completion tokens (the completion cut into
canvases, EOS then padding after its end, as the sampler pads) is noised as the sampler's canvases are — each
position replaced by a uniform random token with probability t ~ U(eps, 1), one t per row and canvas — and the
decoder predicts every position (it cannot tell noise from signal, and the sampler re-decides every position):

    loss = mean over rows and canvases of (1/L) Σ_i CE(f_θ(x_t, s), y_i)

Self-conditioning is trained as in Chen et al. 2022 ("Analog Bits"): with probability ``self_conditioning`` (1/2)
per row the decoder first runs without it, with no gradient, and its logits are fed back as s; otherwise s is absent.
(The sampler feeds back the previous step's temperature-scaled logits; this first pass's are unscaled.)

:class:`BlockDiffusionSftTrainer` is ``unmask sft`` for DiffusionGemma checkpoints (and from scratch, ``sft.init_model``
with ``model_type: diffusion_gemma``), ``SftTrainer`` with this loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unmask.rewards.registry import suggest
from unmask.rl.training.block_diffusion_policy import (
    MODEL_TYPE,
    build_block_diffusion_policy,
    check_block_diffusion_model,
    is_block_diffusion,
)
from unmask.rollouts.adapter import left_pad
from unmask.rollouts.diffusion_gemma import _Canvases, tiny_diffusion_gemma
from unmask.rollouts.diffusion_gemma_engine import BlockDiffusionAdapter, BlockDiffusionEngine

from .sft import SftTrainer

EPS = 1e-3
EOS = 501  # a from-scratch model's EOS and padding id (the byte tokenizer's, as the demo's LLaDA)


def canvas_targets(completions: list[list[int]], canvas_length: int, canvases: int, eos_id: int,
                   pad_id: int) -> torch.Tensor:
    """[B, canvases · L] each completion cut to fit, ended by EOS (unless cut) and padded with ``pad_id``."""
    width = canvases * canvas_length
    rows = [(c + [eos_id])[:width] for c in completions]
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)


def block_diffusion_sft_loss(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, targets: torch.Tensor,
                             generator: torch.Generator, eps: float = EPS,
                             self_conditioning: float = 0.5) -> torch.Tensor:
    """The loss of the module docstring for left-padded prompts [B, P] and canvas targets [B, C · L]; the noise,
    noise levels and self-conditioning coins come from ``generator`` (CPU)."""
    length = model.config.canvas_length
    vocab = model.config.get_text_config().vocab_size
    b, canvases = targets.shape[0], targets.shape[1] // length
    if targets.shape[1] % length:
        raise ValueError(f"targets of {targets.shape[1]} tokens are not whole canvases of {length}; use "
                         f"canvas_targets to cut and pad them")
    state = _Canvases(model, prompt_ids, prompt_mask.bool(), length)
    mask = state.encode(prompt_ids)
    total = 0.0
    for c in range(canvases):
        clean = targets[:, c * length:(c + 1) * length].to(prompt_ids.device)
        t = eps + (1 - eps) * torch.rand(b, 1, generator=generator)
        noise = torch.randint(0, vocab, clean.shape, generator=generator)
        noised = torch.where(torch.rand(clean.shape, generator=generator) < t, noise, clean.cpu()).to(clean.device)
        use_sc = (torch.rand(b, generator=generator) < self_conditioning).to(clean.device)
        sc = None
        if bool(use_sc.any()):
            with torch.no_grad():
                sc = state.decode(noised, None, mask)
        logits = state.decode(noised, sc, mask, use_sc if sc is not None else None)  # a False row: no signal
        total = total + F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), clean.reshape(-1))
        if c + 1 < canvases:
            state.advance()
            mask = state.encode(clean)
    return total / canvases


def is_block_diffusion_sft(cfg) -> bool:
    """Whether an SFT recipe trains a DiffusionGemma (``sft.init_model``'s model_type, else the checkpoint's)."""
    init = cfg.sft.init_model
    if init is not None:
        return init.get("model_type") == MODEL_TYPE
    return is_block_diffusion(cfg.model)


def random_block_diffusion(init: dict, seed: int) -> BlockDiffusionAdapter:
    """A random DiffusionGemma of ``init``'s shape (``canvas_length`` and text-config sizes; 512 ids: the byte
    tokenizer's bytes, mask 500 (unused), EOS and padding 501) with the byte tokenizer's "raw" chat template."""
    from transformers import DiffusionGemmaTextConfig

    from unmask.rollouts.tokenizer import RAW_CHAT_TEMPLATE, byte_tokenizer
    sizes = {k: v for k, v in init.items() if k != "model_type"}
    valid = ["canvas_length", *sorted(DiffusionGemmaTextConfig().to_dict())]
    for key in sizes:
        if key not in valid or key in ("vocab_size", "eos_token_id", "pad_token_id"):
            close = "".join(f" (did you mean {c!r}?)" for c in suggest(key, valid))
            raise ValueError(f"sft.init_model has an unknown key {key!r}{close}; a random DiffusionGemma takes "
                             f"canvas_length and its text config's sizes (hidden_size, num_hidden_layers, ...)")
    model = tiny_diffusion_gemma(seed, vocab_size=512, eos_token_id=EOS, pad_token_id=EOS, **sizes)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = EOS, EOS
    return BlockDiffusionAdapter(model, byte_tokenizer(EOS - 1, EOS, chat_template=RAW_CHAT_TEMPLATE))


class BlockDiffusionSftTrainer(SftTrainer):
    """``unmask sft`` for DiffusionGemma: :func:`block_diffusion_sft_loss` on the recipe's rows, with ``sft``'s
    completion column, ``completion_length`` (rounded up to whole canvases) and ``mask_eps`` (the smallest noise
    level); self-conditioning on half the rows. Everything else — data, LoRA (tied adapters), checkpoints, exact
    resume, held-out loss — is ``SftTrainer``'s."""

    build_policy = staticmethod(build_block_diffusion_policy)

    @staticmethod
    def random_init(cfg) -> BlockDiffusionAdapter:
        return random_block_diffusion(cfg.sft.init_model, cfg.training.seed)

    @staticmethod
    def check_model(cfg) -> list[str]:
        if cfg.model.gradient_checkpointing:  # a recomputed canvas would see the encoder cache of the later ones
            raise ValueError("model.gradient_checkpointing is not available for DiffusionGemma SFT (the encoder "
                             "cache grows canvas by canvas during the loss); set it to false (RL supports it)")
        return check_block_diffusion_model(cfg.model, cfg.training)

    def batch_loss(self, rows: list[dict], generator: torch.Generator) -> tuple[torch.Tensor, int, dict]:
        prompt_ids, prompt_mask, targets = self._tensors(rows)
        loss = block_diffusion_sft_loss(self.adapter.model, prompt_ids, prompt_mask, targets, generator,
                                        eps=self.cfg.sft.mask_eps)
        return loss, targets.numel(), {}

    def _tensors(self, rows: list[dict]):
        """Prompts rendered by the template and the chat template, left-padded (the last ``max_prompt_length``
        tokens when set), and each completion cut into canvases (:func:`canvas_targets`)."""
        s, adapter = self.cfg.sft, self.adapter
        engine = BlockDiffusionEngine(adapter.model, adapter.tokenizer)
        ids = [engine.encode(self.template.render(r, self.cfg.data.system_prompt)) for r in rows]
        prompt_ids, prompt_mask = left_pad(ids, engine.config.pad_token_id, adapter.device)
        if self.cfg.data.max_prompt_length is not None:
            prompt_ids = prompt_ids[:, -self.cfg.data.max_prompt_length:]
            prompt_mask = prompt_mask[:, -self.cfg.data.max_prompt_length:]
        length = adapter.model.config.canvas_length
        completions = [adapter.tokenizer(str(r[s.completion_column]), add_special_tokens=False)["input_ids"]
                       for r in rows]
        targets = canvas_targets(completions, length, math.ceil(s.completion_length / length), adapter.eos_id,
                                 engine.config.pad_token_id)
        return prompt_ids, prompt_mask, targets.to(adapter.device)

    def _generator(self, *key: int) -> torch.Generator:
        return torch.Generator().manual_seed(hash((self.cfg.training.seed, *key)) % 2 ** 63)  # the loss draws on CPU
