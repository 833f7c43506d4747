"""A model whose logits are a fixed table per position: lets tests dictate confidences exactly."""
import torch
from torch import nn

from unmask.rollouts.adapter import ModelAdapter, TokenIds
from unmask.rollouts.families import FAMILIES
from unmask.rollouts.tokenizer import byte_tokenizer

MASK, EOS, EOT, VOCAB = 500, 501, 502, 512


class ScriptedModel(nn.Module):
    """logits[b, i] = table[i - prompt_length] over the completion, zeros over the prompt."""

    def __init__(self, table: torch.Tensor, prompt_length: int):
        super().__init__()
        self.table, self.prompt_length = table, prompt_length
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, **_):
        self.calls += 1
        b, t = input_ids.shape
        out = torch.zeros(b, t, VOCAB)
        out[:, self.prompt_length:] = self.table[: t - self.prompt_length]
        return out


def scripted_adapter(table: torch.Tensor, prompt_length: int) -> ModelAdapter:
    tok = byte_tokenizer(MASK, EOS)
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    assert tok.convert_tokens_to_ids("<|eot_id|>") == EOT  # next free id after the byte/special block
    return ModelAdapter(ScriptedModel(table, prompt_length), FAMILIES["llada"], TokenIds(MASK, EOS, EOS), tokenizer=tok)


def peaked(tokens: list[int], probs: list[float]) -> torch.Tensor:
    """A [L, VOCAB] table whose row i puts probability probs[i] on tokens[i], the rest spread evenly."""
    table = torch.empty(len(tokens), VOCAB)
    for i, (tok, p) in enumerate(zip(tokens, probs)):
        rest = (1 - p) / (VOCAB - 1)
        row = torch.full((VOCAB,), rest)
        row[tok] = p
        table[i] = row.log()
    return table
