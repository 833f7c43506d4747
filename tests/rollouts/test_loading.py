"""Checkpoint loading: local dirs, Hub ids through the HF cache, sharded files, and every error path."""
import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.paths import DREAM_TINY, LLADA_TINY
from unmask.rollouts.adapter import load_model
from unmask.rollouts.models.base import ModelConfigError
from unmask.rollouts.models.checkpoint import CheckpointError
from unmask.rollouts.tiny import make_tiny


def copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_save_and_reload_round_trip(tmp_path, family):
    adapter = make_tiny(family, seed=5)
    path = adapter.save_pretrained(tmp_path / family)
    again = load_model(path, device="cpu")
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(adapter.logits(ids), again.logits(ids))
    assert again.family.name == family and again.mask_id == adapter.mask_id
    assert again.tokenizer.convert_tokens_to_ids("<|mask|>") == adapter.mask_id  # tokenizer saved too


def test_sharded_checkpoint_loads_like_single_file(tmp_path):
    state = load_file(LLADA_TINY / "model.safetensors")
    out = tmp_path / "sharded"
    out.mkdir()
    shutil.copy(LLADA_TINY / "config.json", out / "config.json")
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(out / file))
        weight_map.update({k: file for k in keys})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ids = torch.randint(0, 500, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(load_model(out, device="cpu").logits(ids), load_model(LLADA_TINY, device="cpu").logits(ids))


def test_broken_sharded_index_names_the_problem(tmp_path):
    path = copy_checkpoint(LLADA_TINY, tmp_path / "m")
    (path / "model.safetensors").unlink()
    index = path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError,
                       match=r"lists shards that are missing: \['model-00001-of-00002\.safetensors'\]"):
        load_model(path)
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="not a safetensors index"):
        load_model(path)


def test_hub_id_resolves_through_the_hf_cache_offline(tmp_path, monkeypatch):
    # Lay out the HF cache exactly as huggingface_hub does, then load by Hub id with no network.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--unmask-test--llada-tiny"
    copy_checkpoint(LLADA_TINY, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    adapter = load_model("unmask-test/llada-tiny", device="cpu")
    assert adapter.family.name == "llada" and adapter.source.name == commit
    with pytest.raises(CheckpointError, match="could not fetch 'unmask-test/absent'"):
        load_model("unmask-test/absent", device="cpu")


def test_unknown_model_type_names_the_fix(tmp_path):
    path = copy_checkpoint(LLADA_TINY, tmp_path / "m")
    edit_config(path, model_type="mystery")
    with pytest.raises(CheckpointError, match=r"unknown model_type 'mystery'.*trust_remote_code"):
        load_model(path)


def test_missing_and_unexpected_weights_are_listed(tmp_path):
    path = copy_checkpoint(LLADA_TINY, tmp_path / "m")
    state = load_file(path / "model.safetensors")
    state.pop("model.transformer.blocks.1.q_proj.weight")
    state["model.transformer.blocks.0.extra.weight"] = torch.zeros(2)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing 1: model\.transformer\.blocks\.1\.q_proj\.weight.*"
                                              r"unexpected 1: model\.transformer\.blocks\.0\.extra\.weight"):
        load_model(path)


def test_shape_mismatch_is_reported(tmp_path):
    path = copy_checkpoint(DREAM_TINY, tmp_path / "m")
    edit_config(path, intermediate_size=128)
    with pytest.raises(CheckpointError, match=r"mlp\.down_proj\.weight \(64, 176\) vs \(64, 128\)"):
        load_model(path)


def test_mask_token_outside_vocabulary(tmp_path):
    path = copy_checkpoint(LLADA_TINY, tmp_path / "m")
    edit_config(path, mask_token_id=126336)  # LLaDA-8B's id, hard-coded by other toolkits
    with pytest.raises(CheckpointError, match=r"mask_token_id 126336 is outside the vocabulary \(0\.\.511\)"):
        load_model(path)


def test_missing_mask_token_id_can_be_supplied(tmp_path):
    path = copy_checkpoint(LLADA_TINY, tmp_path / "m")
    edit_config(path, mask_token_id=None)
    with pytest.raises(CheckpointError, match="no mask_token_id"):
        load_model(path)
    assert load_model(path, mask_token_id=500).mask_id == 500


