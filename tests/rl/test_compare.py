"""``unmask compare`` (rl/compare.py): methods × seeds on the tiny CPU recipe give the table, JSON, CSV and plot;
a second invocation redoes no finished run; an unfinished one resumes in its own process; the 95% CI arithmetic
on hand-chosen numbers; ASS methods get their own diffusion step count; what compare refuses, before any run."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest

from tests.paths import LLADA_TINY
from unmask.rl import compare
from unmask.rl.cli import main
from unmask.rl.compare import RECIPE, mean_ci, method_recipe, run_compare, summarize, t975

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METHODS, SEEDS = ["diffu_grpo", "cj_grpo"], [0, 1]
TINY = "recipes/tiny-cpu.yaml"
OVERRIDES = ["data.eval_dataset=synthetic_addition", "data.eval_dataset_config='2'", "data.eval_split=test",
             "data.eval_limit=2", "training.eval_steps=1", "training.max_steps=2", "training.save_steps=2",
             "rollout.max_completion_length=8", "rollout.block_length=8", "rollout.diffusion_steps=4"]


def compare_tiny(out, log, **kwargs) -> dict:
    return run_compare(METHODS, SEEDS, TINY, str(LLADA_TINY), out, OVERRIDES, log=log, **kwargs)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """2 methods × 2 seeds, 2 steps each, in this process (the subprocess path is tested on a resume below)."""
    out = tmp_path_factory.mktemp("compare")
    lines: list[str] = []
    return out, compare_tiny(out, lines.append, isolate=False), lines


def test_compare_writes_the_table_the_json_the_csv_and_the_plot(compared):
    out, result, lines = compared
    assert [line.split(": ", 1)[1].split(" (")[0] for line in lines if line.startswith("[")] == ["starting"] * 4
    saved = json.loads((out / "compare.json").read_text())
    assert saved["methods"] == METHODS and saved["seeds"] == SEEDS and saved["metric"] == "eval/reward"
    assert [(r["method"], r["seed"]) for r in saved["runs"]] == [(m, s) for m in METHODS for s in SEEDS]
    for run in saved["runs"]:
        assert [step for step, _ in run["curve"]] == [0, 2]  # the start evaluation, then training.eval_steps
        assert run["start"] == run["curve"][0][1] and run["final"] == run["best"] == run["curve"][1][1]
        assert run["final_step"] == 2 and run["steps_timed"] == 2 and run["seconds_per_step"] > 0
        assert run["peak_rss_mib"] > 0 and run["peak_cuda_mib"] is None
    assert [row["method"] for row in saved["summary"]] == METHODS
    for row in saved["summary"]:
        assert row["seeds"] == SEEDS
        for key in ("start", "final", "best"):
            values = [r[key] for r in saved["runs"] if r["method"] == row["method"]]
            assert row[key] == mean_ci(values)
        assert [(step, n) for step, _, _, n in row["curve"]] == [(0, 2), (2, 2)]
    table = (out / "compare.md").read_text().splitlines()
    assert table[0] == "| method | seeds | start | final | best | gain | s/step | peak RSS MiB |"
    assert [line.split(" | ")[:2] for line in table[2:4]] == [["| `diffu_grpo`", "2"], ["| `cj_grpo`", "2"]]
    with (out / "compare.csv").open(newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["method", "seed", "step", "heldout_accuracy"]
    assert [(m, int(s), int(step)) for m, s, step, _ in rows] == [(m, s, t) for m in METHODS for s in SEEDS
                                                                 for t in (0, 2)]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "compare.png").exists()
    else:
        assert (out / "compare.png").read_bytes()[:8] == PNG_SIGNATURE


def test_cj_grpo_decodes_with_its_own_ass_step_count(compared):
    out = compared[0]
    steps = {m: method_recipe(TINY, m, OVERRIDES).rollout.diffusion_steps for m in METHODS}
    assert steps == {"diffu_grpo": 4, "cj_grpo": 3}  # ASS: floor(log2 8); the shared override is the others'
    assert "diffusion_steps: 3" in (out / "cj_grpo" / "seed0" / compare.RUN_RECIPE).read_text()


def test_a_second_invocation_redoes_no_finished_run(compared, monkeypatch):
    out = compared[0]
    metrics = sorted(out.glob("*/seed*/metrics.jsonl"))
    stamps = [p.stat().st_mtime_ns for p in metrics]
    before = json.loads((out / "compare.json").read_text())

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was started again")
    monkeypatch.setattr(compare, "run_one", refuse)
    monkeypatch.setattr(compare.subprocess, "run", refuse)
    lines: list[str] = []
    again = compare_tiny(out, lines.append)
    assert sum("finished, not redone" in line for line in lines) == 4
    assert [p.stat().st_mtime_ns for p in metrics] == stamps
    assert again == before  # the same runs, read again from their folders


def test_an_unfinished_run_resumes_from_its_checkpoint_in_its_own_process(compared):
    out = compared[0]
    run_dir = out / "cj_grpo" / "seed1"
    (run_dir / compare.RUN_RECORD).unlink()  # as if the process had died after its last checkpoint
    lines: list[str] = []
    result = compare_tiny(out, lines.append)
    assert [line for line in lines if "resuming" in line] == [
        f"[4/4] cj_grpo seed 1: resuming from checkpoint-2 ({run_dir})"]
    run = result["runs"][-1]
    assert run["resumed_at_step"] == 2 and run["steps_timed"] == 0 and run["seconds_per_step"] is None
    assert run["peak_rss_mib"] > 0  # measured by that process itself
    assert [step for step, _ in run["curve"]] == [0, 2]  # the start is not evaluated again on a resume
    assert result["summary"][1]["seconds_per_step"] == result["runs"][2]["seconds_per_step"]


def test_a_run_folder_of_another_recipe_is_refused(compared):
    out = compared[0]
    with pytest.raises(ValueError, match="holds a run of another recipe"):
        run_compare(METHODS, SEEDS, TINY, str(LLADA_TINY), out, [*OVERRIDES, "training.learning_rate=0.01"],
                    log=lambda line: None)


def test_mean_and_95_percent_t_interval_on_hand_chosen_numbers():
    stat = mean_ci([0.5, 0.7, 0.9])  # sd 0.2, n 3: half-width t(0.975, 2) * 0.2 / sqrt(3)
    assert stat["n"] == 3 and stat["mean"] == pytest.approx(0.7)
    assert stat["ci95"] == pytest.approx(4.303 * 0.2 / math.sqrt(3))
    assert mean_ci([0.25, 0.75])["ci95"] == pytest.approx(12.706 * 0.5 / math.sqrt(2) / math.sqrt(2))
    assert mean_ci([0.4]) == {"mean": 0.4, "ci95": None, "n": 1}
    assert mean_ci([]) == {"mean": None, "ci95": None, "n": 0}
    assert compare.fmt(mean_ci([0.4])) == "0.400 ± n/a"


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 80):
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4), df


def test_summary_keeps_curve_steps_every_seed_reached():
    runs = [{"method": "m", "seed": s, "metric": "eval/reward", "curve": curve, "start": curve[0][1],
             "final": curve[-1][1], "best": max(v for _, v in curve[1:]), "seconds_per_step": rate,
             "peak_rss_mib": peak, "peak_cuda_mib": None}
            for s, curve, rate, peak in ((0, [(0, 0.2), (5, 0.6), (10, 0.4)], 1.0, 300.0),
                                         (1, [(0, 0.2), (5, 0.8)], 3.0, 500.0))]
    (row,) = summarize(runs)["summary"]
    assert row["final"]["mean"] == pytest.approx(0.6) and row["best"]["mean"] == pytest.approx(0.7)
    assert row["gain"]["mean"] == pytest.approx(0.4) and row["gain"]["ci95"] == pytest.approx(12.706 * 0.2)
    assert row["seconds_per_step"] == 2.0 and row["peak_rss_mib"] == 500.0
    assert [(step, n) for step, _, _, n in row["curve"]] == [(0, 2), (5, 2)]  # step 10: one seed only
    assert row["curve"][0][2] == 0.0


def test_ass_methods_drop_the_recipes_diffusion_steps_on_the_demo_recipe():
    assert method_recipe(RECIPE, "diffu_grpo").rollout.diffusion_steps == 20
    assert method_recipe(RECIPE, "cj_grpo").rollout.diffusion_steps == 5  # 40 tokens: floor(log2 40)
    assert method_recipe(RECIPE, "cj_grpo", ["rollout.diffusion_steps=10"]).rollout.diffusion_steps == 5
    with pytest.raises(ValueError, match="set rollout.diffusion_steps to 5"):
        method_recipe(RECIPE, "cj_grpo", own=["rollout.diffusion_steps=10"])  # a method's own override applies


@pytest.mark.parametrize("args, message", [
    (["--recipe", TINY, "--seeds", "0", "training.max_steps=2"], "needs held-out evaluations"),
    (["--recipe", TINY, "training.seed=3"], "use --seeds"),
    (["--recipe", TINY, "--methods", "gdpo", "--method-override", "mdpo:training.learning_rate=1e-4"],
     "which --methods does not list"),
    (["--method-override", "gdpo-lr=1"], "write METHOD:KEY=VALUE"),
    (["--seeds", "0,one"], "comma-separated integers"),
    (["--methods", "diffu_grpp"], "diffu_grpo"),
])
def test_compare_refuses_before_any_run(args, message, tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_compare_help_loads_no_torch():
    code = ("import sys\nfrom unmask.rl.cli import main\ntry:\n    main(['compare', '--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "print([m for m in ('torch', 'transformers') if m in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "[]"


def test_vrpo_learns_from_pairs_of_the_start_models_rollouts_and_is_evaluated_as_rl_is(tmp_path):
    from tests.paths import REPO
    from unmask.rewards import build_rewards  # noqa: F401  (the demo's reward is registered)
    from unmask.rl.compare_vrpo import PAIRS
    from unmask.rl.recipes import load_recipe
    from unmask.rl.trainer import Trainer
    from unmask.tasks import PromptOrder
    start = str(REPO / "tests" / "fixtures" / "demo-sft")
    shared = ["training.max_steps=2", "training.eval_steps=1", "training.save_steps=1", "data.eval_limit=8",
              "training.per_device_train_batch_size=32"]  # 4 prompts × 8 completions per batch
    result = run_compare(["vrpo"], [0], RECIPE, start, tmp_path, shared, log=lambda *a: None, isolate=False)
    run = tmp_path / "vrpo" / "seed0"
    pairs = [json.loads(line) for line in (run / PAIRS).read_text().splitlines()]
    rl = Trainer(load_recipe(run / compare.RUN_RECIPE, ["training.resume_from=null",
                                                        f"training.output_dir={tmp_path / 'rl'}"])).setup()
    order = PromptOrder(len(rl.rows), 0)
    seen = {rl.rows[i]["question"] for _ in range(2) for i in order.take(4)}  # an RL run's two batches
    assert pairs and {p["question"] for p in pairs} <= seen
    for p in pairs:  # the demo's reward is 1 for the right tagged answer, else 0: chosen right, rejected wrong
        scores = rl._rewards([p["chosen"], p["rejected"]], [[], []], [p, p]).total
        assert scores == [1.0, 0.0]
    curve = result["runs"][0]["curve"]
    assert [step for step, _ in curve] == [0, 1, 2]
    rl.policy.adapter.model.eval()
    assert curve[0][1] == rl.held_out_rewards(rl.eval_engine)["eval/reward"]  # step 0: the start, as RL evaluates
    assert json.loads((run / compare.RUN_RECORD).read_text())["pairs"] == len(pairs)
