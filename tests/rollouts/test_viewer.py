"""``unmask view``: the page replays a saved trajectory as ``Trajectory.state`` does. Checked as a person would, in
headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by selenium; skipped where they are not
installed): after the slider is moved with the keyboard, the canvas's text is the prompt and that step's state
decoded token by token (masks as ░), the label names the step, a token's tooltip gives its commit step and
log-probability, and play runs to the last step."""
from __future__ import annotations

import shutil
import time

import pytest
import torch

from unmask.rl import cli
from unmask.rollouts.adapter import load_model
from unmask.rollouts.sampler_config import SamplerConfig
from unmask.rollouts.sampling import sample
from unmask.rollouts.trajectory import Trajectory
from unmask.rollouts.viewer import MASK_GLYPH

from ..paths import REPO

MODEL = REPO / "tests" / "fixtures" / "demo-sft"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    adapter = load_model(MODEL, device="cpu")
    ids, mask = adapter.encode(["47+85=", "3+4="])
    config = SamplerConfig(max_completion_length=40, block_length=20, diffusion_steps=8, temperature=0.0)
    traj = sample(adapter, ids, mask, config, generator=torch.Generator().manual_seed(0), seed=0)
    path = tmp_path_factory.mktemp("view") / "trajectory.safetensors"
    traj.save(path)
    return path, adapter.tokenizer


def expected_text(traj: Trajectory, tokenizer, row: int, step: int) -> str:
    state = traj.state(step)[row, traj.prompt_ids.shape[1]:].tolist()
    prompt = tokenizer.decode(traj.prompt_ids[row][traj.prompt_mask[row].bool()].tolist())
    return prompt + "".join(MASK_GLYPH if t == traj.mask_id else tokenizer.decode([t]) for t in state)


def test_unmask_view_writes_one_self_contained_page(saved, tmp_path, capsys):
    path, _ = saved
    out = tmp_path / "view.html"
    assert cli.main(["view", str(path), "--model", str(MODEL), "--out", str(out), "--row", "1"]) == 0
    page = out.read_text()
    assert "<script" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no network
    assert cli.main(["view", str(path), "--model", str(MODEL), "--row", "5", "--out", str(out)]) == 2
    assert "--row 5 is out of range" in capsys.readouterr().err
    weights = MODEL / "model.safetensors"  # a safetensors file, but a model's
    assert cli.main(["view", str(weights), "--model", str(MODEL), "--out", str(out)]) == 2
    assert "is not a trajectory record" in capsys.readouterr().err


def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,800"):
        options.add_argument(flag)
    options.binary_location = chromium
    return webdriver.Chrome(service=webdriver.ChromeService(driver), options=options)


def test_the_page_replays_the_states_in_a_browser(saved, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
    path, tokenizer = saved
    traj = Trajectory.load(path)
    out = tmp_path / "view.html"
    assert cli.main(["view", str(path), "--model", str(MODEL), "--out", str(out)]) == 0
    page = browser()
    try:
        page.get(out.as_uri())
        slider, canvas = page.find_element(By.ID, "slider"), page.find_element(By.ID, "canvas")
        text = lambda: page.execute_script("return document.getElementById('canvas').textContent")  # noqa: E731
        for row in (0, 1):
            Select(page.find_element(By.ID, "row")).select_by_value(str(row))
            slider.send_keys(Keys.HOME)
            steps = int(traj.num_steps[row])
            for step in range(steps + 1):
                assert text() == expected_text(traj, tokenizer, row, step), (row, step)
                assert page.find_element(By.ID, "label").text.startswith(f"step {step} / {steps}")
                slider.send_keys(Keys.ARROW_RIGHT)
        first = canvas.find_elements(By.CLASS_NAME, "tok")[0]
        commit, logp = int(traj.commit_step[1, 0]), float(traj.rollout_logp[1, 0])
        assert f"committed at step {commit}, log p = {round(logp, 4)}" in first.get_attribute("title")
        slider.send_keys(Keys.HOME)
        page.find_element(By.ID, "play").click()
        deadline = time.monotonic() + 20
        while not page.find_element(By.ID, "label").text.startswith(f"step {steps} /"):
            assert time.monotonic() < deadline, "play did not reach the last step"
            time.sleep(0.1)
        assert text() == expected_text(traj, tokenizer, 1, steps)
        assert page.save_screenshot(str(tmp_path / "view.png"))
    finally:
        page.quit()


def test_eval_and_the_trainer_write_replays_of_a_few_rollouts(tmp_path):
    from unmask.rl.recipes import load_recipe
    from unmask.rl.trainer import Trainer

    from ..paths import LLADA_TINY
    out = tmp_path / "eval"
    assert cli.main(["eval", "--model", str(LLADA_TINY), "--tokenizer", "bytes", "--benchmark", "gsm8k",
                     "--data-files", str(REPO / "tests" / "fixtures" / "data" / "gsm8k" / "test.jsonl"),
                     "--limit", "3", "--batch-size", "2", "--max-completion-length", "16", "--diffusion-steps", "8",
                     "--save-trajectories", "3", "--device", "cpu", "--out", str(out)]) == 0
    saved = sorted((out / "trajectories" / "gsm8k").glob("*.safetensors"))
    assert [p.name for p in saved] == ["rollouts-0.safetensors", "rollouts-2.safetensors"]  # 2 + 1 rows
    assert [Trajectory.load(p).batch_size for p in saved] == [2, 1]
    assert all(p.with_suffix(".html").is_file() for p in saved)

    cfg = load_recipe(REPO / "recipes" / "tiny-cpu.yaml", [
        f"model.name_or_path={LLADA_TINY}", f"training.output_dir={tmp_path / 'run'}", "training.max_steps=2",
        "logging.logging_steps=2", "logging.log_trajectories=2"])
    Trainer(cfg, log=lambda *a: None).setup().train()
    written = tmp_path / "run" / "trajectories" / "step-2.safetensors"
    assert Trajectory.load(written).batch_size == 2 and written.with_suffix(".html").is_file()
