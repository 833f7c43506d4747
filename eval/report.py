"""Per-sample records and benchmark summaries, one format for ``unmask eval`` and ``unmask score``.

A summary gives, for every grader of the benchmark, accuracy with a 95% Wilson interval over the problems
that grader could score, and what the grader is: the primary one (the first), or the one that reproduces a
published table (``Benchmark.reproduces``). Around it: coverage (problems scored / problems in the set),
pass@k for k ≤ the samples per problem, mean completion length, NFE and tokens/s where the records carry
them, and the command and settings. It refuses to state a final score when coverage is incomplete and the
subset was not asked for (``--limit``, ``--partial``).
"""
from __future__ import annotations

import json
from pathlib import Path

from unmask.tasks import Benchmark

from .metrics import pass_at_k, wilson_interval


def sample_record(id: str, sample: int, prompt: str, completion: str, graded: str, extracted, gold,
                  verdict: dict, row: dict, **measured) -> dict:
    """One line of ``<benchmark>.samples.jsonl``: the raw ``completion``, the ``graded`` text when a stop string
    cut it, every grader's ``verdict`` (the first is ``correct``), the dataset ``row`` (so the file can be
    re-graded) and what generation ``measured`` (tokens, nfe, seconds, sampler, ...)."""
    return {"id": id, "sample": sample, "prompt": prompt, "completion": completion,
            **({"graded_completion": graded} if graded != completion else {}), "extracted": extracted,
            "gold": gold, "correct": next(iter(verdict.values())), "graders": verdict, **measured, "row": row}


def summarize(bench: Benchmark, ids: list[str], done: dict, num_samples: int, total: int, limited: bool,
              command: str, settings: dict) -> dict:
    """The summary of ``done`` (``{(id, sample): record}``) over the problems ``ids`` of a set of ``total``."""
    per_problem = {i: [done[(i, k)] for k in range(num_samples) if (i, k) in done] for i in ids}
    present = [recs for recs in per_problem.values() if len(recs) == num_samples]
    graders = list(bench.graders)
    accuracy = {}
    for g in graders:
        values = [sum(float(r["graders"][g]) for r in recs) / num_samples for recs in present
                  if all(r["graders"].get(g) is not None for r in recs)]
        n = len(values)
        mean = sum(values) / n if n else 0.0
        accuracy[g] = {"accuracy": mean, "ci95": wilson_interval(mean * n, n), "scored": n,
                       "role": "primary" if g == graders[0] else bench.reproduces.get(g, "")}
    scored = [recs for recs in present if all(r["correct"] is not None for r in recs)]
    n = len(scored)
    passk = {}
    for k in (1, 5, 10, 100):
        if k <= num_samples and n:
            passk[f"pass@{k}"] = sum(pass_at_k(num_samples, sum(int(r["correct"] == 1.0) for r in recs), k)
                                     for recs in scored) / n
    records = [r for recs in scored for r in recs]
    complete = n == total
    return {
        "benchmark": bench.name, "scored": n, "total": total, "coverage": n / total if total else 0.0,
        "complete": complete, "limited": limited, "final": complete or limited,
        "samples_per_problem": num_samples, "primary_grader": graders[0], "accuracy": accuracy, **passk,
        "mean_completion_tokens": _mean(records, "tokens"), "tokens_per_second": _rate(records),
        "mean_nfe": _mean(records, "nfe"), "command": command, "settings": settings,
    }


def _mean(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _rate(records: list[dict]) -> float | None:
    timed = [r for r in records if r.get("tokens") is not None and r.get("seconds")]
    seconds = sum(r["seconds"] for r in timed)
    return sum(r["tokens"] for r in timed) / seconds if seconds else None


def markdown(summary: dict) -> str:
    lines = [f"# {summary['benchmark']}", ""]
    if not summary["final"]:
        lines += [(f"**INCOMPLETE: {summary['scored']} of {summary['total']} problems scored — no final score "
                   f"is reported.** Resume the run (same command) to finish it, or score the subset on purpose "
                   f"(`unmask score --partial`)."), ""]
    lines += ["| grader | accuracy | 95% CI | problems | what it is |", "|---|---|---|---|---|"]
    for g, a in summary["accuracy"].items():
        lo, hi = a["ci95"]
        shown = f"{100 * a['accuracy']:.2f}" if summary["final"] else "—"
        role = a.get("role") or ""
        lines.append(f"| {g} | {shown} | [{100 * lo:.1f}, {100 * hi:.1f}] | {a.get('scored', summary['scored'])} "
                     f"| {'reproduces ' + role if role and role != 'primary' else role} |")
    lines += ["", f"coverage {summary['scored']}/{summary['total']}"
              + (" (a subset, by request)" if summary["limited"] else ""),
              f"samples per problem {summary['samples_per_problem']}"
              + "".join(f", {k} {100 * v:.2f}" for k, v in summary.items() if k.startswith("pass@"))]
    if summary["mean_completion_tokens"] is not None:
        lines.append(f"mean completion length {summary['mean_completion_tokens']:.1f} tokens"
                     + (f", mean NFE {summary['mean_nfe']:.1f}" if summary["mean_nfe"] is not None else "")
                     + (f", {summary['tokens_per_second']:.1f} tokens/s" if summary["tokens_per_second"] else ""))
    lines += ["", f"command: `{summary['command']}`", ""]
    return "\n".join(lines)


def write_summary(summary: dict, out_dir: Path) -> None:
    """``<benchmark>.summary.json`` and ``<benchmark>.summary.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{summary['benchmark']}.summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                                                  encoding="utf-8")
    (out_dir / f"{summary['benchmark']}.summary.md").write_text(markdown(summary), encoding="utf-8")
