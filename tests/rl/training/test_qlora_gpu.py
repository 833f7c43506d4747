"""QLoRA: a 4-bit (bitsandbytes NF4) base with bf16 LoRA adapters, on a GPU (skipped without CUDA and
bitsandbytes)."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from unmask.rl.trainer import Trainer
from unmask.rollouts.adapter import load_model
from unmask.rollouts.models.quantize import bitsandbytes_problem
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import sample

from ...paths import LLADA_TINY
from ..test_trainer import metrics, recipe, weights

pytestmark = pytest.mark.skipif(bitsandbytes_problem() is not None, reason=str(bitsandbytes_problem()))

QLORA = ["model.use_peft=true", "model.load_in_4bit=true", "model.device=cuda", "model.dtype=bfloat16",
         "model.lora_r=4", "model.lora_alpha=8", "training.bf16=true"]


def test_4bit_load_quantises_every_linear_but_the_head_and_stays_close_to_bf16():
    import bitsandbytes as bnb
    full = load_model(LLADA_TINY, device="cuda", dtype="bfloat16")
    quant = load_model(LLADA_TINY, device="cuda", dtype="bfloat16", load_in_4bit=True)
    heads = set(quant.model.output_head_names())
    linears = {n: type(m) for n, m in quant.model.named_modules() if isinstance(m, nn.Linear)}
    assert heads and all(linears[n] is nn.Linear for n in heads)
    assert len(linears) - len(heads) == 14 and all(t is bnb.nn.Linear4bit for n, t in linears.items() if n not in heads)
    ids = load_file(LLADA_TINY / "golden.safetensors", device="cuda")["input_ids"]
    with torch.no_grad():
        a, b = full.model(ids).float(), quant.model(ids).float()
        # the 4-bit model computes exactly what bf16 does with the dequantised NF4 weights ...
        modules = dict(quant.model.named_modules())
        for name, m in full.model.named_modules():
            if isinstance(m, nn.Linear) and name not in heads:
                w = modules[name].weight
                m.weight.copy_(bnb.functional.dequantize_4bit(w.data, w.quant_state).to(m.weight.dtype))
        c = full.model(ids).float()
    assert (b - c).abs().max() < 0.02 * c.abs().max()
    # ... and stays near the unquantised model (NF4 on this tiny random model: cosine 0.91 on an H100)
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.85
    traj = sample(quant, ids[:, :8], config=SamplerConfig(16, 8, 8, temperature=0.7, cache="dual"), seed=0)
    assert not (traj.completion_ids == quant.mask_id).any() and torch.isfinite(traj.rollout_logp).all()


def test_qlora_recipe_trains_only_the_adapters_and_resumes(tmp_path):
    common = [*QLORA, "training.max_steps=4", "training.save_steps=2", "training.save_total_limit=null"]
    trainer = Trainer(recipe(tmp_path / "whole", *common)).setup()
    base = {n: p.detach().clone() for n, p in trainer.policy.adapter.model.named_parameters() if "lora_" not in n}
    trainer.train()
    after = dict(trainer.policy.adapter.model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in base.items())  # the 4-bit base is frozen
    w2, w4 = weights(tmp_path / "whole" / "checkpoint-2"), weights(tmp_path / "whole" / "checkpoint-4")
    assert all("lora_" in k for k in w4) and max(float((w4[k] - w2[k]).abs().max()) for k in w4) > 0

    shutil.copytree(tmp_path / "whole" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    Trainer(recipe(tmp_path / "resumed", *common, "training.resume_from=latest")).setup().train()
    a, b = metrics(tmp_path / "whole"), metrics(tmp_path / "resumed")
    assert [r["step"] for r in b] == [4]
    assert b[-1]["loss"] == pytest.approx(a[-1]["loss"], abs=1e-4) and b[-1]["reward"] == a[-1]["reward"]
    wb = weights(tmp_path / "resumed" / "checkpoint-4")
    assert max(float((w4[k] - wb[k]).abs().max()) for k in w4) < 1e-4
