"""Metric sinks: always a local JSONL file, Weights & Biases when installed and asked for (offline mode
works: ``WANDB_MODE=offline``), a one-line progress report with ETA, and a sample of completions.

Metric names are TRL's (``GRPOTrainer``, and transformers' ``Trainer``) wherever TRL has the concept —
``loss``, ``learning_rate``, ``grad_norm``, ``epoch``, ``reward``, ``reward_std``, ``frac_reward_zero_std``,
``rewards/<name>/mean`` and ``/std``, ``kl``, ``entropy``, ``clip_ratio/{low,high,region}_mean``,
``completions/mean_length`` — plus unmask's own (``rollout/*``, ``frac_rows_kept``, ``eval/*``). The README's
metrics table lists every name written, with its meaning (``tests/rl/test_metrics.py`` keeps the two equal).
On resume the JSONL keeps only the lines up to the checkpoint's step, so the file reads as one run.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path


class MetricsLogger:
    def __init__(self, output_dir: str | Path, report_to: list[str], *, project: str, run_name: str | None,
                 config: dict, run_id: str | None = None, resume_step: int | None = None, max_steps: int = 0,
                 log=print):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or secrets.token_hex(4)
        self.max_steps, self.log = max_steps, log
        self.start_time, self.start_step = time.time(), resume_step or 0
        self.jsonl = self.dir / "metrics.jsonl" if "jsonl" in report_to else None
        self.samples = self.dir / "completions.jsonl"
        if resume_step is not None:
            for path in (self.jsonl, self.samples):
                if path is not None and path.is_file():
                    keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
                    path.write_text("".join(line + "\n" for line in keep))
        self.wandb = None
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError:
                log("logging.report_to lists wandb, but wandb is not installed (pip install 'unmask[wandb]'); "
                    "logging to JSONL only")
            else:
                self.wandb = wandb.init(project=project, name=run_name, id=self.run_id, resume="allow",
                                        config=config, dir=str(self.dir))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **{k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}}
        if self.jsonl is not None:
            with self.jsonl.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(values, step=step)
        done = step - self.start_step
        rate = (time.time() - self.start_time) / max(done, 1)
        eta = rate * max(self.max_steps - step, 0)
        shown = " ".join(f"{k} {values[k]:.4g}" for k in ("reward", "loss", "kl", "eval/reward", "eval/loss")
                         if k in values)
        self.log(f"step {step}/{self.max_steps} | {shown} | {rate:.1f} s/step, ETA {eta / 60:.1f} min")

    def completions(self, step: int, prompts: list[str], completions: list[str], rewards: list[float],
                    show: int = 0, notes: dict[str, list] | None = None) -> None:
        """One line per sample; ``notes``: per reward, what it said of each completion (an LLM judge's answers)."""
        with self.samples.open("a") as f:
            for i, (p, c, r) in enumerate(zip(prompts, completions, rewards)):
                line = {"step": step, "prompt": p, "completion": c, "reward": r}
                if notes:
                    line["notes"] = {name: said[i] for name, said in notes.items() if i < len(said)}
                f.write(json.dumps(line, default=str) + "\n")
        if self.wandb is not None:
            import wandb
            self.wandb.log({"completions": wandb.Table(columns=["prompt", "completion", "reward"],
                                                       data=[list(x) for x in zip(prompts, completions, rewards)])},
                           step=step)
        for p, c, r in list(zip(prompts, completions, rewards))[:show]:
            self.log(f"  [{r:+.2f}] {p[-60:]!r} -> {c[:120]!r}")

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
