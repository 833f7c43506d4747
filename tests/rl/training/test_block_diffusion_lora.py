"""LoRA on DiffusionGemma: one adapter for the tied encoder and decoder, through training, saving, loading and merging;
targets checked before any weights load."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers.models.diffusion_gemma")

from unmask.rl.training.block_diffusion_update import BlockDiffusionUpdate  # noqa: E402
from unmask.rollouts.diffusion_gemma import accepted_logprobs, replay_logits, tiny_diffusion_gemma  # noqa: E402
from unmask.rollouts.diffusion_gemma_lora import apply_lora, check_targets, merge_lora  # noqa: E402

from ..toy import algorithm  # noqa: E402
from .test_block_diffusion_update import batch_of, rollout  # noqa: E402


def trained_lora(seed: int = 0):
    model = tiny_diffusion_gemma(seed=seed)
    peft_model = apply_lora(model, r=4, alpha=8)
    settings = algorithm("diffu_grpo", beta=0.0, num_iterations=1, step_selection="all", loss="clipped")
    optimizer = torch.optim.Adam([p for p in peft_model.parameters() if p.requires_grad], lr=5e-2)
    update = BlockDiffusionUpdate(model, settings)
    for i in range(2):
        record = rollout(model, 2, i, entropy_bound=100.0)
        rewards = (record.sequences[:, record.prompt_ids.shape[1]:] < 32).float().mean(1)
        update.run(batch_of(record, rewards.tolist(), 2, settings, seeds=(i,)),
                   lambda: (optimizer.step(), optimizer.zero_grad()))
    return model, peft_model


def scores(model, record) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([accepted_logprobs(model, record, c, [0, 1, 2, 3], replay_logits(model, record, c))
                          for c in range(record.canvases)], 1)


def test_one_adapter_for_encoder_and_decoder_trained_alone():
    model, peft_model = trained_lora()
    base = model
    enc = base.model.encoder.language_model.layers[0].self_attn.q_proj
    dec = base.model.decoder.layers[0].self_attn.q_proj
    assert dec.lora_A is enc.lora_A and dec.lora_B is enc.lora_B
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(".decoder." not in n for n in trainable)  # the decoder's adapters are the encoder's parameters
    assert float(enc.lora_B["default"].weight.detach().abs().max()) > 0  # trained
    fresh = tiny_diffusion_gemma(seed=0)
    untouched = dict(fresh.named_parameters())
    for n, p in base.named_parameters():  # the base weights stay as they were
        if "lora_" not in n:
            assert torch.equal(p, untouched[n.replace(".base_layer", "")]), n


def test_the_adapter_saves_loads_and_merges_once(tmp_path):
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    model, peft_model = trained_lora()
    record = rollout(model, 2, 9, entropy_bound=100.0)
    want = scores(model, record)
    peft_model.save_pretrained(str(tmp_path))
    other = tiny_diffusion_gemma(seed=0)
    other_peft = apply_lora(other, r=4, alpha=8)
    set_peft_model_state_dict(other_peft, load_file(str(tmp_path / "adapter_model.safetensors")))
    torch.testing.assert_close(scores(other, record), want, atol=1e-5, rtol=0)
    merged = merge_lora(other_peft)
    torch.testing.assert_close(scores(merged, record), want, atol=1e-4, rtol=0)
    assert merged.model.encoder.language_model.layers[0].self_attn.q_proj.weight is \
        merged.model.decoder.layers[0].self_attn.q_proj.weight  # still one tensor


def test_targets_are_checked_without_weights():
    config = tiny_diffusion_gemma(seed=0).config
    assert check_targets(config) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with pytest.raises(ValueError, match=r"\['attn_out'\] match no linear layer.*named \[.*'q_proj'"):
        check_targets(config, ["q_proj", "attn_out"])
