"""The evaluation harness: full coverage of the local sets, oracle and anti-oracle scores, pass@k
against brute force, resumable runs, and LoRA evaluation equal to the merged checkpoint."""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random

import pytest

from unmask.eval.metrics import pass_at_k, wilson_interval
from unmask.eval.runner import Generation, read_done, run_benchmark
from unmask.rl import cli
from unmask.tasks import BENCHMARKS, TEMPLATES

from ..paths import FIXTURES, LLADA_TINY

DATA = {"gsm8k": FIXTURES / "data" / "gsm8k" / "test.jsonl", "math500": FIXTURES / "data" / "math500" / "test.jsonl",
        "humaneval": FIXTURES / "data" / "humaneval" / "HumanEval.jsonl.gz"}
SIZES = {"gsm8k": 1319, "math500": 500, "humaneval": 164}


@pytest.fixture(scope="module")
def rows():
    return {name: BENCHMARKS.get(name).load(str(path)) for name, path in DATA.items()}


def test_local_sets_load_with_full_coverage_and_unique_ids(rows):
    for name, size in SIZES.items():
        assert len(rows[name]) == size and len({r["id"] for r in rows[name]}) == size


def run(bench, rows, answer, tmp_path, **kw):
    """run_benchmark with a generator that sees the batch's rows (to answer from them)."""
    holder = []
    def generate(prompts, samples, seed):
        batch = holder.pop(0)
        return [Generation(str(p), answer(r), 10, 1.0, 0.01) for p, r in zip(prompts, batch) for _ in range(samples)]
    size = kw.pop("batch_size", 64)
    holder.extend(rows[i: i + size] for i in range(0, len(rows), size))
    return run_benchmark(bench, rows, generate, tmp_path, batch_size=size, log=lambda *a: None, **kw)


def _gsm8k_gold(row):  # without thousands separators, which d1's parser cannot read
    return row["answer"].split("####")[-1].strip().replace(",", "")


GOLD = {"gsm8k": lambda r: f"{r['answer']}\nThe answer is {_gsm8k_gold(r)}.\n<answer>{_gsm8k_gold(r)}</answer>",
        "math500": lambda r: f"The answer is $\\boxed{{{r['answer']}}}$.",
        "humaneval": lambda r: f"```python\n{r['prompt']}{r['canonical_solution']}```"}
WRONG = {"gsm8k": lambda r: "#### -987654321", "math500": lambda r: "\\boxed{-987654321.5}",
         "humaneval": lambda r: "```python\nraise SystemExit(3)\n```"}


@pytest.mark.parametrize("name", ["gsm8k", "math500", "humaneval"])
def test_oracle_scores_100_and_a_wrong_model_0(name, rows, tmp_path):
    bench, data = BENCHMARKS.get(name), rows[name]
    if name == "humaneval":
        data = data[:20]  # the full 164 run in the slow test below (about 6 s of sandbox time)
    right = run(bench, data, GOLD[name], tmp_path / "right", total=SIZES[name])
    wrong = run(bench, data, WRONG[name], tmp_path / "wrong")
    for grader in bench.graders:
        assert right["accuracy"][grader]["accuracy"] == 1.0, grader
        assert wrong["accuracy"][grader]["accuracy"] == 0.0, grader
    assert right["scored"] == len(data) and right["final"] == (len(data) == SIZES[name])


@pytest.mark.slow
def test_humaneval_oracle_on_all_164(rows, tmp_path):
    bench = BENCHMARKS.get("humaneval")
    assert run(bench, rows["humaneval"], GOLD["humaneval"], tmp_path)["accuracy"]["pass"]["accuracy"] == 1.0


def test_pass_at_k_matches_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 8)
        c, k = rng.randint(0, n), rng.randint(1, n)
        outcomes = [True] * c + [False] * (n - c)
        subsets = list(itertools.combinations(range(n), k))
        brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and 0.27 < hi < 0.29
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(1 - hi) and 0.40 < lo < 0.41


def test_num_samples_gives_pass_at_k(rows, tmp_path):
    bench = BENCHMARKS.get("gsm8k")
    flip = iter(itertools.cycle([True, False, False, False]))
    summary = run(bench, rows["gsm8k"][:10], lambda r: r["answer"] if next(flip) else "#### -1", tmp_path,
                  num_samples=4)
    assert summary["pass@1"] == pytest.approx(0.25) and "pass@5" not in summary
    assert summary["accuracy"]["gsm8k_correct"]["accuracy"] == pytest.approx(0.25)


