"""The lm-evaluation-harness bridge (eval/lmeval.py), driven as a user drives it: lm-eval runs the tiny
LLaDA on a local generate task and a local multiple-choice task (tests/fixtures/lmeval), through
``lm_eval.simple_evaluate`` and through ``python -m unmask.eval.lmeval``. The model is random, so the
checks are invariants: generations equal ``unmask eval``'s engine's, log-likelihoods equal the ELBO
estimator's, the metrics equal what the logged responses imply, and the estimate is seeded."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("lm_eval")  # the optional extra, installed by `.[dev]`

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from unmask.eval.lmeval import UnmaskLM, cut_at_stop  # noqa: E402  (registers lm-eval's "unmask" model)
from unmask.eval.runner import engine_generator  # noqa: E402
from unmask.rollouts.adapter import load_model  # noqa: E402
from unmask.rollouts.engine import RolloutEngine  # noqa: E402
from unmask.rollouts.likelihood import elbo_loglikelihood, greedy_suffix  # noqa: E402
from unmask.rollouts.sampler_config import SamplerConfig  # noqa: E402

from ..paths import FIXTURES, LLADA_TINY, REPO  # noqa: E402

SAMPLER = {"max_completion_length": 16, "block_length": 8, "diffusion_steps": 16}
MODEL_ARGS = ("pretrained=tests/fixtures/llada-tiny,tokenizer=bytes,max_completion_length=16,block_length=8,"
              "diffusion_steps=16,mc_num=8,mc_batch_size=4")
TASKS = ["unmask_tiny_gen", "unmask_tiny_mc"]
# the README's offline command (tests/fixtures/lmeval's data_files are relative to the repository root)
README_COMMAND = (f"python -m unmask.eval.lmeval --model unmask --model_args {MODEL_ARGS} --tasks {','.join(TASKS)} "
                  f"--include_path tests/fixtures/lmeval --device cpu --batch_size 2")


@pytest.fixture(scope="module")
def adapter():
    return load_model(LLADA_TINY, tokenizer="bytes", device="cpu")


@pytest.fixture(scope="module")
def run():
    """One lm-eval run of both local tasks, as from Python (model by name, tasks through include_path)."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return simple_evaluate(model="unmask", model_args=MODEL_ARGS, tasks=TASKS, device="cpu", batch_size=2,
                               task_manager=TaskManager(include_path=str(FIXTURES / "lmeval"), include_defaults=False),
                               bootstrap_iters=0, log_samples=True)
    finally:
        os.chdir(cwd)


