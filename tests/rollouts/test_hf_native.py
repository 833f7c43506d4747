"""The native LLaDA and Dream models as transformers PreTrainedModels: save_pretrained / from_pretrained round
trips bit for bit, sharding, push_to_hub (offline), configs that load without remote code, and the Auto-class
registration that ``import unmask`` installs (checked in fresh interpreters, in both import orders)."""
import json
import os
import shutil
import subprocess
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from tests.paths import DREAM_TINY, FIXTURES, LLADA_TINY
from unmask.rollouts.adapter import load_model
from unmask.rollouts.families import FAMILIES
from unmask.rollouts.models.configuration import DreamConfig, LLaDAConfig
from unmask.rollouts.models.dream import DreamModel
from unmask.rollouts.models.hf import register_auto_classes, register_configs
from unmask.rollouts.models.llada import LLaDAModelLM
from unmask.rollouts.tiny import make_tiny

transformers = pytest.importorskip("transformers")
CLASSES = {"llada": (LLaDAModelLM, LLaDAConfig, "llada"), "dream": (DreamModel, DreamConfig, "Dream")}
IDS = torch.randint(0, 256, (2, 11), generator=torch.Generator().manual_seed(0))


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


@torch.no_grad()
def logits(model: torch.nn.Module) -> torch.Tensor:
    return model.eval()(IDS)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_models_are_transformers_models_with_published_names(family):
    model = make_tiny(family, seed=0).model
    model_class, config_class, model_type = CLASSES[family]
    assert isinstance(model, transformers.PreTrainedModel) and type(model) is model_class
    assert type(model.config) is config_class and model.config.model_type == model_type
    assert model_class.__name__ in (["LLaDAModelLM"] if family == "llada" else ["DreamModel"])
    out = model(IDS[:, :4], return_dict=True)
    assert torch.equal(out.logits, model(IDS[:, :4]))


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_pretrained_from_pretrained_round_trips_bit_for_bit(tmp_path, family, dtype):
    adapter = make_tiny(family, seed=4, dtype=dtype)
    adapter.model.save_pretrained(tmp_path)  # transformers' own method
    again = type(adapter.model).from_pretrained(tmp_path, dtype=dtype)
    assert same_state(adapter.model, again) and torch.equal(logits(adapter.model), logits(again))
    loaded = load_model(tmp_path, device="cpu", dtype=dtype)
    assert same_state(adapter.model, loaded.model) and loaded.family.name == family
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == CLASSES[family][2] and saved["mask_token_id"] == adapter.mask_id
    assert saved["architectures"] == [type(adapter.model).__name__] and "auto_map" not in saved
    assert saved.get("dtype", saved.get("torch_dtype")) == str(dtype).removeprefix("torch.")


