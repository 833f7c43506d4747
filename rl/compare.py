"""``unmask compare``: RL methods side by side — every method × seed from one starting model on one recipe
(``recipes/demo/rl.yaml`` by default), then one table and one plot of held-out accuracy.

Each run is the normal trainer (``rl/trainer.py``) on the recipe with ``algorithm.name``, ``training.seed``,
``model.name_or_path`` (``--start``) and ``training.output_dir`` (``OUT/<method>/seed<k>``) set, in its own
process (``python -m unmask.rl.compare RUN_DIR``), so its peak memory is its own (peak RSS; on a GPU also
``torch.cuda.max_memory_allocated``) and a crash stops one run only. Before its first step a run evaluates the
start model as the trainer evaluates (logged at step 0, outside best-checkpoint tracking and early stopping):
methods that decode differently (CJ-GRPO's ASS, JustGRPO's left to right) start from different accuracies; they
decode their own way, whatever the recipe's ``rollout.diffusion_steps`` (see :func:`method_recipe`;
``--method-override cj_grpo:rollout.diffusion_steps=N`` still sets it).

VRPO (``vrpo``) is not an RL method: its runs (``OUT/vrpo/seed<k>``) learn from preference pairs of the start model's
rollouts of the same prompts, with ``unmask dpo``'s trainer, evaluated the same way (``compare_vrpo.py``).

Resumable: a run writes ``compare-run.json`` when it finishes and is then never redone; an unfinished one
resumes from its last checkpoint (``training.resume_from=latest``). A run folder that holds a run of another
recipe (other overrides, start or steps) is refused rather than mixed in.

Writes to ``--out``: ``compare.json`` (every run and the per-method aggregates), ``compare.md`` (start, final
and best held-out accuracy as mean ± 95% CI over seeds (t distribution), seconds per step, peak memory),
``compare.csv`` (method, seed, step, accuracy at every evaluation) and, with matplotlib (``unmask[plot]``),
``compare.png`` (accuracy against steps, one curve per method with its 95% CI band over seeds).
"""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .recipes import RECIPES_DIR, read_yaml, to_yaml

RECIPE = RECIPES_DIR / "demo" / "rl.yaml"
RUN_RECIPE, RUN_RECORD = "compare-recipe.yaml", "compare-run.json"
FINISHED = "finished, not redone"
OFFLINE = "vrpo"  # not a registered RL method: learns from pairs of the start model's rollouts (compare_vrpo.py)
SET_BY_COMPARE = {"algorithm.name": "--methods", "training.seed": "--seeds", "model.name_or_path": "--start",
                  "training.output_dir": "--out", "training.resume_from": "(compare resumes unfinished runs)"}
# two-sided 95% Student t quantiles t_{0.975, df}, df = 1..30; above 30 the Cornish-Fisher expansion
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (3 decimals)."""
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_ci(values: Sequence[float]) -> dict:
    """Mean and the half-width of its 95% t interval over ``values`` (None with fewer than two)."""
    n = len(values)
    mean = statistics.fmean(values) if n else None
    half = t975(n - 1) * statistics.stdev(values) / math.sqrt(n) if n > 1 else None
    return {"mean": mean, "ci95": half, "n": n}


def method_recipe(recipe: str | Path, method: str, overrides: Sequence[str] = (), own: Sequence[str] = ()):
    """The validated recipe of one method: ``recipe`` with ``algorithm.name=method``, the shared ``overrides``,
    then the method's ``own``. A method whose decoding order is part of the method — ASS (CJ-GRPO, exactly
    floor(log2 L) steps) or left to right (JustGRPO, ``block_length: 1``, L steps) — decodes its own way: the
    recipe's and the shared overrides' ``rollout.diffusion_steps`` (and the keys the method sets: ``schedule``,
    ``block_length``) are dropped, and the method's defaults set them (its own overrides still do)."""
    from .algorithms.methods import method_defaults
    from .config import recipe_from_dict
    data = read_yaml(recipe)
    method_ = method_defaults(method)
    rollout = data.get("rollout") if isinstance(data, dict) else None
    own_order = method_ is not None and (method_.rollout.get("schedule") == "ass"
                                         or method_.rollout.get("block_length") == 1)
    if own_order and isinstance(rollout, dict):
        dropped = {"diffusion_steps"} | ({"schedule", "block_length"} & set(method_.rollout))
        data = {**data, "rollout": {k: v for k, v in rollout.items() if k not in dropped}}
        overrides = [o for o in overrides if o.split("=", 1)[0].strip() not in {f"rollout.{k}" for k in dropped}]
    name = [] if method == OFFLINE else [f"algorithm.name={method}"]  # VRPO rolls out with the recipe's own method
    return recipe_from_dict(data, [*name, *overrides, *own], source=os.fspath(recipe))