def test_incomplete_runs_give_no_final_score_and_resume_skips_finished_samples(rows, tmp_path):
    bench, data = BENCHMARKS.get("gsm8k"), rows["gsm8k"][:6]
    run(bench, data[:3], GOLD["gsm8k"], tmp_path, total=6)
    summary = json.loads((tmp_path / "gsm8k.summary.json").read_text())
    assert summary["final"] is False and "INCOMPLETE" in (tmp_path / "gsm8k.summary.md").read_text()
    path = tmp_path / "gsm8k.samples.jsonl"
    path.write_text(path.read_text() + '{"id": "gsm8k/3", "sam')  # a line cut by a kill
    seen = []
    def generate(prompts, samples, seed):
        seen.extend(prompts)
        return [Generation(str(p), "#### 0", 3, 1.0, 0.01) for p in prompts]
    summary = run_benchmark(bench, data, generate, tmp_path, log=lambda *a: None)
    assert len(seen) == 3 and summary["final"] and summary["scored"] == 6
    assert sorted(read_done(path)) == [(f"gsm8k/{i}", 0) for i in range(6)]


def test_tiny_model_end_to_end_and_lora_equals_merged(tmp_path):
    peft = pytest.importorskip("peft")
    from unmask.rollouts.adapter import load_model
    base = load_model(LLADA_TINY, tokenizer="bytes", device="cpu")
    lora = peft.get_peft_model(base.model, peft.LoraConfig(r=4, lora_alpha=16, init_lora_weights=False,
                                                           target_modules=base.lora_target_modules))
    lora.save_pretrained(str(tmp_path / "adapter"))
    common = ["--tokenizer", "bytes", "--device", "cpu", "--benchmark", "gsm8k", "--data-files", str(DATA["gsm8k"]),
              "--limit", "8", "--max-completion-length", "16", "--diffusion-steps", "8", "--block-length", "8",
              "--batch-size", "4"]
    assert cli.main(["eval", "--model", str(LLADA_TINY), "--adapter", str(tmp_path / "adapter"), *common,
                     "--out", str(tmp_path / "lora")]) == 0
    assert cli.main(["merge", "--model", str(LLADA_TINY), "--adapter", str(tmp_path / "adapter"), "--tokenizer",
                     "bytes", "--device", "cpu", "--out", str(tmp_path / "merged-model")]) == 0
    assert cli.main(["eval", "--model", str(tmp_path / "merged-model"), *common,
                     "--out", str(tmp_path / "merged")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "lora" / "gsm8k.samples.jsonl").read_text().splitlines()]
    merged = [json.loads(x) for x in (tmp_path / "merged" / "gsm8k.samples.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and [r["completion"] for r in lines] == [r["completion"] for r in merged]
    for r in lines:
        assert set(r) >= {"id", "prompt", "completion", "extracted", "gold", "correct", "graders", "sampler", "seed",
                          "nfe", "seconds"}
        assert r["sampler"]["max_completion_length"] == 16 and math.isfinite(r["seconds"])
    summary = json.loads((tmp_path / "lora" / "gsm8k.summary.json").read_text())
    assert summary["scored"] == 8 and summary["total"] == 1319 and summary["limited"] and summary["final"]
    assert "unmask eval" in summary["command"]


SMALL_SETS = {
    "mbpp": ([{"task_id": 1, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
               "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
              {"task_id": 2, "text": "Write a function to square a number.", "code": "def sq(x):\n    return x * x",
               "test_list": ["assert sq(3) == 9"]}],
             lambda r: f"```python\n{r['code']}\n```", lambda r: "```python\ndef add(a, b):\n    return 0\n"
                                                                  "def sq(x):\n    return 0\n```"),
    "countdown": ([{"nums": [1, 2, 3], "target": 6, "solution": "1 + 2 + 3"},
                   {"nums": [4, 5, 7], "target": 27, "solution": "4 * 5 + 7"}],
                  lambda r: f"<answer>{r['solution']}</answer>", lambda r: "<answer>1 + 1</answer>"),
    "sudoku": ([{"puzzle": "1200340021000000", "solution": "1243342121344312"}],
               lambda r: f"<answer>{r['solution']}</answer>", lambda r: "<answer>1234123412341234</answer>"),
}


@pytest.mark.parametrize("name", sorted(SMALL_SETS))
def test_small_benchmarks_from_local_files(name, tmp_path):
    data, right, wrong = SMALL_SETS[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    bench = BENCHMARKS.get(name)
    rows = bench.load(str(path))
    assert all(TEMPLATES.get(bench.template).render(r, None)[-1]["content"] for r in rows)
    grader = next(iter(bench.graders))
    assert run(bench, rows, right, tmp_path / "right")["accuracy"][grader]["accuracy"] == 1.0
    assert run(bench, rows, wrong, tmp_path / "wrong")["accuracy"][grader]["accuracy"] == 0.0


def test_sudoku_has_no_hub_copy_and_unknown_templates_are_named(capsys):
    with pytest.raises(ValueError, match="no Hub copy; pass its local file with --data-files"):
        BENCHMARKS.get("sudoku").load()
    assert cli.main(["eval", "--model", "x/y", "--benchmark", "gsm8k", "--template", "d2"]) == 2
    assert "--template 'd2' is not a registered prompt template; did you mean 'd1'" in capsys.readouterr().err


@pytest.mark.parametrize("name, expected", [
    ("gsm8k", ("openai/gsm8k", "main", "test")), ("math500", ("HuggingFaceH4/MATH-500", None, "test")),
    ("humaneval", ("openai/openai_humaneval", None, "test")),
    ("mbpp", ("google-research-datasets/mbpp", "full", "test")),
    ("countdown", ("Jiayi-Pan/Countdown-Tasks-3to4", None, "train"))])
def test_benchmarks_load_from_the_hub_by_their_usual_ids(name, expected, monkeypatch):
    import datasets
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):  # no network here: record the request
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"task_id": f"t{i}", "unique_id": f"u{i}", "x": i} for i in range(3)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = BENCHMARKS.get(name).load(limit=2)
    assert calls == [expected] and len(rows) == 2 and rows[0]["id"].startswith(f"{name}/")


def test_eval_loads_the_model_in_auto_dtype_by_default_and_its_help_says_what_that_is(monkeypatch, capsys):
    seen = {}

    def load_model(name, **kwargs):  # stop before any weights load, keeping what eval asked for
        seen.update(kwargs)
        raise ValueError("stop")
    monkeypatch.setattr("unmask.rollouts.adapter.load_model", load_model)
    assert cli.main(["eval", "--model", str(LLADA_TINY), "--benchmark", "gsm8k", "--data-files", str(DATA["gsm8k"]),
                     "--limit", "1"]) == 2
    assert seen["dtype"] == "auto"  # bfloat16 on a GPU, float32 on CPU (tests/rollouts/test_loading.py)
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    assert "default auto: bfloat16 on a GPU (16 GB for an 8B model, not 32), float32 on CPU" in \
        " ".join(capsys.readouterr().out.split())


# ---- prompt styles (tasks/) as unmask eval applies them: stop strings cut before grading, prefilled turns

def test_eval_grades_the_cut_completion_and_keeps_the_raw_one(tmp_path):
    bench = dataclasses.replace(BENCHMARKS.get("gsm8k"), template="gsm8k_cot")
    rows = [{"id": "gsm8k/0", "question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}]
    raw = "2 + 3 = 5. The answer is 5.\n\nQ: What is 1 + 1?\nA: 1 + 1 = 2. The answer is 2."

    def generate(prompts, samples, seed):
        assert prompts[0][0]["content"].endswith("Q: What is 2 + 3?\nA:")
        return [Generation(str(prompts[0]), raw, 10, 1.0, 0.01)]

    summary = run_benchmark(bench, rows, generate, tmp_path, limited=True, log=lambda *a: None)
    assert {g: a["accuracy"] for g, a in summary["accuracy"].items()} == {"gsm8k_correct": 1.0, "lm_eval_strict": 1.0,
                                                                         "d1_parser": 0.0}  # d1 reads <answer> only
    (record,) = [json.loads(x) for x in (tmp_path / "gsm8k.samples.jsonl").read_text().splitlines()]
    assert record["completion"] == raw and record["graded_completion"] == "2 + 3 = 5. The answer is 5.\n\n"
    assert record["extracted"] == "5"


def test_humaneval_instruct_prefills_the_function_and_grades_its_body(tmp_path):
    from unmask.rollouts.tiny import make_tiny
    bench = dataclasses.replace(BENCHMARKS.get("humaneval"), template="humaneval_instruct")
    rows = bench.load(str(FIXTURES / "data" / "humaneval" / "HumanEval.jsonl.gz"), limit=2)
    messages = TEMPLATES.get("humaneval_instruct").render(rows[0], None)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    rendered = make_tiny("llada").format_prompt(messages)  # the chat template continues the assistant turn
    assert rendered.endswith(f"Here is the completed function:\n```python\n{rows[0]['prompt']}\n")

    def generate(prompts, samples, seed):  # the body, then the closing fence and chatter the stop removes
        return [Generation(str(p), r["canonical_solution"] + "```\n\nif True:\n    print('extra')", 10, 1.0, 0.01)
                for p, r in zip(prompts, rows)]

    summary = run_benchmark(bench, rows, generate, tmp_path, limited=True, log=lambda *a: None)
    assert summary["accuracy"]["pass"]["accuracy"] == 1.0
