"""``unmask bench step``: the report's phases and its FLOP accounting (no timing is asserted)."""
from __future__ import annotations

import json

import pytest

from unmask.rl import cli


def test_bench_step_reports_every_phase_and_counts_flops_as_the_docstring_says(tmp_path, capsys):
    out = tmp_path / "step.json"
    assert cli.main(["bench", "step", "--quick", "--out", str(out), "--peak-tflops", "0.5"]) == 0
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"rollout", "reward", "score", "update"}
    assert all(v >= 0 for v in report["seconds"].values()) and report["seconds"]["update"] > 0
    s = report["setting"]
    rows = s["prompts"] * s["num_generations"]
    length = s["model"]["prompt_length"] + s["model"]["completion_length"]
    assert report["completions"] == rows and report["sequence_length"] == length
    flops = 6 * report["params"] * rows * length * s["num_iterations"]
    assert report["update_tflops"] == pytest.approx(flops / report["seconds"]["update"] / 1e12, rel=0.01, abs=2e-3)
    assert report["update_mfu"] == pytest.approx(report["update_tflops"] / 0.5, rel=0.01, abs=1e-3)
    assert report["gpu"] is None and report["peak_memory_mib"] > 0 and report["loss"] is not None
    assert "update" in capsys.readouterr().out