def test_large_checkpoints_are_sharded_and_load_everywhere(tmp_path):
    adapter = make_tiny("llada", seed=2)
    out = adapter.save_pretrained(tmp_path / "m", max_shard_size="200KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (out / "model.safetensors").exists()
    register_auto_classes()
    assert same_state(adapter.model, load_model(out, device="cpu").model)
    assert same_state(adapter.model, transformers.AutoModel.from_pretrained(out))


@pytest.mark.parametrize("fixture", [LLADA_TINY, DREAM_TINY])
def test_published_format_checkpoints_load_through_auto_model(fixture):
    register_auto_classes()
    native = load_model(fixture, device="cpu").model
    for auto in (transformers.AutoModel, transformers.AutoModelForMaskedLM):
        model = auto.from_pretrained(fixture)
        assert type(model) is type(native) and same_state(native, model)
        assert torch.equal(logits(native), logits(model))


@pytest.mark.parametrize("family, file", [("llada", "llada-chat/llada-8b-instruct-config.json"),
                                          ("dream", "dream-tokenizer/dream-7b-instruct-config.json")])
def test_published_configs_keep_their_fields_and_lose_the_remote_code_pointers(tmp_path, family, file):
    published = json.loads((FIXTURES / file).read_text())
    with torch.device("meta"):
        model = FAMILIES[family].build(published)
    model.config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "auto_map" not in saved  # modeling_*.py / configuration_*.py are not saved next to it
    # what transformers itself rewrites: torch_dtype is written as dtype, use_cache belongs to generation, a null
    # rope_scaling is the default, and attention is always SDPA here (Dream asks for flash_attention_2)
    rewritten = {"auto_map", "torch_dtype", "use_cache", "rope_scaling", "attn_implementation", "_name_or_path",
                 "transformers_version"}
    assert {k: v for k, v in published.items() if k not in rewritten} == {
        k: saved[k] for k in published if k not in rewritten}
    assert saved.get("dtype", saved.get("torch_dtype")) == "bfloat16"
    assert FAMILIES[family].arch(saved, "saved") == model.arch


def test_auto_map_entries_are_kept_only_when_they_resolve(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(LLADA_TINY, src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
                       "AutoModelForCausalLM": "GSAI-ML/LLaDA-8B-Instruct--modeling_llada.LLaDAModelLM"}
    (src / "config.json").write_text(json.dumps(cfg))
    os.chmod(src / "config.json", 0o644)
    register_auto_classes()
    model = transformers.AutoModel.from_pretrained(src)  # no trust_remote_code: the native class
    assert type(model) is LLaDAModelLM
    out = tmp_path / "out"
    out.mkdir()
    (out / "configuration_llada.py").write_text("# saved alongside, so its entry stays\n")
    model.save_pretrained(out)
    saved = json.loads((out / "config.json").read_text())
    assert saved["auto_map"] == {"AutoConfig": "configuration_llada.LLaDAConfig",
                                 "AutoModelForCausalLM": "GSAI-ML/LLaDA-8B-Instruct--modeling_llada.LLaDAModelLM"}


def test_push_to_hub_uploads_a_checkpoint_that_loads(tmp_path, monkeypatch):
    import huggingface_hub
    uploaded = {}

    def create_repo(self, repo_id, **kwargs):
        return types.SimpleNamespace(repo_id=repo_id, url=f"https://hub.test/{repo_id}")

    def create_commit(self, repo_id, operations, **kwargs):  # transformers' PushToHubMixin
        dest = uploaded.setdefault(repo_id, tmp_path / repo_id.replace("/", "--"))
        for op in operations:
            (dest / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(op.path_or_fileobj, dest / op.path_in_repo)
        return f"https://hub.test/{repo_id}/commit/1"

    def upload_folder(self, repo_id, folder_path, **kwargs):  # ModelAdapter.push_to_hub
        shutil.copytree(folder_path, uploaded.setdefault(repo_id, tmp_path / repo_id.replace("/", "--")))
        return f"https://hub.test/{repo_id}/commit/2"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub.ModelCard, "load", classmethod(lambda cls, *a, **k: cls("---\n---\n")))
    adapter = make_tiny("dream", seed=6)
    adapter.model.push_to_hub("me/dream-tiny")
    adapter.push_to_hub("me/dream-tiny-with-tokenizer")
    register_auto_classes()
    for repo in ("me/dream-tiny", "me/dream-tiny-with-tokenizer"):
        folder = uploaded[repo]
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        assert same_state(adapter.model, transformers.AutoModel.from_pretrained(folder))
        assert same_state(adapter.model, load_model(folder, device="cpu").model)
    assert (uploaded["me/dream-tiny-with-tokenizer"] / "tokenizer_config.json").is_file()


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_transformers_gradient_checkpointing_switch(family):
    model = make_tiny(family, seed=1).model.train()
    ids = IDS[:, :8]

    def grads():
        model.zero_grad()
        model(ids).logsumexp(-1).mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    assert model.gradient_checkpointing
    assert all(torch.equal(a, b) for a, b in zip(plain, grads()))


def test_registration_is_idempotent_and_leaves_other_owners_alone(monkeypatch):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    assert register_auto_classes() == {"llada": LLaDAModelLM, "Dream": DreamModel}
    assert register_auto_classes() == {"llada": LLaDAModelLM, "Dream": DreamModel}
    assert transformers.AutoConfig.for_model("llada").__class__ is LLaDAConfig

    class OtherConfig(transformers.PretrainedConfig):
        model_type = "llada"

    monkeypatch.setitem(CONFIG_MAPPING._extra_content, "llada", OtherConfig)
    with pytest.warns(UserWarning, match="already maps model_type 'llada'"):
        assert register_configs() == {"Dream": DreamConfig}
    assert CONFIG_MAPPING["llada"] is OtherConfig


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory):
    """A saved tiny LLaDA and Dream, with the logits they must give."""
    root = tmp_path_factory.mktemp("saved")
    cases = []
    for family in ("llada", "dream"):
        adapter = make_tiny(family, seed=9)
        path = adapter.save_pretrained(root / family)
        save_file({"ids": IDS, "logits": logits(adapter.model)}, str(root / f"{family}-expected.safetensors"))
        cases.append([str(path), str(root / f"{family}-expected.safetensors"), CLASSES[family][2],
                      type(adapter.model).__name__])
    return root, cases


CHECK = """
import sys, json
order, cases = sys.argv[1], json.loads(sys.argv[2])
if order == "unmask-first":
    import unmask
    assert "torch" not in sys.modules and "transformers" not in sys.modules, "import unmask must stay cheap"
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM
elif order == "transformers-first":
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM
    import unmask
else:  # only transformers' top level, then AutoConfig alone, then unmask, then the model classes
    import transformers
    from transformers import AutoConfig
    import unmask
    from transformers import AutoModel, AutoModelForMaskedLM
import torch
from safetensors.torch import load_file
for path, expected, model_type, class_name in cases:
    ref = load_file(expected)
    assert AutoConfig.from_pretrained(path).model_type == model_type
    for auto in (AutoModel, AutoModelForMaskedLM):
        model = auto.from_pretrained(path).eval()
        assert type(model).__name__ == class_name, type(model)
        with torch.no_grad():
            assert torch.equal(model(ref["ids"]), ref["logits"]), (path, auto)
print("ok", sorted(m for m in sys.modules if m.startswith("unmask")))
"""


@pytest.mark.parametrize("order", ["unmask-first", "transformers-first", "lazy-transformers-first"])
def test_import_unmask_registers_the_auto_classes_in_either_order(saved_pair, order):
    root, cases = saved_pair
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHECK, order, json.dumps(cases)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok") and "unmask.rollouts.models.hf" in done.stdout
    assert "unmask.rl" not in done.stdout  # nothing but the registration was imported


def test_import_unmask_alone_loads_neither_torch_nor_transformers(tmp_path):
    code = "import sys, unmask; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_rope_scaling_is_refused_in_either_spelling():
    from unmask.rollouts.models.base import ModelConfigError
    from unmask.rollouts.models.dream import dream_arch, tiny_dream_config
    cfg = tiny_dream_config()
    for change in ({"rope_scaling": {"type": "yarn", "factor": 4.0}},  # config.json
                   {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}}):  # transformers 5
        with pytest.raises(ModelConfigError, match="rope_scaling are not supported"):
            dream_arch({**cfg, **change})
    assert dream_arch({**cfg, "rope_theta": None, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}}
                      ).rope_theta == 5e5
