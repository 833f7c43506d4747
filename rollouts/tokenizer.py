"""Tokenizers: the checkpoint's own (through ``transformers.AutoTokenizer``) or a built-in byte-level one.

The byte-level tokenizer needs no download: ids 0–255 are the raw bytes of UTF-8 text and the special
tokens (mask, eos/pad, bos) take the ids the model's config.json gives them. Tiny test and demo
models use it; pass ``tokenizer="bytes"`` to use it with any model whose vocabulary has room.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

BYTES = "bytes"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
# A plain-text chat format for models trained from scratch with the byte tokenizer.
BYTE_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# The messages' text only, no role markers: for tiny models whose prompts must be short and fixed-width.
RAW_CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% if not loop.last %}\n{% endif %}{% endfor %}"
CHAT_TEMPLATES = {"roles": BYTE_CHAT_TEMPLATE, "raw": RAW_CHAT_TEMPLATE}


class TokenizerError(ValueError):
    """No usable tokenizer for a model."""


def _byte_to_unicode() -> dict[int, str]:
    """The reversible byte → printable-character map used by byte-level BPE pre-tokenizers."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def byte_tokenizer(mask_token_id: int, eos_token_id: int, bos_token_id: int | None = None,
                   chat_template: str = BYTE_CHAT_TEMPLATE):
    """A ``PreTrainedTokenizerFast`` over raw bytes with the model's special-token ids.

    eos doubles as pad (as in LLaDA and Dream). Special ids must lie outside 0–255.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = {"<|mask|>": mask_token_id, "<|endoftext|>": eos_token_id}
    if bos_token_id is not None and bos_token_id != eos_token_id:
        specials["<|startoftext|>"] = bos_token_id
    clash = {k: v for k, v in specials.items() if 0 <= v < 256}
    if clash or len(set(specials.values())) != len(specials):
        raise TokenizerError(f"the byte tokenizer needs distinct special-token ids of 256 or more, got {specials}")
    vocab = {ch: b for b, ch in _byte_to_unicode().items()} | specials
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, mask_token="<|mask|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        bos_token="<|startoftext|>" if "<|startoftext|>" in specials else None, padding_side="left")
    fast.chat_template = chat_template
    return fast


def load_tokenizer(spec: str | os.PathLike | None, checkpoint: Path, token_ids: dict[str, int | None],
                   revision: str | None = None):
    """``spec`` None → the checkpoint's own tokenizer; ``"bytes"`` → the byte tokenizer; else a path or Hub id."""
    if spec == BYTES:
        return byte_tokenizer(token_ids["mask"], token_ids["eos"], token_ids.get("bos"))
    import transformers
    source = checkpoint if spec is None else spec
    if spec is None and not any((checkpoint / f).is_file() for f in TOKENIZER_FILES):
        raise TokenizerError(f"{checkpoint} ships no tokenizer (none of {', '.join(TOKENIZER_FILES)}); pass a "
                             f"tokenizer path or Hub id (--tokenizer), or 'bytes' for the built-in byte tokenizer")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # silence "model of type llada ..." notes from reading config.json
    try:
        with warnings.catch_warnings():  # and config deprecation notes that concern transformers' own models
            warnings.simplefilter("ignore", FutureWarning)
            tok = transformers.AutoTokenizer.from_pretrained(str(source), revision=revision)
    except Exception as e:
        raise TokenizerError(f"could not load a tokenizer from {source}: {type(e).__name__}: {e}") from e
    finally:
        transformers.logging.set_verbosity(verbosity)
    tok.padding_side = "left"
    return tok
