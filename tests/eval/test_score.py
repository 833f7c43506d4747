"""``unmask score``: d1's published LLaDA generations re-graded reproduce d1's tables exactly with the d1-compatible
graders, every disagreement with the primary graders has a named cause, and the three file formats (``unmask
eval``'s, d1's, lm-eval's) are read, inferred and refused as documented."""
from __future__ import annotations

import gzip
import json
import shutil

import pytest

from unmask.eval.runner import Generation, run_benchmark
from unmask.eval.score import score_files, summarize_records
from unmask.rl import cli
from unmask.tasks import BENCHMARKS

from ..paths import GSM8K_TEST
from .d1_differences import D1_BASELINES, OTHER, differences, records

# d1's eval/parse_and_get_acc.py on these files (its tables print one decimal: 76.4, 32.4, 19.5, 6.7)
D1_PUBLISHED = {"gsm8k": ("d1_parser", 863, 1130), "math500": ("d1_is_equiv", 162, 500),
                "countdown": ("d1_parser", 50, 256), "sudoku": ("d1_cell_accuracy", 137, 2048)}
PRIMARY = {"gsm8k": (890, 1128), "math500": (178, 500), "countdown": (50, 256), "sudoku": (0, 256)}

# the per-class table in README.md ("Scores comparable with the papers"), recomputed
DIFFERENCES = {
    "gsm8k": {"no closed": 20, "thousands separator": 10, "gold missing": 2, "the box holds more": 2,
              "two boxes disagree": 1},
    "math500": {"the same value in another form": 7, "the same answer with or without text": 6,
                "unclosed \\boxed{2000": 2, "the same list in another order": 1},
    "countdown": {"leaves a number unused": 1, "unclosed \\boxed{...": 1},
    "sudoku": {"no 16-digit grid in the answer, without": 92, "16 digits with blanks left as 0, without": 86,
               "no 16-digit grid in the answer, with d1": 63, "16 digits with blanks left as 0, with d1": 9,
               "a full grid of 1–4 that overwrites a given": 6},
}


@pytest.fixture(scope="module")
def summaries():
    return {b: summarize_records(BENCHMARKS.get(b), records(b), partial=True) for b in D1_PUBLISHED}


@pytest.mark.parametrize("bench", sorted(D1_PUBLISHED))
def test_d1_compatible_graders_reproduce_d1s_published_numbers_at_length_256(bench, summaries):
    grader, correct, denominator = D1_PUBLISHED[bench]
    a = summaries[bench]["accuracy"][grader]
    assert a["accuracy"] == pytest.approx(correct / denominator, abs=1e-12)
    assert a["scored"] == (1130 if bench == "gsm8k" else 256 if bench == "sudoku" else denominator)
    assert "d1's published numbers" in a["role"]


@pytest.mark.parametrize("bench", sorted(PRIMARY))
def test_primary_graders_score_d1s_generations_and_report_first(bench, summaries):
    correct, scored = PRIMARY[bench]
    summary = summaries[bench]
    a = summary["accuracy"][summary["primary_grader"]]
    assert (round(a["accuracy"] * a["scored"]), a["scored"], a["role"]) == (correct, scored, "primary")
    assert next(iter(summary["accuracy"])) == summary["primary_grader"]


@pytest.mark.parametrize("bench", sorted(DIFFERENCES))
def test_every_disagreement_between_the_primary_and_d1s_grader_has_a_named_cause(bench):
    found = differences(bench)
    assert OTHER not in found
    assert {next(k for k in DIFFERENCES[bench] if cls.startswith(k)): n for cls, n in found.items()} == \
        DIFFERENCES[bench]