def test_token_ids_come_from_config_not_constants(tmp_path):
    path = make_tiny("llada", mask_token_id=300, eos_token_id=301).save_pretrained(tmp_path / "m")
    adapter = load_model(path)
    assert (adapter.mask_id, adapter.eos_id, adapter.pad_id) == (300, 301, 301)


@pytest.mark.parametrize("change, message", [
    ({"alibi": True}, "alibi=True is not supported"),
    ({"block_type": "sequential"}, "block_type='sequential'"),
    ({"d_model": 65}, "not divisible by the number of heads"),
    ({"n_layers": None}, "missing 'n_layers'"),
])
def test_unsupported_llada_configs_fail_clearly(tmp_path, change, message):
    path = copy_checkpoint(LLADA_TINY, tmp_path / "m")
    edit_config(path, **change)
    with pytest.raises(ModelConfigError, match=message):
        load_model(path)


@pytest.mark.parametrize("change, message", [
    ({"use_sliding_window": True}, "sliding-window attention"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
    ({"num_attention_heads": 3}, "not divisible by the number of heads"),
    ({"num_hidden_layers": None}, "Dream config is missing 'num_hidden_layers'"),
])
def test_unsupported_dream_configs_fail_clearly(tmp_path, change, message):
    path = copy_checkpoint(DREAM_TINY, tmp_path / "m")
    edit_config(path, **change)
    with pytest.raises(ModelConfigError, match=message):
        load_model(path)


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="is a file; pass the checkpoint directory"):
        load_model(LLADA_TINY / "config.json")
    path = copy_checkpoint(LLADA_TINY, tmp_path / "m")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no safetensors weights"):
        load_model(path)
    with pytest.raises(CheckpointError, match="no such directory: .*does/not/exist"):
        load_model(tmp_path / "does" / "not" / "exist")
    with pytest.raises(CheckpointError, match="model 'nope' is not a local directory and not a Hub id"):
        load_model("nope")
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)


def test_a_missing_local_path_fails_at_once_without_reaching_the_hub(tmp_path, monkeypatch):
    import huggingface_hub
    fetched = []

    def snapshot_download(repo_id, **kwargs):
        fetched.append(repo_id)
        raise OSError("offline")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "run" / "checkpoint-2").mkdir(parents=True)
    for name in ("out/nope", "./nope", "../nope", "~/unmask-no-such-dir", "a/b/c", str(tmp_path / "nope")):
        with pytest.raises(CheckpointError, match=f"no such directory: {re.escape(name)}"):
            load_model(name)
    with pytest.raises(CheckpointError,
                       match=r"no such directory: out/run/checkpoint-5 \(out/run holds: checkpoint-2\)"):
        load_model("out/run/checkpoint-5")
    with pytest.raises(CheckpointError, match=r"no such adapter directory: out/lora"):
        load_model(LLADA_TINY, adapter="out/lora")
    with pytest.raises(CheckpointError, match=r"no such tokenizer directory: out/tok"):
        load_model(LLADA_TINY, tokenizer="out/tok")
    assert fetched == []
    with pytest.raises(CheckpointError, match="could not fetch 'some-org/model'"):  # 'some-org/' is not here
        load_model("some-org/model")
    assert fetched == ["some-org/model"]


def test_auto_dtype_is_bfloat16_on_a_gpu_and_float32_on_cpu(monkeypatch):
    from unmask.rollouts.adapter import resolve_dtype
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_dtype("auto", torch.device("cuda:0")) is torch.bfloat16
    assert load_model(LLADA_TINY, dtype="auto", device="cpu").dtype is torch.float32


def test_real_size_configs_parse_without_weights():
    from tests.paths import FIXTURES
    from unmask.rollouts.families import FAMILIES
    llada = json.loads((FIXTURES / "llada-chat" / "llada-8b-instruct-config.json").read_text())
    dream = json.loads((FIXTURES / "dream-tokenizer" / "dream-7b-instruct-config.json").read_text())
    with torch.device("meta"):
        m1, m2 = FAMILIES["llada"].build(llada), FAMILIES["dream"].build(dream)
    assert round(m1.num_parameters() / 1e9, 2) == 8.02
    assert round(m2.num_parameters() / 1e9, 2) == 7.62
