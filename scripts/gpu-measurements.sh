#!/usr/bin/env bash
# The GPU measurements of issue 18 (rollouts and updates at the GPU's speed), in one run on one H100/H200:
#   scripts/gpu-measurements.sh [OUT]        (default OUT: out/gpu; about 6 minutes)
# 1. the GPU-only tests (tests/**/test_*_gpu.py);
# 2. unmask bench rollout --shape llada-8b: every decoding mode on a random LLaDA-8B-shaped model at d1's setting
#    (acceptance: dual cache >= 5x the plain loop, prefix >= 3x, recording overhead <= 2%);
# 3. unmask bench step --shape llada-8b: one diffu-GRPO step with LoRA at d1's sizes, phase by phase
#    (acceptance: the update's MFU >= 35% in bf16).
# Needs CUDA torch in the active environment (README, "GPU install").
set -euo pipefail
OUT=${1:-out/gpu}
mkdir -p "$OUT"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name())"
python -m pytest -q $(git ls-files 'tests/**/test_*_gpu.py') 2>&1 | tail -5 | tee "$OUT/gpu-tests.txt"
unmask bench rollout --shape llada-8b --out "$OUT/rollout-llada-8b.json" | tee "$OUT/rollout-llada-8b.txt"
unmask bench step --shape llada-8b --out "$OUT/step-llada-8b.json" | tee "$OUT/step-llada-8b.txt"
