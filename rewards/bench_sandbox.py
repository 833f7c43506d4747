"""Benchmark the code sandbox on HumanEval: run all canonical solutions, print/write timings as JSON.

``python -m unmask.rewards.bench_sandbox --data HUMANEVAL_JSONL_GZ [--workers N] [--out f.json]``, e.g. with
``--data tests/fixtures/data/humaneval/HumanEval.jsonl.gz``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time

from unmask.rewards.code import run_humaneval


def load_humaneval(path: str) -> list[dict]:
    """HumanEval problems from a ``.jsonl`` or ``.jsonl.gz`` file."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def bench(path: str, workers: int | None = None) -> dict:
    """Run every canonical solution in the sandbox; return counts and wall/per-sample times."""
    problems = load_humaneval(path)
    start = time.perf_counter()
    results = run_humaneval(problems, [p["canonical_solution"] for p in problems], max_workers=workers)
    total = time.perf_counter() - start
    durations = sorted(r.duration_s for r in results)
    return {
        "problems": len(problems),
        "passed": sum(r.passed for r in results),
        "failed": [p["task_id"] for p, r in zip(problems, results) if not r.passed],
        "wall_s": round(total, 3),
        "workers": workers or os.cpu_count(),
        "per_sample_median_s": round(durations[len(durations) // 2], 4) if durations else None,
        "per_sample_max_s": round(durations[-1], 4) if durations else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tests/fixtures/data/humaneval/HumanEval.jsonl.gz")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    report = bench(args.data, args.workers)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
