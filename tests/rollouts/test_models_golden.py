"""Native LLaDA and Dream reproduce the published modelling code's logits (fixtures' goldens)."""
import pytest
import torch
from safetensors.torch import load_file

from tests.paths import DREAM_TINY, LLADA_TINY
from unmask.rollouts.adapter import load_model
from unmask.rollouts.tiny import make_tiny


@pytest.fixture(scope="module")
def llada():
    return load_model(LLADA_TINY, device="cpu"), load_file(LLADA_TINY / "golden.safetensors")


@pytest.fixture(scope="module")
def dream():
    return load_model(DREAM_TINY, device="cpu"), load_file(DREAM_TINY / "golden.safetensors")


@torch.no_grad()
def test_llada_logits_match_reference(llada):
    adapter, g = llada
    assert (adapter.model(g["input_ids"]) - g["logits"]).abs().max() < 1e-4


@torch.no_grad()
def test_llada_left_padded_batch_matches_unpadded_rows(llada):
    adapter, g = llada
    mask = g["padded_attention_mask"]
    out = adapter.model(g["padded_input_ids"], attention_mask=mask)
    real = mask.bool()
    assert (out[real] - g["padded_logits"][real]).abs().max() < 1e-4
    # and the padded row equals the same row run alone, without padding
    alone = adapter.model(g["padded_input_ids"][2:, 4:])
    assert (out[2, 4:] - alone[0]).abs().max() < 1e-4


@torch.no_grad()
def test_dream_logits_match_reference_and_adapter_shifts_them(dream):
    adapter, g = dream
    raw = adapter.model(g["input_ids"])
    assert (raw - g["logits"]).abs().max() < 1e-4
    shifted = adapter.logits(g["input_ids"])  # logits for position i come from output i-1
    assert torch.equal(shifted[:, 1:], raw[:, :-1]) and torch.equal(shifted[:, 0], raw[:, 0])


@pytest.mark.parametrize("family", ["llada", "dream"])
@torch.no_grad()
def test_left_padding_is_invisible(family):
    adapter = make_tiny(family, seed=3)
    gen = torch.Generator().manual_seed(0)
    row = torch.randint(0, 256, (1, 10), generator=gen)
    padded = torch.cat([torch.full((1, 5), adapter.pad_id), row], dim=1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 10, dtype=torch.long)], dim=1)
    both = adapter.logits(torch.cat([padded, torch.cat([row[:, :5], row], 1)]),
                          torch.cat([mask, torch.ones_like(mask)]))
    # Compared from the second real token: with Dream's shift the first real token's logits come from
    # the pad before it (as in Dream's reference code); a prompt's first token is never predicted.
    assert (both[0, 6:] - adapter.logits(row)[0, 1:]).abs().max() < 1e-5


def test_bfloat16_loading_keeps_logits_close(llada):
    adapter32, g = llada
    adapter16 = load_model(LLADA_TINY, dtype="bfloat16", device="cpu")
    assert all(p.dtype == torch.bfloat16 for p in adapter16.model.parameters())
    with torch.no_grad():
        out = adapter16.model(g["input_ids"]).float()
    assert (out - g["logits"]).abs().max() < 0.25  # logits are O(3); bfloat16 keeps ~3 significant digits
    assert (out.argmax(-1) == g["logits"].argmax(-1)).float().mean() > 0.9


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_gradient_checkpointing_gives_the_same_gradients(family):
    adapter = make_tiny(family, seed=1)
    model = adapter.model.train()
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))

    def grads():
        model.zero_grad()
        model(ids).logsumexp(-1).mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.gradient_checkpointing = True
    for a, b in zip(plain, grads()):
        assert torch.allclose(a, b, atol=1e-6)
