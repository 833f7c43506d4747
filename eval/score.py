"""``unmask score``: grade completions already written — by ``unmask eval``, by d1, by lm-eval — with every
grader of their benchmark, no model needed.

    unmask score out/eval/llada/gsm8k.samples.jsonl
    unmask score 'eval_baselines/countdown_instruct_256_128_*_generations.json'
    unmask score 'eval_baselines/gsm8k_instruct_256_128_*_generations.json' --partial   # d1: 1130 of 1319
    unmask score lm-eval-out/samples_gsm8k_cot_2025-01-01T00-00-00.jsonl

Several files (or quoted glob patterns) are the shards of one benchmark, scored together. The benchmark comes
from the files (``unmask eval``'s ids; d1's and lm-eval's file names) unless ``--benchmark`` names it. The
summary is ``unmask eval``'s (:mod:`eval.report`): the primary grader first and beside it the graders behind
published numbers, each with its 95% interval, and coverage against the benchmark's standard test set — an
incomplete set gets no final score unless ``--partial`` says the subset is meant. ``--out`` receives the
summary and the re-graded samples (``unmask eval``'s JSONL, so it can be scored again).
"""
from __future__ import annotations

import argparse
import glob
import json
import shlex
import sys
from pathlib import Path

from tqdm.auto import tqdm

from unmask.tasks import BENCHMARKS, Benchmark

from .formats import FORMATS, Completion, benchmark_of, read, sniff
from .report import sample_record, summarize, write_summary

GRADE_CHUNK = 256  # completions graded per call of the benchmark's graders

def expand(patterns: list[str]) -> list[Path]:
    """The files named by ``patterns`` (globs expanded, sorted, each file once)."""
    paths: dict[Path, Path] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise ValueError(f"{pattern!r} matches no file")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise ValueError(f"{match}: no such file")
            paths.setdefault(path.resolve(), path)
    return list(paths.values())


def load_completions(paths: list[Path], benchmark: str | None = None) -> tuple[Benchmark, list[Completion]]:
    """The benchmark the files hold (``benchmark`` when given) and their completions, checked to be one set."""
    formats = {path: sniff(path) for path in paths}
    if benchmark is None:
        found = {path: benchmark_of(path, fmt, BENCHMARKS.names()) for path, fmt in formats.items()}
        unknown = [str(p) for p, name in found.items() if name is None]
        if unknown:
            raise ValueError(f"cannot tell which benchmark {', '.join(unknown)} holds (d1's and lm-eval's file names "
                             f"start with it); pass --benchmark, one of {', '.join(BENCHMARKS.names())}")
        names = sorted(set(found.values()))
        if len(names) > 1:
            raise ValueError(f"the files hold different benchmarks ({', '.join(names)}); score one at a time")
        benchmark = names[0]
    bench = BENCHMARKS.get(benchmark, "--benchmark")
    completions, where = [], {}
    for path, fmt in formats.items():
        for c in read(path, fmt, bench.name):
            if (c.id, c.sample) in where:
                raise ValueError(f"{c.id} (sample {c.sample}) is in both {where[c.id, c.sample]} and {path}: the "
                                 f"files overlap; score each run on its own")
            where[c.id, c.sample] = path
            completions.append(c)
    if not completions:
        raise ValueError(f"{', '.join(map(str, paths))}: no completions in these files")
    return bench, completions


def grade(bench: Benchmark, completions: list[Completion]) -> list[dict]:
    """One ``unmask eval`` record per completion, with every grader's verdict."""
    rows = [c.row for c in completions]
    verdicts = []
    with tqdm(total=len(completions), desc=f"grading {bench.name}", unit="completion", disable=None) as bar:
        for start in range(0, len(completions), GRADE_CHUNK):  # chunks, so the bar moves (graders take lists)
            chunk = completions[start:start + GRADE_CHUNK]
            verdicts += bench.score([c.prompt for c in chunk], [c.text for c in chunk], rows[start:start + len(chunk)])
            bar.update(len(chunk))
    if all(v[next(iter(bench.graders))] is None for v in verdicts):
        raise ValueError(f"{bench.name}'s graders found no gold answer in {completions[0].source} (its rows hold "
                         f"{', '.join(sorted(rows[0])) or 'nothing'}); is --benchmark right?")
    records = []
    for c, verdict in zip(completions, verdicts):
        try:
            gold, extracted = bench.gold(c.row), bench.extract(c.text, c.row)
        except (KeyError, TypeError, ValueError):
            gold, extracted = None, None
        raw = c.raw if c.raw is not None else c.text
        records.append(sample_record(c.id, c.sample, c.prompt, raw, c.text, extracted, gold, verdict, c.row,
                                     tokens=c.tokens, nfe=c.nfe, seconds=c.seconds, sampler=c.settings,
                                     source=c.source))
    return records


def summarize_records(bench: Benchmark, records: list[dict], *, partial: bool = False, command: str = "",
                      settings: dict | None = None) -> dict:
    """:func:`eval.report.summarize` of graded records, over the benchmark's standard test set where it has one."""
    done = {(r["id"], r["sample"]): r for r in records}
    ids = list(dict.fromkeys(r["id"] for r in records))
    samples = 1 + max(r["sample"] for r in records)
    total = bench.size if bench.size and len(ids) <= bench.size else len(ids)
    return summarize(bench, ids, done, samples, total, partial and len(ids) < total, command, settings or {})


def score_files(patterns: list[str], benchmark: str | None = None, *, out: Path | None = None, partial: bool = False,
                command: str = "") -> dict:
    """Grade the files ``patterns`` name; the summary (written to ``out`` with the graded samples, when given)."""
    paths = expand(patterns)
    bench, completions = load_completions(paths, benchmark)
    records = grade(bench, completions)
    settings = {"files": [str(p) for p in paths], **completions[0].settings}
    summary = summarize_records(bench, records, partial=partial, command=command, settings=settings)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{bench.name}.samples.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in records),
                                                         encoding="utf-8")
        write_summary(summary, out)
    return summary


def add_score_parser(sub) -> None:
    p = sub.add_parser("score", help="grade existing completions (unmask eval's, d1's, lm-eval's) with every grader",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help=f"{FORMATS}; several files or quoted globs: one set")
    p.add_argument("--benchmark", default=None, help="the benchmark the files hold (default: from the files)")
    p.add_argument("--partial", action="store_true",
                   help="the files are a subset of the set on purpose: state a final score anyway")
    p.add_argument("--out", default=None, help="folder for the summary (JSON, Markdown) and the re-graded samples")
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    command = "unmask " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    s = score_files(args.files, args.benchmark, out=None if args.out is None else Path(args.out),
                    partial=args.partial, command=command)
    coverage = f"{s['scored']}/{s['total']} problems" + (", a subset by request" if s["limited"] else "")
    print(f"{s['benchmark']}: {coverage}, {s['samples_per_problem']} sample(s) each")
    for name, a in s["accuracy"].items():
        lo, hi = a["ci95"]
        shown = f"{100 * a['accuracy']:6.2f} [{100 * lo:.1f}, {100 * hi:.1f}]" if s["final"] else "     —"
        role = a["role"] if a["role"] == "primary" else f"reproduces {a['role']}" if a["role"] else ""
        print(f"  {name:<18} {shown}  over {a['scored']}  {role}")
    if not s["final"]:
        print(f"no final score: {s['scored']} of the {s['total']} problems of {s['benchmark']} are here; pass "
              f"--partial to score this subset", file=sys.stderr)
    if args.out:
        print(f"-> {args.out}")
    return 0
