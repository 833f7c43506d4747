"""The opt-in generic path: another HF masked-diffusion model loaded through its own (local) code."""
import json
import textwrap

import pytest
import torch

from unmask.rollouts.adapter import load_model
from unmask.rollouts.models.checkpoint import CheckpointError
from unmask.rollouts.sampling import SamplerConfig, generate

CONFIG_PY = '''
from transformers import PretrainedConfig

class ToyConfig(PretrainedConfig):
    model_type = "toy-dllm"
    def __init__(self, vocab_size=16, hidden_size=8, mask_token_id=14, eos_token_id=15, **kw):
        self.vocab_size, self.hidden_size, self.mask_token_id = vocab_size, hidden_size, mask_token_id
        super().__init__(eos_token_id=eos_token_id, **kw)
'''
MODEL_PY = '''
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput
from .configuration_toy import ToyConfig

class ToyModel(PreTrainedModel):
    config_class = ToyConfig
    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.head = torch.nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()
    def forward(self, input_ids, attention_mask=None, **kw):
        h = self.embed(input_ids)
        h = h + h.mean(1, keepdim=True)  # every position sees the whole sequence
        return MaskedLMOutput(logits=self.head(h))
'''


@pytest.fixture()
def toy_checkpoint(tmp_path):
    path = tmp_path / "toy"
    path.mkdir()
    (path / "configuration_toy.py").write_text(textwrap.dedent(CONFIG_PY))
    (path / "modeling_toy.py").write_text(textwrap.dedent(MODEL_PY))
    cfg = {"model_type": "toy-dllm", "vocab_size": 16, "hidden_size": 8, "mask_token_id": 14, "eos_token_id": 15,
           "auto_map": {"AutoConfig": "configuration_toy.ToyConfig", "AutoModel": "modeling_toy.ToyModel"}}
    (path / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    state = {"embed.weight": torch.randn(16, 8), "head.weight": torch.randn(16, 8), "head.bias": torch.zeros(16)}
    from safetensors.torch import save_file
    save_file(state, str(path / "model.safetensors"))
    return path


def test_unknown_type_needs_the_opt_in(toy_checkpoint):
    with pytest.raises(CheckpointError, match="trust_remote_code"):
        load_model(toy_checkpoint)


def test_remote_code_model_decodes_through_the_same_sampler(toy_checkpoint):
    lm = load_model(toy_checkpoint, trust_remote_code=True, device="cpu")
    assert lm.family.name == "remote:toy-dllm" and lm.mask_id == 14 and lm.eos_id == 15
    prompt = torch.tensor([[1, 2, 3]])
    logits = lm.logits(prompt)
    assert logits.shape == (1, 3, 16)
    out = generate(lm, prompt, config=SamplerConfig(max_completion_length=4, diffusion_steps=4))
    assert torch.equal(out[:, :3], prompt) and not (out == 14).any()


def test_remote_code_model_saves_with_its_code(toy_checkpoint, tmp_path):
    lm = load_model(toy_checkpoint, trust_remote_code=True, device="cpu")
    out = lm.save_pretrained(tmp_path / "saved")
    saved = json.loads((out / "config.json").read_text())
    assert all((out / f"{ref.split('.')[0]}.py").is_file() for ref in saved["auto_map"].values())
    again = load_model(out, trust_remote_code=True, device="cpu")
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(lm.logits(prompt), again.logits(prompt))