def run_compare(methods: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1, 2), recipe: str | Path = RECIPE,
                start: str | None = None, out: str | Path = "out/compare", overrides: Sequence[str] = (),
                method_overrides: dict[str, list[str]] | None = None,
                log: Callable[[str], None] | None = None, isolate: bool = True) -> dict:
    """Run (or resume, or skip when finished) every method × seed, then write and return the comparison.

    ``start``: the model every run starts from (default: the recipe's ``model.name_or_path``);
    ``method_overrides``: extra overrides for one method, e.g. ``{"gdpo": ["training.learning_rate=1e-4"]}``;
    ``isolate=False`` runs them in this process (faster to start; peak memory is then this process's so far)."""
    from .algorithms.methods import METHODS
    log = log or (lambda line: print(line, flush=True))
    methods, out = list(methods or [*METHODS.names(), OFFLINE]), Path(out)
    method_overrides = method_overrides or {}
    for given in [*overrides, *(o for extra in method_overrides.values() for o in extra)]:
        key = given.split("=", 1)[0].strip()
        if key in SET_BY_COMPARE:
            raise ValueError(f"override {given!r}: unmask compare sets {key} itself; use {SET_BY_COMPARE[key]}")
    unknown = sorted(set(method_overrides) - set(methods))
    if unknown:
        raise ValueError(f"method overrides for {', '.join(unknown)}, which --methods does not list ({methods})")
    if not seeds:
        raise ValueError("give at least one seed")
    fixed = [f"model.name_or_path={start}"] if start else []  # else the recipe's model
    runs = []  # validate every run's recipe before training any
    for method in methods:
        for seed in seeds:
            run_dir = out / method / f"seed{seed}"
            cfg = method_recipe(recipe, method, overrides, [*method_overrides.get(method, []), *fixed,
                                                            f"training.output_dir={run_dir}", f"training.seed={seed}",
                                                            "training.resume_from=latest"])
            check_evaluates(cfg)
            runs.append((method, seed, run_dir, cfg))
    for i, (method, seed, run_dir, cfg) in enumerate(runs, 1):
        state = prepare_run(run_dir, to_yaml(cfg))
        log(f"[{i}/{len(runs)}] {method} seed {seed}: {state} ({run_dir})")
        if state == FINISHED:
            continue
        if not isolate:
            run_one(run_dir)
            continue
        rc = subprocess.run([sys.executable, "-m", "unmask.rl.compare", str(run_dir)]).returncode
        if rc != 0:
            raise ChildProcessError(f"{method} seed {seed} failed (exit status {rc}; its output is above); "
                                    f"rerun the same command to resume it from its last checkpoint")
    result = summarize([read_run(method, seed, run_dir) for method, seed, run_dir, _ in runs])
    first = runs[0][3]
    result.update(recipe=str(recipe), start=first.model.name_or_path, seeds=list(seeds), methods=methods,
                  overrides=list(overrides), method_overrides=method_overrides, max_steps=first.training.max_steps)
    write_outputs(out, result, log)
    return result


def check_evaluates(cfg) -> None:
    """compare reads held-out accuracy from the run's metrics.jsonl: the recipe must evaluate and log to JSONL."""
    d, t = cfg.data, cfg.training
    if not (d.eval_dataset or d.eval_data_files or d.eval_benchmark) or not t.eval_steps:
        raise ValueError("unmask compare needs held-out evaluations: give data.eval_dataset (or data.eval_benchmark) "
                         "and training.eval_steps")
    if "jsonl" not in cfg.logging.report_to:
        raise ValueError("unmask compare reads each run's metrics.jsonl: logging.report_to must include jsonl")