def test_score_command_infers_the_benchmark_from_d1_file_names_and_scores_the_shards_together(tmp_path, capsys):
    assert cli.main(["score", str(D1_BASELINES / "countdown_*.json.gz"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "countdown: 256/256 problems" in out and "19.53" in out and "reproduces d1's published numbers" in out
    summary = json.loads((tmp_path / "countdown.summary.json").read_text())
    assert summary["final"] and summary["settings"]["gen_length"] == 256 and len(summary["settings"]["files"]) == 7
    assert "| d1_parser | 19.53 |" in (tmp_path / "countdown.summary.md").read_text()
    again = score_files([str(tmp_path / "countdown.samples.jsonl")])  # the re-graded samples score again
    assert json.loads(json.dumps(again["accuracy"])) == summary["accuracy"]


def test_score_is_a_subcommand_of_unmask():
    assert "score" in cli.build_parser().format_help()


def test_an_incomplete_set_gets_no_final_score_unless_partial_is_passed(tmp_path, capsys):
    shards = str(D1_BASELINES / "gsm8k_*.json.gz")
    assert cli.main(["score", shards, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "1128/1319 problems" in captured.out and "pass --partial" in captured.err
    assert "INCOMPLETE" in (tmp_path / "gsm8k.summary.md").read_text()
    assert cli.main(["score", shards, "--partial"]) == 0
    assert "76.37" in capsys.readouterr().out


@pytest.mark.parametrize("names, message", [
    (["results.json"], "cannot tell which benchmark"),
    (["countdown_a.json", "sudoku_b.json"], "the files hold different benchmarks (countdown, sudoku)"),
])
def test_files_whose_benchmark_is_unknown_or_mixed_are_refused_by_name(names, message, tmp_path, capsys):
    for name in names:
        (tmp_path / name).write_bytes(gzip.decompress((D1_BASELINES / "countdown_instruct_256_128_0_generations"
                                                                      ".json.gz").read_bytes()))
    assert cli.main(["score", *(str(tmp_path / n) for n in names)]) == 2
    err = capsys.readouterr().err
    assert message in err and ("--benchmark" in err or "one at a time" in err)


def test_benchmark_flag_names_the_set_when_the_file_name_does_not(tmp_path):
    path = tmp_path / "results.json.gz"
    shutil.copy(D1_BASELINES / "sudoku_instruct_256_128_0_generations.json.gz", path)
    summary = score_files([str(path)], "sudoku")
    assert summary["scored"] == 37 and summary["accuracy"]["d1_cell_accuracy"]["scored"] == 37


@pytest.mark.parametrize("argv, message", [
    (["score", "nowhere/*.jsonl"], "'nowhere/*.jsonl' matches no file"),
    (["score", "nowhere.jsonl"], "nowhere.jsonl: no such file"),
    (["score", str(GSM8K_TEST)], "not a file of completions that unmask score reads"),
])
def test_bad_paths_and_foreign_files_exit_2_with_a_message(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_unmask_eval_samples_score_again_to_the_same_summary(tmp_path):
    bench = BENCHMARKS.get("countdown")
    path = tmp_path / "countdown.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"nums": [1, 2, 3], "target": 6}, {"nums": [4, 5, 7], "target": 27}, {"nums": [2, 9], "target": 11}]))
    rows = bench.load(str(path))
    answers = iter(["<answer>\\boxed{1 + 2 + 3}</answer>", "<answer>1 + 2</answer>", "<answer>4 * 5 + 7</answer>",
                    "<answer>4 * 5 + 7 = 27</answer>", "no answer", "<answer>9 + 2</answer>"])
    summary = run_benchmark(bench, rows, lambda p, k, s: [Generation(str(q), next(answers), 5, 1.0, 0.1)
                                                          for q in p for _ in range(k)],
                            tmp_path / "eval", num_samples=2, batch_size=1, log=lambda *a: None)
    again = score_files([str(tmp_path / "eval" / "countdown.samples.jsonl")])
    assert summary["accuracy"]["countdown"]["accuracy"] == pytest.approx(4 / 6)
    assert again["accuracy"] == summary["accuracy"] and again["pass@1"] == summary["pass@1"]
    assert again["mean_completion_tokens"] == 5 and again["settings"]["files"]


def test_eval_samples_without_their_rows_are_refused_where_the_gold_is_not_enough(tmp_path, capsys):
    path = tmp_path / "countdown.samples.jsonl"
    path.write_text(json.dumps({"id": "countdown/0", "sample": 0, "completion": "<answer>1+2</answer>",
                                "gold": "3 from [1, 2]"}) + "\n")
    assert cli.main(["score", str(path)]) == 2
    assert "carry no dataset row" in capsys.readouterr().err
    old = tmp_path / "gsm8k.samples.jsonl"  # GSM8K and MATH-500 grade from the gold alone
    old.write_text(json.dumps({"id": "gsm8k/0", "sample": 0, "completion": "<answer>18</answer>", "gold": "18"}) + "\n")
    assert score_files([str(old)], partial=True)["accuracy"]["gsm8k_correct"]["accuracy"] == 1.0


def test_lm_eval_samples_are_read_once_per_document_with_every_repeat_as_a_sample(tmp_path):
    lines = []
    for doc_id, (answer, resps) in enumerate([("#### 18", ["The answer is 18.", "The answer is 7."]),
                                              ("#### 1,200", ["so 1,200. The answer is 1200.", "nothing"])]):
        for filt in ("strict-match", "flexible-extract"):  # lm-eval writes one line per filter
            lines.append({"doc_id": doc_id, "doc": {"question": "q", "answer": answer}, "target": answer,
                          "arguments": {"gen_args_0": {"arg_0": "Q: q\nA:", "arg_1": {"until": ["Q:"]}}},
                          "resps": [resps], "filtered_resps": [resps[0]], "filter": filt})
    path = tmp_path / "samples_gsm8k_cot_2025-01-01T00-00-00.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary = score_files([str(path)], partial=True)
    assert summary["benchmark"] == "gsm8k" and summary["scored"] == 2 and summary["samples_per_problem"] == 2
    assert summary["accuracy"]["lm_eval_strict"]["accuracy"] == pytest.approx(0.5)
    assert summary["pass@1"] == pytest.approx(0.5)
