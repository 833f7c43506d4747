"""lm-evaluation-harness bridge: any unmask model and sampler as lm-eval's ``--model unmask``.

    pip install 'unmask[lmeval]'
    python -m unmask.eval.lmeval --model unmask --tasks gsm8k --device cuda --batch_size 8 \\
        --model_args pretrained=GSAI-ML/LLaDA-8B-Instruct,max_completion_length=256,block_length=32,diffusion_steps=128

lm-eval 0.4 finds models only in its registry (no plugin entry points), so the model must be
registered before lm-eval looks it up: ``python -m unmask.eval.lmeval ARGS`` is lm-eval's own command
line (``lm_eval ARGS``) with this module imported first; from Python, ``import unmask.eval.lmeval``
and then call ``lm_eval.simple_evaluate(model="unmask", ...)``.

What each request type does:

- ``generate_until``: the prompt (lm-eval's rendering, few-shot included) is decoded by
  :class:`unmask.rollouts.engine.RolloutEngine` with the sampler of the model_args (every
  :class:`~unmask.rollouts.sampler_config.SamplerConfig` field; unset ones take the family's reference
  values), ``batch_size`` prompts at a time, cut at the first EOS and then at the earliest of the
  request's ``until`` strings. The completion length is ``max_completion_length`` (lm-eval's
  ``max_gen_toks`` is ignored: a dLLM decodes a fixed-length canvas), and the request's sampling
  kwargs are ignored too (the sampler is the model_args'; a warning says so when they ask to sample).
- ``loglikelihood``: LLaDA's Monte Carlo ELBO (:mod:`unmask.rollouts.likelihood`: ``mc_num`` samples
  in batches of ``mc_batch_size``, LLaDA's defaults 128 and 32), the masks drawn from a generator
  seeded with ``seed`` for every request, so a request's score does not depend on what else is run.
  ``is_greedy`` is LLaDA's suffix check (one token per step, most confident first: L extra forward
  passes per request); ``check_greedy=false`` skips it and reports False, as LLaDA recommends when no
  metric needs it (multiple-choice ``acc``/``acc_norm`` do not; LAMBADA-style ``acc`` does).
- ``loglikelihood_rolling``: the same ELBO over the whole text after one BOS (else EOS) token: a lower
  bound on log p(text), so perplexity-style metrics come out as upper bounds (the MDLM convention), not
  comparable with an autoregressive model's exact values. No windowing: the text must fit the model.

Text is encoded with the tokenizer's special tokens (``add_special_tokens``, as LLaDA's evaluation
code does) unless it already starts with the BOS token (a chat-templated prompt); an empty context
becomes the BOS (else EOS) token. One process only (no data parallelism).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import MODEL_REGISTRY, register_model
except ImportError as e:  # the optional extra is missing
    raise ImportError("unmask.eval.lmeval needs lm-evaluation-harness: pip install 'unmask[lmeval]'") from e

import torch
from tqdm.auto import tqdm

from unmask.rollouts.adapter import load_model
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.likelihood import MC_BATCH_SIZE, MC_NUM, elbo_loglikelihood, greedy_suffix
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.tasks.prompts import cut_at

NAME = "unmask"
SAMPLER_FIELDS = tuple(f.name for f in dataclasses.fields(SamplerConfig))
GREEDY_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature"}  # what a greedy task may say
log = logging.getLogger(__name__)


def cut_at_stop(text: str, until: str | list[str] | None) -> str:
    """``text`` up to the earliest of lm-eval's ``until`` stop strings (one string, a list or none; empty ones
    ignored): the task templates' :func:`~unmask.tasks.prompts.cut_at`."""
    stops = [until] if isinstance(until, str) else list(until or [])
    return cut_at(text, tuple(s for s in stops if s))


def _sampler(args: dict[str, Any]) -> SamplerConfig:
    """A SamplerConfig from model_args (``early_commit_gaps`` may be written ``7.5/5/2.5``)."""
    gaps = args.get("early_commit_gaps")
    if isinstance(gaps, str):
        args = {**args, "early_commit_gaps": [float(g) for g in gaps.split("/")]}
    elif isinstance(gaps, (int, float)):
        args = {**args, "early_commit_gaps": [float(gaps)]}
    return SamplerConfig(**args)


