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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from unmask.rollouts.diffusion_gemma import _Canvases

EPS = 1e-3


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
