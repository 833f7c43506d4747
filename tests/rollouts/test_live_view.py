"""``unmask generate --show``: through a real pseudo-terminal (tmux) the final screen shows the final text and the
step count; piped, the output is the plain lines; and with RCR, a frame shows a re-masked position (red)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import torch

from unmask.rollouts.adapter import load_model
from unmask.rollouts.live import MASK_GLYPH, LiveCanvas
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import sample

from ..paths import REPO

MODEL = REPO / "tests" / "fixtures" / "demo-sft"
COMMAND = [sys.executable, "-m", "unmask.rl.cli", "generate", "--model", str(MODEL), "--prompt", "47+85=",
           "--max-completion-length", "40", "--block-length", "20", "--diffusion-steps", "20", "--device", "cpu",
           "--show"]


def test_the_final_screen_shows_the_final_text_and_the_steps(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    session = f"unmask-show-{time.monotonic_ns()}"
    plain = subprocess.run(COMMAND, capture_output=True, text=True, cwd=REPO, check=True).stdout  # piped: no view
    assert "forward passes" in plain and "done:" not in plain and MASK_GLYPH not in plain
    final = plain.splitlines()[0].removeprefix("[0] ")  # the completion's first line
    command = " ".join(f"'{a}'" for a in COMMAND) + "; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "30", command], check=True, cwd=REPO)
    try:
        deadline, screen = time.monotonic() + 90, ""
        while "# llada" not in screen:
            assert time.monotonic() < deadline, screen
            time.sleep(0.5)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert "done: 20 steps · 20 forward passes" in screen
    canvas = next(line for line in screen.splitlines() if line.startswith("47+85="))
    assert canvas.replace("│", "").startswith("47+85=" + final) and MASK_GLYPH not in canvas


def test_rcr_remasking_is_drawn():
    from rich.console import Console
    adapter = load_model(MODEL, device="cpu")
    ids, mask = adapter.encode(["47+85=", "3+4="])
    config = SamplerConfig(max_completion_length=40, block_length=40, diffusion_steps=20, temperature=0.0, rcr=True)
    console = Console(record=True, force_terminal=True, width=200, color_system="truecolor")
    frames = []
    with LiveCanvas(adapter.tokenizer, ids, mask, adapter.mask_id, [(0, 40)], console=console) as canvas:
        def hook(step, x):
            canvas.on_step(step, x)
            frames.append((canvas.previous.clone(), step))
        traj = sample(adapter, ids, mask, config, generator=torch.Generator().manual_seed(0), on_step=hook)
    assert len(traj.extras["remask_events"]) > 0  # RCR undid some commits ...
    shown = [f for f, _ in frames]
    remasked = any(((a != adapter.mask_id) & (b == adapter.mask_id)).any() for a, b in zip(shown, shown[1:]))
    assert remasked  # ... and a frame drew a position masked again after showing a token (in red)
    assert "31m" in console.export_text(styles=True) or "\x1b[31m" in console.export_text(styles=True)
