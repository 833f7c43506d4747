"""VRPO in ``unmask compare``: the fourteenth method learns offline from preference pairs, so a ``vrpo`` run is built
from what the RL runs have — the same start, prompts, sampler, rewards and evaluation — in two stages:

    pairs   the start model rolls out the prompts an RL run of the seed sees (the same order, batches and rollout
            seeds: ``max_steps`` / updates per batch batches of ``prompts_per_batch`` × ``num_generations``); for
            each prompt its highest- and lowest-rewarded completions form a pair (none where all score alike)
            → ``pairs.jsonl``, written once (atomically) and reused on resume
    VRPO    ``unmask dpo``'s trainer (rl/dpo.py) on those pairs from the same start — β 0.2, n = 8 ELBO samples,
            antithetic (LLaDA 1.5's settings) — with the RL recipe's optimizer, schedule, steps and checkpoints,
            ``prompts_per_batch`` pairs per step, evaluated as the RL trainer evaluates (greedy decoding, the
            recipe's rewards: ``eval/reward``) at step 0 and every ``eval_steps``

So VRPO sees as many rollouts as an RL run and learns from the same reward, offline and once, where RL learns
online from its own policy's samples. ``--method-override vrpo:...`` sets the RL recipe's fields (e.g.
``training.learning_rate``); the DPO settings are these.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .compare import RUN_RECIPE
from .config import dpo_recipe_from_dict
from .dpo import DpoTrainer
from .recipes import load_recipe, to_dict
from .trainer import Trainer

METHOD = "vrpo"
PAIRS = "pairs.jsonl"
DPO = {"beta": 0.2, "elbo_samples": 8, "antithetic": True}
TRAINING_KEYS = ("seed", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1",
                 "adam_beta2", "adam_epsilon", "max_grad_norm", "max_steps", "eval_steps", "save_steps",
                 "save_total_limit", "bf16")


def preference_pairs(rl: Trainer) -> list[dict]:
    """Each prompt's best and worst completion by the recipe's rewards, from the start model's rollouts of the
    prompts an RL run of this seed sees (``rl``: a set-up trainer on the start model)."""
    from .training.loop import prompt_rows
    g, ppb = rl.cfg.rollout.num_generations, rl.prompts_per_batch
    pairs = []
    rl.policy.adapter.model.eval()
    for batch in range(-(-rl.max_steps // rl.cfg.algorithm.updates_per_batch)):
        rl.batches_done = batch  # the RL run's rollout seed of this batch
        rows = [rl.rows[i] for i in rl.order.take(ppb)]
        traj = rl.engine.rollout([rl.template.render(r, rl.cfg.data.system_prompt) for r in rows], num_generations=g,
                                 seed=rl._batch_seed())
        scores = rl._score(prompt_rows(traj), traj.completion_ids, [r for r in rows for _ in range(g)])
        for p, row in enumerate(rows):
            group = [(float(scores.total[p * g + k]), scores.texts[p * g + k]) for k in range(g)]
            best, worst = max(group, key=lambda x: x[0]), min(group, key=lambda x: x[0])
            if best[0] > worst[0]:
                pairs.append({**row, "chosen": best[1], "rejected": worst[1]})
    return pairs


class HeldOutDpoTrainer(DpoTrainer):
    """``unmask dpo``'s trainer evaluated as the RL trainer ``rl`` evaluates its eval rows (``eval/reward``)."""

    def __init__(self, cfg, rl: Trainer, log=print):
        super().__init__(cfg, log)
        self.rl, self.eval_rows = rl, rl.eval_rows

    def evaluate(self) -> dict[str, float]:
        from unmask.rollouts.engine import RolloutEngine
        self.adapter.model.eval()
        values = self.rl.held_out_rewards(RolloutEngine(self.adapter, self.rl.eval_engine.config))
        self.adapter.model.train()
        return values


def run_vrpo(run_dir: Path) -> dict:
    """A ``vrpo`` run of ``unmask compare`` in ``run_dir`` (its RL recipe there); returns its timing record."""
    cfg = load_recipe(run_dir / RUN_RECIPE)
    path, pair_seconds = run_dir / PAIRS, None
    # the RL trainer rolls out and evaluates; its own folder stays empty (the run's checkpoints are VRPO's)
    rl = Trainer(load_recipe(run_dir / RUN_RECIPE, [f"training.output_dir={run_dir / 'rollouts'}",
                                                    "training.resume_from=null", "logging.report_to=[]"]),
                 log=lambda *a: None).setup()
    if not path.is_file():
        began = time.perf_counter()
        pairs = preference_pairs(rl)
        if not pairs:
            raise ValueError(f"the start model's completions of every prompt scored alike: no preference pairs for "
                             f"VRPO in {run_dir}; use a start model whose answers vary")
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        tmp.replace(path)
        pair_seconds = round(time.perf_counter() - began, 3)
    t = cfg.training
    dpo = HeldOutDpoTrainer(dpo_recipe_from_dict({
        "model": to_dict(cfg.model),
        "data": {"dataset": "json", "data_files": str(path), "prompt_template": cfg.data.prompt_template,
                 "system_prompt": cfg.data.system_prompt, "max_prompt_length": cfg.data.max_prompt_length},
        "dpo": {"completion_length": cfg.rollout.max_completion_length, **DPO},
        "training": {**{k: getattr(t, k) for k in TRAINING_KEYS}, "output_dir": str(run_dir),
                     "per_device_train_batch_size": rl.prompts_per_batch, "gradient_accumulation_steps": 1,
                     "resume_from": "latest"},
        "logging": {"report_to": ["jsonl"], "logging_steps": math.gcd(cfg.logging.logging_steps, t.eval_steps)},
    }), rl).setup()
    if dpo.global_step == 0:
        dpo.logger.metrics(0, dpo.evaluate())
    first, began = dpo.global_step, time.perf_counter()
    dpo.train()
    return {"metric": "eval/reward", "resumed_at_step": first, "steps_timed": dpo.global_step - first,
            "train_seconds": round(time.perf_counter() - began, 3), "pair_seconds": pair_seconds,
            "pairs": sum(1 for _ in path.open())}
