"""The Hugging Face checkpoint layout: ``checkpoint-<step>/`` and a finished run's ``output_dir`` hold the model (or
LoRA adapter) at their root, loadable with ``from_pretrained`` and by ``unmask eval``; checkpoints of the older
layout (the model in ``model/``) still resume exactly and load."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from unmask.rl import cli
from unmask.rl.trainer import Trainer
from unmask.rl.training.checkpoint import model_dir
from unmask.rollouts.adapter import load_model

from ..paths import GSM8K_TEST
from .test_trainer import FIXTURE, recipe, weights

LORA = ["model.use_peft=true", "model.lora_r=4", "model.lora_alpha=8"]
STATE = {"optimizer.pt", "trainer_state.json", "recipe.yaml", "reference.safetensors", "deepspeed"}


def evaluate(adapter: Path, out: Path) -> int:
    return cli.main(["eval", "--model", FIXTURE, "--adapter", str(adapter), "--tokenizer", "bytes", "--device", "cpu",
                     "--benchmark", "gsm8k", "--data-files", str(GSM8K_TEST), "--limit", "2",
                     "--max-completion-length", "8", "--diffusion-steps", "4", "--block-length", "8",
                     "--out", str(out)])


def test_lora_checkpoint_and_final_adapter_load_with_from_pretrained_and_unmask_eval(tmp_path):
    peft = pytest.importorskip("peft")
    out = tmp_path / "run"
    trainer = Trainer(recipe(out, *LORA, "training.max_steps=2", "training.save_steps=2"))
    trainer.setup().train()
    trained = {k: v for k, v in trainer.policy.peft_model.state_dict().items() if "lora_" in k}
    for folder in (out / "checkpoint-2", out):
        assert (folder / "adapter_config.json").is_file() and not (folder / "model").exists()
        model = peft.PeftModel.from_pretrained(load_model(FIXTURE, tokenizer="bytes", device="cpu").model,
                                               str(folder))
        loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
        assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in loaded)
        assert evaluate(folder, tmp_path / "eval" / folder.name) == 0


def to_old_layout(checkpoint: Path) -> None:
    """Move the model files into ``model/``, as checkpoints were written before the Hugging Face layout."""
    (checkpoint / "model").mkdir()
    for f in list(checkpoint.iterdir()):
        if f.name != "model" and f.name not in STATE and not f.name.startswith("rng_rank"):
            f.rename(checkpoint / "model" / f.name)


@pytest.mark.parametrize("lora", [False, True])
def test_a_checkpoint_with_the_older_model_subfolder_resumes_exactly_and_loads(tmp_path, lora):
    common = ["training.max_steps=4", "training.save_steps=2", "training.save_total_limit=null",
              *(LORA if lora else [])]
    Trainer(recipe(tmp_path / "whole", *common)).setup().train()
    old = tmp_path / "old" / "checkpoint-2"
    shutil.copytree(tmp_path / "whole" / "checkpoint-2", old)
    to_old_layout(old)
    assert model_dir(old) == old / "model" and model_dir(tmp_path / "whole" / "checkpoint-2").name == "checkpoint-2"
    if lora:  # unmask eval --adapter given the old checkpoint folder uses its model/
        assert evaluate(old, tmp_path / "eval") == 0
    else:
        assert load_model(model_dir(old), tokenizer="bytes", device="cpu").model.num_parameters() > 0
    Trainer(recipe(tmp_path / "old", *common, "training.resume_from=latest")).setup().train()
    wa, wb = weights(tmp_path / "whole" / "checkpoint-4"), weights(tmp_path / "old" / "checkpoint-4")
    assert wa.keys() == wb.keys() and max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
