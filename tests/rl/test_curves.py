"""rl/curves.py: the demo's curve CSV holds exactly the summary's numbers, the PNG is a real 640×400 PNG, and
without matplotlib the CSV is still written and the one log line says how to get the PNG."""
from __future__ import annotations

import csv
import sys

import pytest

from unmask.rl.curves import COLUMNS, write_curve_csv, write_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUMMARY = {
    "algorithm": "diffu_grpo",
    "reward_curve": [(1, 0.1), (2, 0.30000000000000004), (3, 1 / 3), (4, 0.875), (5, -0.25)],
    "accuracy_curve": [(0, 0.405), (2, 0.52), (4, 2 / 3)],
}


def read_curve_csv(path) -> tuple[list[str], dict[str, list[tuple[int, float]]]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    curves = {"reward_curve": [], "accuracy_curve": []}
    for step, reward, accuracy in rows:
        for key, cell in (("reward_curve", reward), ("accuracy_curve", accuracy)):
            if cell != "":
                curves[key].append((int(step), float(cell)))
    return header, curves


def test_csv_holds_exactly_the_summarys_numbers(tmp_path):
    header, curves = read_curve_csv(write_curve_csv(tmp_path / "curve.csv", SUMMARY))
    assert header == list(COLUMNS)
    assert curves == {"reward_curve": SUMMARY["reward_curve"], "accuracy_curve": SUMMARY["accuracy_curve"]}


def test_csv_keeps_a_step_that_a_curve_repeats(tmp_path):
    summary = {"reward_curve": [(1, 0.5), (1, 0.25)], "accuracy_curve": [(1, 0.75)]}
    assert read_curve_csv(write_curve_csv(tmp_path / "curve.csv", summary))[1] == summary


def test_png_is_a_real_png_of_the_chart_size(tmp_path):
    pytest.importorskip("matplotlib")
    lines = []
    written = write_curves(tmp_path, SUMMARY, lines.append)
    assert [p.name for p in written] == ["curve.csv", "curve.png"] and lines == []
    data = (tmp_path / "curve.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE
    from matplotlib.image import imread
    assert imread(tmp_path / "curve.png").shape[:2] == (400, 640)  # rows × columns


def test_png_from_json_lists_and_empty_curves(tmp_path):
    pytest.importorskip("matplotlib")
    summary = {"algorithm": "gdpo", "reward_curve": [], "accuracy_curve": [[0, 0.5]]}  # as summary.json reads back
    write_curves(tmp_path, summary, lambda line: None)
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG_SIGNATURE


def test_without_matplotlib_only_the_csv_and_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    lines = []
    written = write_curves(tmp_path, SUMMARY, lines.append)
    assert [p.name for p in written] == ["curve.csv"]
    assert not (tmp_path / "curve.png").exists()
    assert read_curve_csv(tmp_path / "curve.csv")[1]["reward_curve"] == SUMMARY["reward_curve"]
    assert len(lines) == 1 and "unmask[plot]" in lines[0] and "curve.csv" in lines[0]


def test_importing_the_demo_does_not_import_matplotlib():
    import subprocess
    code = "import sys, unmask.rl.demo, unmask.rl.curves; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
