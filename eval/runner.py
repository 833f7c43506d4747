"""Run a benchmark: generate, score through ``rewards``, write one JSONL line per sample and a summary.

Each sample's line holds its id, sample index, prompt, raw completion, extracted answer, gold, every
grader's verdict, sampler settings, seed, NFE and seconds. The run is resumable: samples already in the
JSONL are not generated again. The summary (JSON and a Markdown table) gives accuracy with a 95%
confidence interval, coverage (problems scored / problems in the set), mean completion length,
tokens/s, pass@k for k ≤ the samples per problem, and the command and settings — and it refuses to
state a final score when coverage is incomplete and no ``--limit`` was asked for.

A generator is any callable ``(prompt messages, samples per prompt, seed) -> [Generation]``: the model's
rollout engine (:func:`engine_generator`) or, in tests, a stub.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from rl.data import TEMPLATES

from .benchmarks import Benchmark
from .metrics import pass_at_k, wilson_interval


@dataclass
class Generation:
    prompt: str
    text: str
    tokens: int       # completion length up to and including EOS
    nfe: float        # forward passes attributed to this sample
    seconds: float


Generator = Callable[[list, int, int], list[Generation]]


def engine_generator(engine) -> Generator:
    """Generate with a :class:`rollouts.engine.RolloutEngine` (rows: prompt-major, samples consecutive)."""
    def generate(prompts: list, samples: int, seed: int) -> list[Generation]:
        traj = engine.rollout(prompts, num_generations=samples, seed=seed)
        adapter, n = engine.adapter, traj.batch_size
        lengths = traj.completion_mask.sum(1).tolist()
        return [Generation(adapter.tokenizer.decode(p[m.bool()].tolist()), adapter.decode_completion(c), int(k),
                           traj.nfe / n, traj.seconds / n)
                for p, m, c, k in zip(traj.prompt_ids, traj.prompt_mask, traj.completion_ids, lengths)]
    return generate


def read_done(path: Path) -> dict[tuple[str, int], dict]:
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that sample is simply redone
                continue
            done[(record["id"], record["sample"])] = record
    return done


def run_benchmark(bench: Benchmark, rows: Sequence[dict], generate: Generator, out_dir: Path, *,
                  num_samples: int = 1, batch_size: int = 16, seed: int = 0, settings: dict | None = None,
                  total: int | None = None, limited: bool = False, command: str = "",
                  system_prompt: str | None = None, log=print) -> dict:
    """Evaluate ``rows`` of ``bench``; ``total`` is the size of the whole set (for coverage)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / f"{bench.name}.samples.jsonl"
    done = read_done(samples_path)
    if samples_path.is_file() and not samples_path.read_text(encoding="utf-8").endswith("\n"):
        # a kill cut the last line: keep the complete records only, so new lines start on their own
        samples_path.write_text("".join(json.dumps(r) + "\n" for r in done.values()), encoding="utf-8")
    template = TEMPLATES.get(bench.template)
    todo = [r for r in rows if any((r["id"], k) not in done for k in range(num_samples))]
    if done:
        log(f"{bench.name}: resuming, {len(rows) - len(todo)} of {len(rows)} problems already done")
    start = time.time()
    with samples_path.open("a", encoding="utf-8") as f:
        for b in range(0, len(todo), batch_size):
            batch = todo[b: b + batch_size]
            gens = generate([template.render(r, system_prompt) for r in batch], num_samples, seed + b)
            texts = [template.cut(g.text) for g in gens]  # the style's stop strings (lm-eval's `until`)
            expanded = [r for r in batch for _ in range(num_samples)]
            verdicts = bench.score([g.prompt for g in gens], texts, expanded)
            for i, (row, gen, text, verdict) in enumerate(zip(expanded, gens, texts, verdicts)):
                key = (row["id"], i % num_samples)
                if key in done:
                    continue
                record = {"id": row["id"], "sample": key[1], "prompt": gen.prompt, "completion": gen.text,
                          **({"graded_completion": text} if text != gen.text else {}),
                          "extracted": bench.extract(text, row), "gold": bench.gold(row),
                          "correct": next(iter(verdict.values())), "graders": verdict, "tokens": gen.tokens,
                          "nfe": gen.nfe, "seconds": gen.seconds, "seed": seed + b, "sampler": settings or {}}
                f.write(json.dumps(record) + "\n")
                done[key] = record
            f.flush()
            finished = min(b + batch_size, len(todo))
            rate = (time.time() - start) / finished
            log(f"{bench.name}: {finished}/{len(todo)} problems, ETA {rate * (len(todo) - finished) / 60:.1f} min")
    summary = summarize(bench, [r["id"] for r in rows], done, num_samples, total or len(rows), limited, command,
                        settings or {})
    (out_dir / f"{bench.name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"{bench.name}.summary.md").write_text(markdown(summary), encoding="utf-8")
    return summary


def summarize(bench: Benchmark, ids: list[str], done: dict, num_samples: int, total: int, limited: bool,
              command: str, settings: dict) -> dict:
    per_problem = {i: [done[(i, k)] for k in range(num_samples) if (i, k) in done] for i in ids}
    scored = {i: recs for i, recs in per_problem.items()
              if len(recs) == num_samples and all(r["correct"] is not None for r in recs)}
    n = len(scored)
    graders = list(bench.graders)
    accuracy = {}
    for g in graders:
        values = [sum(float(r["graders"][g] or 0.0) for r in recs) / num_samples for recs in scored.values()]
        mean = sum(values) / n if n else 0.0
        accuracy[g] = {"accuracy": mean, "ci95": wilson_interval(mean * n, n)}
    passk = {}
    for k in (1, 5, 10, 100):
        if k <= num_samples and n:
            passk[f"pass@{k}"] = sum(pass_at_k(num_samples, sum(int(r["correct"] == 1.0) for r in recs), k)
                                     for recs in scored.values()) / n
    records = [r for recs in scored.values() for r in recs]
    seconds = sum(r["seconds"] for r in records)
    complete = n == total
    return {
        "benchmark": bench.name, "scored": n, "total": total, "coverage": n / total if total else 0.0,
        "complete": complete, "limited": limited, "final": complete or limited,
        "samples_per_problem": num_samples, "primary_grader": graders[0], "accuracy": accuracy, **passk,
        "mean_completion_tokens": sum(r["tokens"] for r in records) / max(len(records), 1),
        "tokens_per_second": sum(r["tokens"] for r in records) / seconds if seconds else None,
        "mean_nfe": sum(r["nfe"] for r in records) / max(len(records), 1),
        "command": command, "settings": settings,
    }


def markdown(summary: dict) -> str:
    lines = [f"# {summary['benchmark']}", ""]
    if not summary["final"]:
        lines += [f"**INCOMPLETE: {summary['scored']} of {summary['total']} problems scored — no final score "
                  f"is reported.** Resume the run (same command) to finish it.", ""]
    lines += ["| grader | accuracy | 95% CI |", "|---|---|---|"]
    for g, a in summary["accuracy"].items():
        lo, hi = a["ci95"]
        shown = f"{100 * a['accuracy']:.2f}" if summary["final"] else "—"
        lines.append(f"| {g} | {shown} | [{100 * lo:.1f}, {100 * hi:.1f}] |")
    lines += ["", f"coverage {summary['scored']}/{summary['total']}"
              + (" (limited run)" if summary["limited"] else ""),
              f"samples per problem {summary['samples_per_problem']}"
              + "".join(f", {k} {100 * v:.2f}" for k, v in summary.items() if k.startswith("pass@")),
              f"mean completion length {summary['mean_completion_tokens']:.1f} tokens, mean NFE {summary['mean_nfe']:.1f}"
              + (f", {summary['tokens_per_second']:.1f} tokens/s" if summary["tokens_per_second"] else ""),
              "", f"command: `{summary['command']}`", ""]
    return "\n".join(lines)