def test_importing_unmask_needs_no_lm_eval_and_the_bridge_says_how_to_get_it():
    code = ("import sys; import unmask, unmask.eval, unmask.eval.runner, unmask.rollouts.likelihood; "
            "assert 'lm_eval' not in sys.modules; sys.modules['lm_eval'] = None\n"
            "try:\n    import unmask.eval.lmeval\nexcept ImportError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "pip install 'unmask[lmeval]'" in done.stdout


def test_lm_eval_runs_both_local_tasks_with_their_metrics(run):
    assert run["config"]["model"] == "unmask" and run["config"]["sampler"]["block_length"] == 8
    gen, mc = run["results"]["unmask_tiny_gen"], run["results"]["unmask_tiny_mc"]
    assert [len(run["samples"][t]) for t in TASKS] == [4, 4]  # every document of the local files
    assert 0 <= gen["exact_match,none"] <= 1
    assert 0 <= mc["acc,none"] <= 1 and 0 <= mc["acc_norm,none"] <= 1


def test_generate_until_equals_unmask_evals_engine_cut_at_the_stop_strings(run, adapter):
    engine = RolloutEngine(adapter, SamplerConfig(**SAMPLER), chat=False)
    samples = run["samples"]["unmask_tiny_gen"]
    hits = 0
    for s in samples:
        (context, kwargs), = s["arguments"]
        text = engine_generator(engine)([context], 1, 0)[0].text  # what `unmask eval` decodes for this prompt
        for stop in kwargs["until"]:
            text = text.split(stop)[0]
        assert s["resps"][0][0] == text
        hits += text == s["target"]
    assert run["results"]["unmask_tiny_gen"]["exact_match,none"] == hits / len(samples)


def test_with_apply_chat_template_the_prompt_and_generation_are_unmask_evals_chat_ones(adapter):
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        out = simple_evaluate(model="unmask", model_args=MODEL_ARGS, tasks=TASKS[:1], device="cpu", limit=2,
                              task_manager=TaskManager(include_path=str(FIXTURES / "lmeval"), include_defaults=False),
                              apply_chat_template=True, bootstrap_iters=0, log_samples=True)
    finally:
        os.chdir(cwd)
    engine = RolloutEngine(adapter, SamplerConfig(**SAMPLER), chat=True)  # `unmask eval`: the chat template
    for s in out["samples"]["unmask_tiny_gen"]:
        (context, kwargs), = s["arguments"]
        message = f"Q: {s['doc']['question']}\nA:"
        assert context == adapter.format_prompt(message)
        text = engine_generator(engine)([message], 1, 0)[0].text
        for stop in kwargs["until"]:
            text = text.split(stop)[0]
        assert s["resps"][0][0] == text


def test_multiple_choice_scores_are_the_elbo_estimate_and_the_metrics_follow_from_them(run, adapter):
    samples = run["samples"]["unmask_tiny_mc"]
    acc = acc_norm = 0
    for s in samples:
        lls = []
        for (context, choice), ((ll, greedy),) in zip(s["arguments"], s["resps"]):
            ctx = list(context.encode())  # the byte tokenizer: ids are the UTF-8 bytes
            cont = list(choice.encode())
            want = elbo_loglikelihood(adapter, ctx, cont, mc_num=8, batch_size=4, generator=torch.Generator()
                                      .manual_seed(0))
            assert ll == pytest.approx(want, abs=1e-6) and ll < 0
            assert greedy == (greedy_suffix(adapter, ctx, len(cont)) == cont)
            lls.append(ll)
        choices = s["doc"]["choices"]
        acc += int(np.argmax(lls)) == s["target"]
        acc_norm += int(np.argmax(np.array(lls) / [len(c) for c in choices])) == s["target"]
    assert run["results"]["unmask_tiny_mc"]["acc,none"] == pytest.approx(acc / len(samples))
    assert run["results"]["unmask_tiny_mc"]["acc_norm,none"] == pytest.approx(acc_norm / len(samples))


def requests(kind, *args):
    return [Instance(kind, doc={}, arguments=a, idx=0) for a in args]


PAIRS = [("Q: Which is a colour?\nA:", " red"), ("Q: What is 2 + 3?\nA: ", "5 apples"), ("", "hello")]


@pytest.fixture(scope="module")
def lm():
    return get_model("unmask").create_from_arg_string(MODEL_ARGS.replace("tests/", f"{REPO}/tests/"),
                                                      {"device": "cpu"})


def test_loglikelihood_is_seeded_per_request_and_converges(lm):
    assert isinstance(lm, UnmaskLM)
    reqs = requests("loglikelihood", *PAIRS)
    first = lm.loglikelihood(reqs)
    assert lm.loglikelihood(reqs) == first  # deterministic for the seed
    assert lm.loglikelihood(reqs[::-1]) == first[::-1]  # and independent of the other requests
    # a trailing space of the context moves to the continuation; an empty context becomes EOS (no BOS here)
    assert lm.encode_pair(*PAIRS[1]) == (list(b"Q: What is 2 + 3?\nA:"), list(b" 5 apples"))
    assert lm.encode_pair(*PAIRS[2]) == ([lm.adapter.eos_id], list(b"hello"))
    spread = {}
    for mc_num in (4, 64):
        runs = [UnmaskLM.loglikelihood(_with(lm, seed=s, mc_num=mc_num), reqs[1:2])[0][0] for s in range(6)]
        spread[mc_num] = float(np.std(runs))
        assert len(set(runs)) > 1  # the seed matters for a multi-token continuation
    assert spread[64] < spread[4] / 2  # 16× the samples: about 4× less spread (an estimator, not noise)


def _with(lm, **settings):
    """The same loaded model with other Monte Carlo settings (no reload)."""
    clone = object.__new__(UnmaskLM)
    clone.__dict__.update(lm.__dict__, check_greedy=False, **settings)
    return clone


def test_loglikelihood_rolling_is_the_elbo_of_the_whole_text_after_eos(lm):
    text = "The cat sat."
    (got,) = lm.loglikelihood_rolling(requests("loglikelihood_rolling", (text,)))
    want = elbo_loglikelihood(lm.adapter, [lm.adapter.eos_id], list(text.encode()), mc_num=8, batch_size=4,
                              generator=torch.Generator().manual_seed(0))
    assert got == want and got < 0


def test_stop_strings_cut_at_the_earliest_and_bad_model_args_are_named():
    assert cut_at_stop("a\nb Q: c", ["Q:", "\n"]) == "a" and cut_at_stop("abc", None) == "abc"
    assert cut_at_stop("abc", "c") == "ab" and cut_at_stop("abc", ["", "x"]) == "abc"
    with pytest.raises(ValueError, match="unknown model_args \\['gen_length'\\]"):
        UnmaskLM(pretrained=str(LLADA_TINY), tokenizer="bytes", gen_length=256)
    with pytest.raises(ValueError, match="no 'auto' batch sizing"):
        UnmaskLM(pretrained=str(LLADA_TINY), tokenizer="bytes", batch_size="auto")
    with pytest.raises(ValueError, match="pretrained="):
        UnmaskLM()


def test_the_readme_command_runs_lm_eval_with_the_unmask_model(tmp_path, run):
    assert README_COMMAND in (REPO / "README.md").read_text()
    argv = [sys.executable, *shlex.split(README_COMMAND)[1:], "--output_path", str(tmp_path), "--log_samples"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = tmp_path.rglob("results_*.json")
    got = json.loads(results.read_text())["results"]
    assert got["unmask_tiny_mc"]["acc,none"] == run["results"]["unmask_tiny_mc"]["acc,none"]
    (gen,) = tmp_path.rglob("samples_unmask_tiny_gen_*.jsonl")
    texts = {(r := json.loads(line))["doc_id"]: r["resps"][0][0] for line in gen.read_text().splitlines()}
    assert texts == {s["doc_id"]: s["resps"][0][0] for s in run["samples"]["unmask_tiny_gen"]}
