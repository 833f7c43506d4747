"""DiffusionGemma rollouts with a replayable record (transformers' ``DiffusionGemmaForBlockDiffusion``).

DiffusionGemma is block diffusion with uniform noise, not masks: the prompt and every finished canvas are encoded
causally into a KV cache; a bidirectional decoder refines the next canvas of ``canvas_length`` tokens. A canvas
starts as uniform random tokens; at step k (counting down from N = ``max_denoising_steps``) the decoder sees the
canvas x_k and the previous step's logits (self-conditioning), and with T_k = t_min + (t_max − t_min)·k/N:

    y_k ~ softmax(logits / T_k)                              one sample per position
    A_k = the lowest-entropy positions whose summed entropy, minus the largest of them, is ≤ entropy_bound
    x_{k−1} = where(A_k, y_k, fresh uniform noise)           nothing is frozen: every step re-decides every position

A row stops refining when its argmax has been stable for ``stability_threshold`` steps and its mean entropy is below
``confidence_threshold``; the canvas kept is the argmax of its last step (not a sample). Then EOS ends the row
(tokens after it become padding) and the canvas joins the encoder's cache.

:func:`sample` runs exactly that loop — the same random draws in the same order as ``model.generate`` (one randint
per canvas, one multinomial and one randint per step), so the same seed gives the same tokens — and records, per
canvas and step, the decoder input x_k, the samples y_k, the accepted set A_k and whether the row was still refining:
O(canvases × steps × canvas_length) per row. The self-conditioning logits (B × L × V per step) are not stored: they are
a function of the recorded inputs under the rollout's weights, and :func:`replay_logits` recomputes them.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
import torch.utils.checkpoint


@dataclass
class BlockDiffusionConfig:
    """Sampler settings; each None takes the model's ``generation_config`` value, then transformers' default."""

    max_new_tokens: int = 256
    max_denoising_steps: int | None = None      # N (48)
    entropy_bound: float | None = None          # EntropyBoundSampler (0.1)
    t_min: float | None = None                  # 0.4
    t_max: float | None = None                  # 0.8
    stability_threshold: int | None = None      # steps the argmax must repeat (1)
    confidence_threshold: float | None = None   # mean entropy below which a stable canvas stops (0.005)
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    DEFAULTS = {"max_denoising_steps": 48, "entropy_bound": 0.1, "t_min": 0.4, "t_max": 0.8,
                "stability_threshold": 1, "confidence_threshold": 0.005}

    def resolve(self, model) -> "BlockDiffusionConfig":
        gen = getattr(model, "generation_config", None)
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and gen is not None:
                value = getattr(gen, f.name, None)
                if f.name == "entropy_bound" and getattr(gen, "sampler_config", None) is not None:
                    value = gen.sampler_config.entropy_bound
            values[f.name] = self.DEFAULTS.get(f.name) if value is None else value
        eos = values["eos_token_id"]
        values["eos_token_id"] = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        return BlockDiffusionConfig(**values)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class BlockDiffusionRecord:
    prompt_ids: torch.Tensor       # [B, P] left-padded
    prompt_mask: torch.Tensor      # [B, P] bool
    sequences: torch.Tensor        # [B, P + C·L] prompt then the finished canvases (padding after EOS)
    inputs: torch.Tensor           # [B, C, N, L] int32: decoder input x_k of each step (−1 after the canvas stopped)
    samples: torch.Tensor          # [B, C, N, L] int32: y_k
    accepted: torch.Tensor         # [B, C, N, L] bool: A_k
    refining: torch.Tensor         # [B, C, N] bool: the row had not stopped before this step (its step counts)
    temperatures: torch.Tensor     # [N] float32: T_k of step index j (k = N − j)
    config: dict = field(default_factory=dict)
    nfe: int = 0                   # decoder forward passes

    @property
    def canvases(self) -> int:
        return self.inputs.shape[1]

    def rows(self, index: torch.Tensor) -> "BlockDiffusionRecord":
        """The record of the rows ``index`` (a micro-batch; the prompts keep their padded width)."""
        per_row = {f.name: getattr(self, f.name)[index.to(self.inputs.device)] for f in fields(self)
                   if f.name not in ("temperatures", "config", "nfe")}
        return BlockDiffusionRecord(**per_row, temperatures=self.temperatures, config=self.config, nfe=self.nfe)


def temperatures(cfg: BlockDiffusionConfig) -> torch.Tensor:
    """[N] T of each step in order (k = N, N − 1, ..., 1), in generate's float32 arithmetic."""
    n = cfg.max_denoising_steps
    return torch.stack([cfg.t_min + (cfg.t_max - cfg.t_min) * (torch.tensor(k, dtype=torch.int32) / n)
                        for k in range(n, 0, -1)]).float()