class UnmaskLM(LM):
    """An unmask model (LLaDA, Dream, ...) behind lm-eval's ``LM`` interface; see the module docstring."""

    def __init__(self, pretrained: str | None = None, *, tokenizer: str | None = None, dtype: str = "auto",
                 device: str | None = "auto", revision: str | None = None, trust_remote_code: bool = False,
                 mask_token_id: int | None = None, adapter: str | None = None, batch_size: int | str | None = 1,
                 max_batch_size: int | None = None, seed: int = 0, mc_num: int = MC_NUM,
                 mc_batch_size: int = MC_BATCH_SIZE, check_greedy: bool = True, add_special_tokens: bool = True,
                 **sampler_args: Any):
        super().__init__()
        if pretrained is None:
            raise ValueError("the unmask model needs pretrained=PATH_OR_HUB_ID in --model_args")
        unknown = sorted(set(sampler_args) - set(SAMPLER_FIELDS))
        if unknown:
            raise ValueError(f"unknown model_args {unknown} for the unmask model; it takes pretrained, tokenizer, "
                             f"dtype, device, revision, trust_remote_code, mask_token_id, adapter, batch_size, seed, "
                             f"mc_num, mc_batch_size, check_greedy, add_special_tokens and the sampler's fields "
                             f"{list(SAMPLER_FIELDS)}")
        self.batch_size = self._batch_size(batch_size)
        if mc_num < 1 or mc_batch_size < 1 or mc_num % mc_batch_size:
            raise ValueError(f"mc_num ({mc_num}) must be a positive multiple of mc_batch_size ({mc_batch_size})")
        self.seed, self.mc_num, self.mc_batch_size = int(seed), int(mc_num), int(mc_batch_size)
        self.check_greedy, self.add_special_tokens = bool(check_greedy), bool(add_special_tokens)
        self.pretrained = str(pretrained)
        self.adapter = load_model(pretrained, dtype=dtype, device=self._device_name(device), tokenizer=tokenizer,
                                  revision=revision, trust_remote_code=trust_remote_code,
                                  mask_token_id=mask_token_id, adapter=adapter, merge_adapter=False)
        self.engine = RolloutEngine(self.adapter, _sampler(sampler_args), chat=False)
        self._device = self.adapter.device
        self._warned: set[str] = set()

    @staticmethod
    def _batch_size(batch_size: int | str | None) -> int:
        if batch_size is None:
            return 1
        if isinstance(batch_size, str) and not batch_size.strip().isdigit():
            raise ValueError(f"batch_size={batch_size!r}: the unmask model takes a number of prompts per batch "
                             f"(no 'auto' batch sizing)")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return int(batch_size)

    @staticmethod
    def _device_name(device: str | None) -> str:
        """lm-eval's command line passes ``cuda:0`` when no --device is given: CPU when there is no GPU."""
        if device is None:
            return "auto"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            log.warning("device %s requested but CUDA is not available: running on the CPU", device)
            return "cpu"
        return str(device)

    # ---- what lm-eval reads ----------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.adapter.tokenizer

    @property
    def sampler(self) -> SamplerConfig:
        return self.engine.config

    @property
    def tokenizer_name(self) -> str:
        return self.pretrained.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.adapter.chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, chat_template=self.adapter.chat_template,
                                                  tokenize=False, add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    def get_model_info(self) -> dict:
        return {"model_source": NAME, "model_name": self.pretrained, "sampler": self.sampler.as_dict(),
                "mc_num": self.mc_num, "mc_batch_size": self.mc_batch_size, "seed": self.seed}

    # ---- encoding --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        special = self.add_special_tokens and not (bos and text.startswith(bos))
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _start_ids(self) -> list[int]:
        """What an empty context becomes: the BOS token, else EOS (lm-eval's prefix token)."""
        bos = self.adapter.token_ids.bos
        return [self.adapter.eos_id if bos is None else bos]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation ids, split where the context's ids end in the joint encoding; trailing
        spaces of the context move to the continuation (lm-eval's ``TemplateLM._encode_pair``)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return self._start_ids(), self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        whole, ctx = self.encode(context + continuation), self.encode(context)
        return ctx, whole[len(ctx):]

    # ---- requests --------------------------------------------------------------------------
    def _check_gen_kwargs(self, kwargs: dict) -> None:
        ignored = sorted(set(kwargs) - GREEDY_KWARGS)
        if kwargs.get("do_sample") or (kwargs.get("temperature") or 0) > 0:
            ignored.append("do_sample/temperature")
        if ignored and tuple(ignored) not in self._warned:
            self._warned.add(tuple(ignored))
            log.warning("generation kwargs %s are ignored: the unmask model decodes with the sampler of its "
                        "model_args (%s)", ignored, self.sampler.as_dict())

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = []
        bar = tqdm(total=len(requests), desc="unmask generate_until", disable=disable_tqdm or None)
        for b, start in enumerate(range(0, len(requests), self.batch_size)):
            chunk = requests[start: start + self.batch_size]
            contexts = [r.args[0] for r in chunk]
            ids = [self.encode(c) or self._start_ids() for c in contexts]
            traj = self.engine.rollout(ids, seed=self.seed + b)
            for req, row in zip(chunk, traj.completion_ids):
                kwargs = dict(req.args[1] or {})
                self._check_gen_kwargs(kwargs)
                text = cut_at_stop(self.adapter.decode_completion(row), kwargs.get("until"))
                self.cache_hook.add_partial("generate_until", req.args, text)
                out.append(text)
            bar.update(len(chunk))
        bar.close()
        return out

    def _score(self, context_ids: list[int], target_ids: list[int]) -> float:
        gen = torch.Generator().manual_seed(self.seed)
        return elbo_loglikelihood(self.adapter, context_ids, target_ids, mc_num=self.mc_num,
                                  batch_size=self.mc_batch_size, cfg_scale=self.sampler.cfg_scale, generator=gen)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for req in tqdm(requests, desc="unmask loglikelihood (ELBO)", disable=disable_tqdm or None):
            ctx, cont = self.encode_pair(*req.args)
            logp = self._score(ctx, cont)
            greedy = self.check_greedy and greedy_suffix(self.adapter, ctx, len(cont), self.sampler.cfg_scale) == cont
            self.cache_hook.add_partial("loglikelihood", req.args, (logp, greedy))
            out.append((logp, greedy))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in tqdm(requests, desc="unmask loglikelihood_rolling (ELBO)", disable=disable_tqdm or None):
            logp = self._score(self._start_ids(), self.tokenizer(req.args[0], add_special_tokens=False)["input_ids"])
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, logp)
            out.append(logp)
        return out


def register() -> None:
    """Register :class:`UnmaskLM` as lm-eval's ``unmask`` model (once; lm-eval's own models stay listed)."""
    import lm_eval.models  # noqa: F401  (get_model loads the built-in models only into an empty registry)
    if MODEL_REGISTRY.get(NAME, None) is None:
        register_model(NAME)(UnmaskLM)


register()


def main() -> None:
    """lm-eval's command line with the ``unmask`` model registered: ``python -m unmask.eval.lmeval ARGS``."""
    from lm_eval.__main__ import cli_evaluate
    cli_evaluate()


if __name__ == "__main__":
    main()
