"""The rollout benchmark: its baseline is the reference loop, and a quick run writes a full report."""
import json

import torch

from unmask.rl.cli import main
from unmask.rollouts.bench import BenchSetting, plain_loop
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import sample
from unmask.rollouts.tiny import make_tiny


def test_plain_reference_loop_and_exact_mode_decode_identical_tokens():
    s = BenchSetting.quick()
    adapter = make_tiny("llada", seed=2)
    prompt = torch.randint(0, 256, (3, s.prompt_length), generator=torch.Generator().manual_seed(1))
    cfg = SamplerConfig(max_completion_length=s.completion_length, diffusion_steps=s.steps,
                        block_length=s.block_length, stop_at_eos=False)
    assert torch.equal(plain_loop(adapter, prompt, s), sample(adapter, prompt, config=cfg).completion_ids)


def test_quick_bench_writes_every_row(tmp_path, capsys):
    out = tmp_path / "rollout.json"
    assert main(["bench", "rollout", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    modes = [r["mode"] for r in report["rows"]]
    assert modes == ["plain", "exact", "prefix", "dual", "threshold0.9", "dual+threshold0.9", "early_commit",
                     "exact, recording off"]
    exact = report["rows"][1]
    assert exact["agreement_with_exact"] == 1.0 and exact["nfe"] == report["setting"]["steps"]
    assert "recording overhead" in capsys.readouterr().out