def accept(processed: torch.Tensor, bound: float) -> torch.Tensor:
    """[B, L] bool: the entropy-bound acceptance of ``processed`` (temperature-scaled) logits."""
    entropy = torch.distributions.Categorical(logits=processed).entropy()
    ordered, index = torch.sort(entropy, dim=-1)
    return torch.scatter(torch.zeros_like(ordered, dtype=torch.bool), -1, index, torch.cumsum(ordered, -1) - ordered
                         <= bound)


class _Canvases:
    """The encoder cache and position bookkeeping of one batch, canvas by canvas (as ``generate`` keeps them)."""

    def __init__(self, model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, length: int):
        from transformers import DynamicCache
        self.model, self.length = model, length
        self.cache = DynamicCache(config=model.config.get_text_config(decoder=True))
        p = prompt_ids.shape[1]
        self.attn = prompt_mask.bool()
        self.decoder_mask_2d = F.pad(self.attn, (0, length), value=True)
        self.enc_pos = torch.arange(0, p, dtype=torch.int32, device=prompt_ids.device)[None]
        self.dec_pos = torch.arange(p, p + length, dtype=torch.int32, device=prompt_ids.device)[None]

    def encode(self, new_ids: torch.Tensor) -> dict:
        """Append ``new_ids`` (the prompt, then each finished canvas) to the cache; the next canvas's decoder mask."""
        enc = self.model.model.encoder
        masks = enc.create_masks_for_generate(
            config=self.model.config, inputs_embeds=torch.empty((new_ids.shape[0], new_ids.shape[1], 0),
                                                                dtype=self.model.dtype, device=new_ids.device),
            attention_mask=self.attn, cache=self.cache, position_ids=self.enc_pos)
        enc(input_ids=new_ids.contiguous(), attention_mask=masks, cache=self.cache, position_ids=self.enc_pos)
        shape = (new_ids.shape[0], self.length, 1)
        return self.model.model.decoder.create_diffusion_decoder_attention_mask(
            config=self.model.config, inputs_embeds=torch.empty(shape, device=new_ids.device), cache=self.cache,
            decoder_attention_mask=self.decoder_mask_2d)

    def decode(self, canvas: torch.Tensor, self_conditioning: torch.Tensor | None, mask: dict,
               self_conditioning_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(decoder_input_ids=canvas, self_conditioning_logits=self_conditioning,
                          self_conditioning_mask=self_conditioning_mask, decoder_attention_mask=mask, cache=self.cache,
                          decoder_position_ids=self.dec_pos).logits

    def advance(self) -> None:
        n = self.length
        self.attn = F.pad(self.attn, (0, n), value=True)
        self.decoder_mask_2d = F.pad(self.decoder_mask_2d, (0, n), value=True)
        self.enc_pos, self.dec_pos = self.dec_pos, self.dec_pos + n


@torch.no_grad()
def sample(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None = None,
           config: BlockDiffusionConfig | None = None,
           generator: torch.Generator | None = None) -> BlockDiffusionRecord:
    """Decode a batch of left-padded prompts as ``model.generate`` does and record every step (module docstring).
    ``generator`` drives the draws (default: the global RNG, which is what ``generate`` uses)."""
    cfg = (config or BlockDiffusionConfig()).resolve(model)
    device, b = prompt_ids.device, prompt_ids.shape[0]
    length, vocab = model.config.canvas_length, model.config.get_text_config().vocab_size
    n, stable_for = cfg.max_denoising_steps, cfg.stability_threshold
    prompt_mask = torch.ones_like(prompt_ids, dtype=torch.bool) if prompt_mask is None else prompt_mask.bool()
    temps = temperatures(cfg)
    sc_dtype = model.model.decoder.embed_tokens.weight.dtype
    canvases = _Canvases(model, prompt_ids, prompt_mask, length)
    ids, done = prompt_ids, torch.zeros(b, dtype=torch.bool, device=device)
    rec_inputs, rec_samples, rec_accepted, rec_refining, nfe = [], [], [], [], 0
    for c in range(math.ceil(cfg.max_new_tokens / length)):
        mask = canvases.encode(ids if c == 0 else ids[:, -length:])
        canvas = torch.randint(0, vocab, (b, length), device=device, generator=generator)
        sc, finished = None, torch.zeros(b, dtype=torch.bool, device=device)
        history = torch.full((stable_for, b, length), -1, dtype=torch.long, device=device)
        argmax_canvas = canvas
        inputs = torch.full((b, n, length), -1, dtype=torch.int32, device=device)
        samples, accepted = torch.full_like(inputs, -1), torch.zeros(b, n, length, dtype=torch.bool, device=device)
        refining = torch.zeros(b, n, dtype=torch.bool, device=device)
        for j in range(n):
            refining[:, j] = ~finished
            nfe += int((~(finished | done)).sum())
            inputs[:, j] = canvas.int()
            processed = canvases.decode(canvas, sc, mask) / temps[j]
            probs = torch.softmax(processed, -1, dtype=torch.float32)
            y = torch.multinomial(probs.view(-1, vocab), 1, generator=generator).squeeze(-1).view(b, length)
            argmax = processed.argmax(-1)
            acc = accept(processed, cfg.entropy_bound)
            noise = torch.randint(0, vocab, (b, length), device=device, generator=generator)
            new_canvas = torch.where(~acc, noise, torch.where(acc, y, canvas))
            samples[:, j], accepted[:, j] = y.int(), acc
            if finished.any():  # stopped rows are frozen (their draws are still made, as in generate)
                argmax = torch.where(finished[:, None], argmax_canvas, argmax)
                new_canvas = torch.where(finished[:, None], canvas, new_canvas)
                processed = torch.where(finished[:, None, None], sc.float(), processed)
            stable = ((history == argmax[None]).all(-1).all(0) if stable_for > 0
                      else torch.ones(b, dtype=torch.bool, device=device))
            if stable_for > 0:
                history = torch.roll(history, -1, 0)
                history[-1] = argmax
            confident = torch.distributions.Categorical(logits=processed).entropy().mean(-1) < cfg.confidence_threshold
            finished |= stable & confident
            sc, canvas, argmax_canvas = processed.to(sc_dtype), new_canvas, argmax
            if bool(finished.all()):
                break
        rec_inputs.append(inputs), rec_samples.append(samples), rec_accepted.append(accepted)
        rec_refining.append(refining)
        ids, done = _finish_canvas(ids, argmax_canvas, done, cfg)
        if bool(done.all()):
            break
        canvases.advance()
    return BlockDiffusionRecord(
        prompt_ids=prompt_ids.clone(), prompt_mask=prompt_mask.clone(), sequences=ids,
        inputs=torch.stack(rec_inputs, 1), samples=torch.stack(rec_samples, 1), accepted=torch.stack(rec_accepted, 1),
        refining=torch.stack(rec_refining, 1), temperatures=temps, config=vars(cfg).copy(), nfe=nfe)


def _finish_canvas(ids: torch.Tensor, canvas: torch.Tensor, done: torch.Tensor, cfg: BlockDiffusionConfig):
    """Append the canvas; rows done before get padding, a row whose canvas holds an EOS is done, with padding after
    its first EOS (generate's EOS criterion and padding)."""
    if not cfg.eos_token_id:
        return torch.cat([ids, canvas], -1), done
    is_eos = torch.isin(canvas, torch.tensor(cfg.eos_token_id, device=canvas.device))
    if cfg.pad_token_id is not None:
        after_first = (is_eos.cumsum(-1) - is_eos.long()) > 0
        canvas = torch.where(done[:, None] | after_first, cfg.pad_token_id, canvas)
    return torch.cat([ids, canvas], -1), done | is_eos.any(-1)


def _encoded_before(model, record: BlockDiffusionRecord, canvas: int) -> tuple[_Canvases, dict]:
    """The encoder cache of the prompt and the finished canvases before ``canvas``, and that canvas's decoder mask."""
    length, p = model.config.canvas_length, record.prompt_ids.shape[1]
    state = _Canvases(model, record.prompt_ids, record.prompt_mask, length)
    mask = state.encode(record.prompt_ids)
    for c in range(canvas):
        state.advance()
        mask = state.encode(record.sequences[:, p + c * length: p + (c + 1) * length])
    return state, mask


@torch.no_grad()
def replay_logits(model, record: BlockDiffusionRecord, canvas: int,
                  keep: Iterable[int] | None = None) -> torch.Tensor | dict[int, torch.Tensor]:
    """[B, N, L, V] the temperature-scaled logits of every recorded step of ``canvas``, recomputed from the record
    (the encoder cache from the finished sequence, each step's self-conditioning from the step before): under the
    rollout's weights, exactly what the sampler computed. ``keep``: only those steps' logits, {step: [B, L, V]} in
    the self-conditioning dtype (what the sampler fed forward) — the memory an update needs (a full-size vocabulary
    makes each step's B × L × V large: 0.13 GB per row in bf16 for DiffusionGemma-26B's canvas of 256)."""
    state, mask = _encoded_before(model, record, canvas)
    sc_dtype = model.model.decoder.embed_tokens.weight.dtype
    wanted = None if keep is None else set(keep)
    out, kept, sc = [], {}, None
    last = int(record.refining[:, canvas].any(0).sum()) if wanted is None else max(wanted, default=-1) + 1
    for j in range(last):
        x = record.inputs[:, canvas, j].long()
        processed = state.decode(x, sc, mask) / record.temperatures[j]
        if sc is not None:  # a stopped row keeps its last logits as self-conditioning
            processed = torch.where(record.refining[:, canvas, j, None, None], processed, sc.float())
        sc = processed.to(sc_dtype)
        if wanted is None:
            out.append(processed)
        elif j in wanted:
            kept[j] = sc
    return torch.stack(out, 1) if wanted is None else kept


def accepted_logprobs(model, record: BlockDiffusionRecord, canvas: int, steps: list[int],
                      replayed: torch.Tensor | Mapping[int, torch.Tensor], per_token: bool = False,
                      checkpoint: bool = False) -> torch.Tensor:
    """[B, len(steps)] (``per_token``: [B, len(steps), L], 0 off the accepted positions) under the current weights,
    with gradients: each step's Σ over its accepted positions (rows still
    refining) of log softmax(f_θ(x_k, s_k) / T_k)[y_k] — the log-probability of the samples that shape the next canvas
    (acceptance depends on entropies only, so the other samples marginalise out). The acceptance set is taken as
    recorded, and the self-conditioning s_k enters as an input: ``replayed`` holds the rollout policy's logits
    (``replay_logits`` before the update: [B, N', L, V], or {step: [B, L, V]} with at least each step k − 1), s_k =
    its step k − 1, with no gradient through it. The encoder cache (prompt and finished canvases) is computed with
    gradients, so they reach the shared weights through it. ``checkpoint``: activation checkpointing of each step's
    decoder pass and log-softmax (``torch.utils.checkpoint``; transformers' own checkpointing gives wrong results
    with this cached forward, measured)."""
    state, mask = _encoded_before(model, record, canvas)
    sc_dtype = model.model.decoder.embed_tokens.weight.dtype
    def chosen_logprobs(x: torch.Tensor, sc: torch.Tensor | None, y: torch.Tensor, temperature: torch.Tensor):
        logp = torch.log_softmax(state.decode(x, sc, mask).float() / temperature, -1)
        return logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)

    out = []
    for j in steps:
        previous = None if j == 0 else replayed[j - 1] if isinstance(replayed, Mapping) else replayed[:, j - 1]
        sc = None if previous is None else previous.detach().to(sc_dtype)
        inputs = (record.inputs[:, canvas, j].long(), sc, record.samples[:, canvas, j].long(), record.temperatures[j])
        # checkpointed: only [B, L] is kept for the backward; the decoder and its B × L × V logits run again there
        # (the decoder reads the encoder's cache and never writes it, so the recomputation is the same function)
        chosen = (torch.utils.checkpoint.checkpoint(chosen_logprobs, *inputs, use_reentrant=False) if checkpoint
                  else chosen_logprobs(*inputs))
        live = record.accepted[:, canvas, j] & record.refining[:, canvas, j, None]
        out.append(chosen * live if per_token else (chosen * live).sum(-1))
    return torch.stack(out, 1)


def tiny_diffusion_gemma(seed: int = 0, vocab_size: int = 128, canvas_length: int = 8, **sizes):
    """A small random ``DiffusionGemmaForBlockDiffusion`` (2 layers, MoE with 4 experts, top-2; a 1-layer vision
    tower, which the model always builds), deterministic in ``seed`` on the CPU."""
    from transformers import (
        DiffusionGemmaConfig,
        DiffusionGemmaForBlockDiffusion,
        DiffusionGemmaTextConfig,
        Gemma4VisionConfig,
    )
    text = DiffusionGemmaTextConfig(**{
        "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "global_head_dim": 16,
        "num_global_key_value_heads": 1, "num_experts": 4, "top_k_experts": 2, "moe_intermediate_size": 16,
        "sliding_window": 16, "max_position_embeddings": 512, "layer_types": ["sliding_attention", "full_attention"],
        **sizes})
    vision = Gemma4VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, head_dim=8, position_embedding_size=64)
    cfg = DiffusionGemmaConfig(text_config=text, vision_config=vision, canvas_length=canvas_length,
                               image_token_id=vocab_size - 1, boi_token_id=vocab_size - 3, eoi_token_id=vocab_size - 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffusionGemmaForBlockDiffusion(cfg).eval()
