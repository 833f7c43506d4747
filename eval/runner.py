"""Run a benchmark: generate, score through ``rewards``, write one JSONL line per sample and a summary.

Each sample's line holds its id, sample index, prompt, raw completion, extracted answer, gold, every
grader's verdict, sampler settings, seed, NFE, seconds and the dataset row (so that ``unmask score`` can
grade the file again). The run is resumable: samples already in the JSONL are not generated again. The
summary is :mod:`eval.report`'s, shared with ``unmask score``.

A generator is any callable ``(prompt messages, samples per prompt, seed) -> [Generation]``: the model's
rollout engine (:func:`engine_generator`) or, in tests, a stub.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from unmask.tasks import TEMPLATES, Benchmark

from .report import sample_record, summarize, write_summary


@dataclass
class Generation:
    prompt: str
    text: str
    tokens: int       # completion length up to and including EOS
    nfe: float        # forward passes attributed to this sample
    seconds: float
    completion_ids: list[int] | None = None  # the `tokens` ids (what a reward's `completion_ids` holds)


Generator = Callable[[list, int, int], list[Generation]]


def engine_generator(engine, trajectories: Path | None = None, keep: int = 0) -> Generator:
    """Generate with a :class:`rollouts.engine.RolloutEngine` or a DiffusionGemma ``BlockDiffusionEngine`` (rows:
    prompt-major, samples consecutive). ``keep`` > 0: the first ``keep`` rollouts' trajectory records and their HTML
    replay (``unmask view``) are written to ``trajectories`` (masked diffusion)."""
    from unmask.rollouts.diffusion_gemma_engine import BlockDiffusionEngine
    if isinstance(engine, BlockDiffusionEngine):
        return block_diffusion_generator(engine)
    saved = 0

    def generate(prompts: list, samples: int, seed: int) -> list[Generation]:
        nonlocal saved
        traj = engine.rollout(prompts, num_generations=samples, seed=seed)
        if trajectories is not None and saved < keep:
            from unmask.rollouts.viewer import write_view
            trajectories.mkdir(parents=True, exist_ok=True)
            path = trajectories / f"rollouts-{saved}.safetensors"
            traj.take(list(range(min(keep - saved, traj.batch_size)))).save(path)
            write_view(path, path.with_suffix(".html"), engine.adapter.tokenizer)
            saved += min(keep - saved, traj.batch_size)
        adapter, n = engine.adapter, traj.batch_size
        lengths = traj.completion_mask.sum(1).tolist()
        return [Generation(adapter.tokenizer.decode(p[m.bool()].tolist()), adapter.decode_completion(c), int(k),
                           traj.nfe / n, traj.seconds / n, c[:k].tolist())
                for p, m, c, k in zip(traj.prompt_ids, traj.prompt_mask, traj.completion_ids, lengths)]
    return generate


def block_diffusion_generator(engine) -> Generator:
    def generate(prompts: list, samples: int, seed: int) -> list[Generation]:
        start = time.perf_counter()
        record = engine.rollout(prompts, num_generations=samples, seed=seed)
        n, seconds = record.sequences.shape[0], time.perf_counter() - start
        return [Generation(engine.tokenizer.decode(p[m].tolist()), text, len(c), record.nfe / n, seconds / n, c)
                for p, m, c, text in zip(record.prompt_ids, record.prompt_mask, engine.completions(record),
                                         engine.texts(record))]
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
        # a progress bar on a terminal only (disable=None: off when stderr is not a TTY, e.g. in logs and tests)
        for b in tqdm(range(0, len(todo), batch_size), desc=f"{bench.name} ({len(todo)} problems)", unit="batch",
                      disable=None):
            batch = todo[b: b + batch_size]
            gens = generate([template.render(r, system_prompt) for r in batch], num_samples, seed + b)
            texts = [template.cut(g.text) for g in gens]  # the style's stop strings (lm-eval's `until`)
            expanded = [r for r in batch for _ in range(num_samples)]
            verdicts = bench.score([g.prompt for g in gens], texts, expanded)
            for i, (row, gen, text, verdict) in enumerate(zip(expanded, gens, texts, verdicts)):
                key = (row["id"], i % num_samples)
                if key in done:
                    continue
                record = sample_record(row["id"], key[1], gen.prompt, gen.text, text, bench.extract(text, row),
                                       bench.gold(row), verdict, row, tokens=gen.tokens, nfe=gen.nfe,
                                       seconds=gen.seconds, seed=seed + b, sampler=settings or {})
                f.write(json.dumps(record, default=str) + "\n")
                done[key] = record
            f.flush()
            finished = min(b + batch_size, len(todo))
            rate = (time.time() - start) / finished
            log(f"{bench.name}: {finished}/{len(todo)} problems, ETA {rate * (len(todo) - finished) / 60:.1f} min")
    summary = summarize(bench, [r["id"] for r in rows], done, num_samples, total or len(rows), limited, command,
                        settings or {})
    write_summary(summary, out_dir)
    return summary
