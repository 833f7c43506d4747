"""``unmask demo``: the main job on a laptop CPU — SFT a tiny LLaDA from scratch, then RL, then eval.

    1. SFT   ``recipes/demo/sft.yaml`` through ``unmask sft``'s trainer into ``out/sft``: a random 0.43M-parameter
             LLaDA (written to ``out/sft/init``) on the bundled 2-digit addition task, LLaDA's masked-diffusion
             loss with 1/t weighting, for ``--sft-steps`` steps; the trainer leaves the final model in ``out/sft``
             itself (``--sft-model DIR`` skips this stage: the model SFT'd before, such as the checked-in
             ``tests/fixtures/demo-sft``, which is the same on every machine, is copied to ``out/sft``);
    2. RL    ``recipes/demo/rl.yaml`` (diffu-GRPO; any method by override) through the normal trainer from
             ``out/sft`` into ``out/rl`` (the final model lands in ``out/rl`` itself), rewarded by exact answer
             match, evaluated greedily on held-out questions every few steps;
    3. eval  held-out accuracy of the random, the SFT'd (``out/sft``) and the RL'd model (``out/rl``, as saved),
             with the same 200 held-out questions, greedy sampler and grader as the trainer's evaluations:
             ``answer_tag_exact``, the reward the RL stage trains on (``rl.sft.task_scores``).

Writes ``summary.json``, ``summary.md``, ``curve.csv`` and, with matplotlib (``unmask[plot]``), ``curve.png``
(training reward and held-out accuracy against RL steps; ``rl/curves.py``) to the output folder.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from unmask.tasks.synthetic import SyntheticExample

from .curves import write_curves
from .recipes import RECIPES_DIR, load_recipe, load_sft_recipe
from .sft import SftTrainer, held_out_accuracy, random_init

RECIPE = RECIPES_DIR / "demo" / "rl.yaml"
SFT_RECIPE = RECIPE.with_name("sft.yaml")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def run_demo(out: str | Path = "out/demo", overrides: Sequence[str] = (), sft_steps: int = 5000, seed: int = 0,
             recipe: str | Path = RECIPE, log: Callable[[str], None] | None = None,
             sft_model: str | Path | None = None) -> dict:
    """Run SFT → RL → eval into ``out``; return the summary (also written as JSON and Markdown).

    ``sft_model``: start RL from this SFT'd model (copied to ``out/sft``) instead of running the SFT stage.
    """
    log = log or (lambda line: print(line, flush=True))
    out = Path(out)
    sft_dir, rl_dir = out / "sft", out / "rl"  # each run's output_dir, its final model at the folder's root
    cfg = load_recipe(recipe, [f"model.name_or_path={sft_dir}", f"training.output_dir={rl_dir}",
                               f"training.seed={seed}", *overrides])
    if rl_dir.exists() and any(rl_dir.iterdir()):
        raise ValueError(f"{rl_dir} already holds a run; pass another --out (or delete it) so the demo starts fresh")
    sft_cfg = load_sft_recipe(SFT_RECIPE, [f"training.seed={seed}", f"training.output_dir={sft_dir}",
                                           f"training.max_steps={sft_steps}", f"training.save_steps={sft_steps}"])
    length = sft_cfg.sft.completion_length
    if cfg.rollout.max_completion_length != length:
        raise ValueError(f"rollout.max_completion_length must be {length} (the SFT stage's)")
    # every accuracy decodes and grades as the trainer's evaluations do: the recipe's sampler at temperature 0
    decode = dict(completion_length=length, config=cfg.rollout.sampler().greedy())
    start = time.perf_counter()

    if sft_model is None:
        log(f"[1/3] SFT: {sft_steps} steps from a random model ({SFT_RECIPE.relative_to(RECIPE.parents[2])})")
        SftTrainer(sft_cfg, log=lambda line: log("  " + line)).setup().train()  # its final model: out/sft
    else:
        if not (Path(sft_model) / "config.json").is_file():
            raise ValueError(f"--sft-model {sft_model}: no config.json there; give a model folder written by "
                             f"unmask sft (e.g. out/demo/sft of an earlier demo, or tests/fixtures/demo-sft)")
        log(f"[1/3] SFT: skipped, starting from {sft_model}")
        shutil.copytree(sft_model, sft_dir, dirs_exist_ok=True)
        sft_steps = None
    from .trainer import Trainer  # after SFT: with model.use_peft its preflight reads the checkpoint's config
    trainer = Trainer(cfg, log=lambda line: log("  " + line))
    examples = [SyntheticExample(r["question"], r["completion"], r["answer"]) for r in trainer.eval_rows]
    from unmask.rollouts.adapter import load_model
    acc_random = held_out_accuracy(random_init(sft_cfg), examples, **decode)
    acc_sft = held_out_accuracy(load_model(sft_dir, device="cpu"), examples, **decode)
    sft_seconds = time.perf_counter() - start
    log(f"  held-out accuracy ({len(examples)} questions): random init {acc_random:.3f}, after SFT {acc_sft:.3f}; "
        f"{sft_seconds:.0f}s")

    log(f"[2/3] RL: {cfg.algorithm.name}, {cfg.training.max_steps} steps")
    trainer.setup()
    trainer.train()
    rl_seconds = time.perf_counter() - start - sft_seconds

    log("[3/3] eval")
    # the RL run's final model, as it saved it (under LoRA, its adapter on the SFT'd model, unmerged as trained)
    lora = (rl_dir / "adapter_config.json").is_file()
    rl_model = load_model(sft_dir, adapter=rl_dir, merge_adapter=False, device="cpu") if lora else load_model(
        rl_dir, device="cpu")
    acc_rl = held_out_accuracy(rl_model, examples, **decode)
    metrics = read_metrics(rl_dir / "metrics.jsonl")
    reward = [(m["step"], m["reward"]) for m in metrics if "reward" in m]
    accuracy = [(0, acc_sft)] + [(m["step"], m["eval/reward"]) for m in metrics if "eval/reward" in m]
    summary = {
        "algorithm": cfg.algorithm.name, "seed": seed, "sft_steps": sft_steps,
        "sft_model": None if sft_model is None else str(sft_model), "rl_steps": cfg.training.max_steps,
        "held_out_questions": len(examples), "accuracy_random": acc_random, "accuracy_sft": acc_sft,
        "accuracy_rl": acc_rl, "sft_seconds": round(sft_seconds, 1), "rl_seconds": round(rl_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1), "reward_curve": reward, "accuracy_curve": accuracy,
        "overrides": list(overrides), "torch_threads": torch.get_num_threads(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    curves = write_curves(out, summary, log)
    log(summary_markdown(summary))
    log(f"written to {out}/summary.md, summary.json, " + " and ".join(path.name for path in curves))
    return summary


def summary_markdown(s: dict) -> str:
    n = s["held_out_questions"]
    sft = f"after SFT ({s['sft_steps']} steps)" if s["sft_steps"] is not None else f"SFT model {s['sft_model']}"
    rows = [("random init", s["accuracy_random"]), (sft, s["accuracy_sft"]),
            (f"after RL ({s['algorithm']}, {s['rl_steps']} steps)", s["accuracy_rl"])]
    lines = [f"| model | held-out accuracy ({n} questions) |", "|---|---|"]
    lines += [f"| {name} | {acc:.3f} |" for name, acc in rows]
    curve = ", ".join(f"{step}: {r:.2f}" for step, r in s["reward_curve"][:: max(1, len(s["reward_curve"]) // 8)])
    lines += ["", f"reward curve (step: mean reward): {curve}",
              f"time: SFT {s['sft_seconds']:.0f}s, RL {s['rl_seconds']:.0f}s, total {s['total_seconds']:.0f}s"]
    return "\n".join(lines) + "\n"
