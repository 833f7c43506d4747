"""GPU checks of the native models and sampler (skipped without CUDA)."""
import pytest
import torch
from safetensors.torch import load_file

from tests.paths import DREAM_TINY, LLADA_TINY
from unmask.rollouts.adapter import load_model
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import sample

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("path", [LLADA_TINY, DREAM_TINY])
def test_goldens_on_cuda(path):
    adapter = load_model(path, device="cuda")
    g = load_file(path / "golden.safetensors", device="cuda")
    with torch.no_grad():
        assert (adapter.model(g["input_ids"]) - g["logits"]).abs().max() < 1e-4
    if path == LLADA_TINY:
        out = sample(adapter, g["gen_prompt"], config=SamplerConfig(32, 16, 8)).completion_ids
        assert torch.equal(out, g["gen_s16_l32_b8"][:, 8:])


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_bfloat16_sampling_with_caches_on_cuda(cache):
    adapter = load_model(LLADA_TINY, device="cuda", dtype="bfloat16")
    g = load_file(LLADA_TINY / "golden.safetensors", device="cuda")
    traj = sample(adapter, g["gen_prompt"], config=SamplerConfig(32, 16, 8, temperature=0.7, cache=cache), seed=1)
    assert traj.completion_ids.is_cuda and not (traj.completion_ids == adapter.mask_id).any()
    assert torch.isfinite(traj.rollout_logp).all()