def prepare_run(run_dir: Path, recipe_yaml: str) -> str:
    """Get ``run_dir`` ready for its process and say what it will do: nothing (finished), resume or start."""
    from .recipes import load_recipe
    from .training.checkpoint import checkpoints
    saved = run_dir / RUN_RECIPE  # the same recipe, or one a newer unmask reads the same (fields added since)
    if saved.is_file() and saved.read_text() != recipe_yaml and to_yaml(load_recipe(saved)) != recipe_yaml:
        raise ValueError(f"{run_dir} holds a run of another recipe (see its {RUN_RECIPE}); give another --out, or "
                         f"delete that folder to redo it")
    if (run_dir / RUN_RECORD).is_file():
        return FINISHED
    found = checkpoints(run_dir) if run_dir.is_dir() else []
    if found:
        return f"resuming from {found[-1].name}"
    for name in ("metrics.jsonl", "completions.jsonl"):  # a run that crashed before its first checkpoint
        (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(recipe_yaml)
    return "starting"


def run_one(run_dir: str | Path) -> dict:
    """One run, in its own process: the start evaluation (on a fresh run), training to the end, then the record
    of its timing and peak memory in ``run_dir/compare-run.json``. ``OUT/vrpo/`` runs are VRPO's (compare_vrpo.py)."""
    import torch
    run_dir = Path(run_dir)
    if run_dir.parent.name == OFFLINE:
        from .compare_vrpo import run_vrpo
        record = run_vrpo(run_dir)
    else:
        record = _run_rl(run_dir)
    record.update(peak_rss_mib=peak_rss_mib(), peak_cuda_mib=(round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
                  if torch.cuda.is_available() and torch.cuda.is_initialized() else None))
    tmp = run_dir / (RUN_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(run_dir / RUN_RECORD)  # atomic: the run counts as finished only once this exists
    return record


def _run_rl(run_dir: Path) -> dict:
    from .recipes import load_recipe
    from .trainer import Trainer
    trainer = Trainer(load_recipe(run_dir / RUN_RECIPE)).setup()
    if trainer.global_step == 0:  # logged at step 0 as every later evaluation; not tracked (no best checkpoint)
        trainer.evaluate()
    first_step, began = trainer.global_step, time.perf_counter()
    trainer.train()
    b = trainer.benchmark
    return {"metric": "eval/reward" if b is None else f"eval/{b.name}/{next(iter(b.graders))}",
            "resumed_at_step": first_step, "steps_timed": trainer.global_step - first_step,
            "train_seconds": round(time.perf_counter() - began, 3)}


def peak_rss_mib() -> float | None:
    """This process's peak resident memory in MiB (None where ``resource`` does not exist)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def read_run(method: str, seed: int, run_dir: Path) -> dict:
    """One finished run: its accuracy at every evaluation (step 0 is the start), final and best (after step 0)."""
    record = json.loads((run_dir / RUN_RECORD).read_text())
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    curve = [[m["step"], m[record["metric"]]] for m in map(json.loads, lines) if record["metric"] in m]
    trained = [value for step, value in curve if step > 0]
    steps = record["steps_timed"]
    return {"method": method, "seed": seed, "dir": str(run_dir), "curve": curve,
            "start": curve[0][1] if curve and curve[0][0] == 0 else None,
            "final": trained[-1] if trained else None, "final_step": curve[-1][0] if trained else None,
            "best": max(trained) if trained else None,
            "seconds_per_step": record["train_seconds"] / steps if steps else None, **record}


def summarize(runs: list[dict]) -> dict:
    """Per method: start, final and best accuracy and the gain (each seed's final − its start) as mean ± 95% CI over
    seeds, mean seconds per step, the largest peak memory, and the curve (mean ± CI at each step every seed
    evaluated)."""
    methods: dict[str, list[dict]] = {}
    for run in runs:
        methods.setdefault(run["method"], []).append(run)
    summary = []
    for method, group in methods.items():
        row: dict = {"method": method, "seeds": [r["seed"] for r in group]}
        for key in ("start", "final", "best"):
            row[key] = mean_ci([r[key] for r in group if r[key] is not None])
        row["gain"] = mean_ci([r["final"] - r["start"] for r in group
                               if r["final"] is not None and r["start"] is not None])
        rates = [r["seconds_per_step"] for r in group if r["seconds_per_step"] is not None]
        row["seconds_per_step"] = statistics.fmean(rates) if rates else None
        for key in ("peak_rss_mib", "peak_cuda_mib"):
            peaks = [r[key] for r in group if r.get(key) is not None]
            row[key] = max(peaks) if peaks else None
        by_step: dict[int, list[float]] = {}
        for r in group:
            for step, value in r["curve"]:
                by_step.setdefault(step, []).append(value)
        row["curve"] = [[step, *mean_ci(v).values()] for step, v in sorted(by_step.items()) if len(v) == len(group)]
        summary.append(row)
    return {"metric": runs[0]["metric"] if runs else None, "runs": runs, "summary": summary}


def fmt(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± " + ("n/a" if stat["ci95"] is None else f"{stat['ci95']:.3f}")


def table_markdown(result: dict) -> str:
    rows = result["summary"]
    gpu = any(r["peak_cuda_mib"] is not None for r in rows)
    memory = "peak GPU MiB (allocated)" if gpu else "peak RSS MiB"
    lines = [f"| method | seeds | start | final | best | gain | s/step | {memory} |", "|---" * 8 + "|"]
    for r in rows:
        rate = "n/a" if r["seconds_per_step"] is None else f"{r['seconds_per_step']:.2f}"
        peak = r["peak_cuda_mib" if gpu else "peak_rss_mib"]
        lines.append(f"| `{r['method']}` | {len(r['seeds'])} | {fmt(r['start'])} | {fmt(r['final'])} | "
                     f"{fmt(r['best'])} | {fmt(r['gain'])} | {rate} | {'n/a' if peak is None else f'{peak:.0f}'} |")
    lines += ["", f"held-out accuracy (`{result['metric']}`) as mean ± 95% CI over seeds {result['seeds']} "
                  f"(t distribution; n/a with one seed): start = the start model, decoded as the method decodes; "
                  f"final = the last evaluation; best = the best evaluation after step 0; gain = each seed's final − "
                  f"its start. "
                  f"Recipe {result['recipe']}, start {result['start']}, {result['max_steps']} steps"
                  + (f", overrides {' '.join(result['overrides'])}" if result["overrides"] else "") + "."]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, result: dict) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("method", "seed", "step", "heldout_accuracy"))
        for run in result["runs"]:
            writer.writerows((run["method"], run["seed"], step, value) for step, value in run["curve"])
    return path


def plot(path: Path, result: dict) -> Path | None:
    """Accuracy against steps, one line per method with its 95% CI band; None (nothing drawn) without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (a missing matplotlib stops here)
    except ImportError:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(6.4, 4.0), dpi=100)  # the object API: no pyplot, no global backend
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for row in result["summary"]:
        steps = [p[0] for p in row["curve"]]
        means = [p[1] for p in row["curve"]]
        line, = axes.plot(steps, means, marker="o", linewidth=1.5, label=row["method"])
        band = [(s, m, h) for s, m, h, _ in row["curve"] if h is not None]
        if band:
            axes.fill_between([b[0] for b in band], [b[1] - b[2] for b in band], [b[1] + b[2] for b in band],
                              color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set(title=f"unmask compare: mean ± 95% CI over {len(result['seeds'])} seed(s)", xlabel="RL step",
             ylabel=f"held-out accuracy ({result['metric']})")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def write_outputs(out: Path, result: dict, log: Callable[[str], None]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    table = table_markdown(result)
    (out / "compare.md").write_text(table)
    written = [out / "compare.json", out / "compare.md", write_csv(out / "compare.csv", result)]
    png = plot(out / "compare.png", result)
    log(table)
    if png is None:
        log('matplotlib is not installed, so no compare.png: pip install "unmask[plot]" draws it')
    else:
        written.append(png)
    log(f"written to {out}/: " + ", ".join(p.name for p in written))
    return written


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="RL methods × seeds from one start on one recipe (default: the demo's): "
                                       "a table and a plot of held-out accuracy; resumable")
    p.add_argument("overrides", nargs="*", help="overrides of the recipe for every run, e.g. training.max_steps=50")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names (default: every registered method, and vrpo)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--recipe", default="recipes/demo/rl.yaml", help="RL recipe (default recipes/demo/rl.yaml)")
    p.add_argument("--start", default=None, metavar="MODEL",
                   help="the model every run starts from (default: the recipe's model.name_or_path; for the demo "
                        "recipe out/demo/sft, or tests/fixtures/demo-sft: the same start on every machine)")
    p.add_argument("--out", default="out/compare", help="output folder (default out/compare); runs in OUT/METHOD/seedK")
    p.add_argument("--method-override", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="an override for one method only (repeatable), e.g. gdpo:training.learning_rate=1e-4")
    p.set_defaults(func=main_cli)


def main_cli(args) -> int:
    per_method: dict[str, list[str]] = {}
    for given in args.method_override:
        method, sep, override = given.partition(":")
        if not sep or "=" not in override:
            raise ValueError(f"--method-override {given!r}: write METHOD:KEY=VALUE, "
                             f"e.g. gdpo:training.learning_rate=1e-4")
        per_method.setdefault(method.strip(), []).append(override)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2") from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    run_compare(methods, seeds, args.recipe, args.start, args.out, args.overrides, per_method)
    return 0


if __name__ == "__main__":
    run_one(sys.argv[1])
