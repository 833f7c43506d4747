"""DeepSpeed ZeRO-2 and ZeRO-3 on one CUDA GPU (NCCL), launched as users do (skipped without CUDA)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ...paths import LLADA_TINY
from .test_deepspeed import final_weights, launch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_zero2_and_zero3_train_the_tiny_recipe_on_a_gpu(tmp_path):
    runs = {}
    for stage in (2, 3):
        out = tmp_path / f"zero{stage}"
        result = launch(out, stage, "model.device=cuda", gpus=1, accelerator=None)
        assert "nccl" in (result.stdout + result.stderr).lower()
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [2, 4] and all(abs(r["loss"]) < 1e3 for r in rows)
        runs[stage] = final_weights(out, 4)
    start = load_file(str(LLADA_TINY / "model.safetensors"))
    assert max(float((runs[2][k] - start[k]).abs().max()) for k in start) > 1e-4  # it trained
    assert max(float((runs[2][k] - runs[3][k]).abs().max()) for k in start) < 1e-4  # same data, same update
