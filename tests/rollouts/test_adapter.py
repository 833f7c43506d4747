"""The family adapter: real tokenizers and chat templates, prompt encoding, LoRA target names."""
import json

import pytest
import torch

from tests.paths import DREAM_TINY, FIXTURES, GSM8K_TEST, LLADA_TINY
from unmask.rollouts.adapter import load_model
from unmask.rollouts.families import DREAM_CHAT_TEMPLATE, FAMILIES, LLADA_CHAT_TEMPLATE
from unmask.rollouts.tiny import make_tiny


def gsm8k_question() -> str:
    return json.loads(GSM8K_TEST.read_text().splitlines()[0])["question"]


def test_real_dream_tokenizer_formats_a_gsm8k_question(dream_tokenizer_dir):
    adapter = load_model(DREAM_TINY, tokenizer=str(dream_tokenizer_dir), device="cpu")
    tok = adapter.tokenizer
    assert len(tok) == 151667
    assert tok.convert_tokens_to_ids("<|mask|>") == 151666 and tok.eos_token_id == 151643
    question = gsm8k_question()
    text = adapter.format_prompt(question)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    ids, mask = adapter.encode([question, "Hi"])
    assert ids.shape == mask.shape and mask[0].all() and not mask[1].all()
    assert tok.decode(ids[0]) == text  # byte-level BPE round-trips the whole prompt
    assert (ids[1][mask[1] == 0] == adapter.pad_id).all()  # left padding with the pad id


def test_dream_fallback_template_renders_like_the_published_one(dream_tokenizer_dir):
    adapter = load_model(DREAM_TINY, tokenizer=str(dream_tokenizer_dir), device="cpu")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": gsm8k_question()},
                {"role": "assistant", "content": "18"}, {"role": "user", "content": "Why?"}]

    def render(tpl):
        return adapter.tokenizer.apply_chat_template(messages, chat_template=tpl, tokenize=False,
                                                     add_generation_prompt=True)

    assert render(DREAM_CHAT_TEMPLATE) == render(adapter.tokenizer.chat_template)


def test_llada_family_template_is_the_published_one():
    published = json.loads((FIXTURES / "llada-chat" / "tokenizer_config.json").read_text())["chat_template"]
    assert LLADA_CHAT_TEMPLATE == published


def test_llada_template_with_system_prompt_and_bos():
    adapter = make_tiny("llada")
    adapter.tokenizer.chat_template = None  # fall back on the family's template
    adapter.tokenizer.bos_token = "<|startoftext|>"
    text = adapter.format_prompt("  2+2?  ", system_prompt="You are a calculator.")
    assert text == ("<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nYou are a calculator.<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_every_lora_target_names_real_linear_layers(family):
    adapter = make_tiny(family)
    names = {n.rsplit(".", 1)[-1] for n, m in adapter.model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(adapter.lora_target_modules) <= names
    linear_types = names - {"ff_out"} if family == "llada" else names - {"lm_head"}
    assert set(adapter.lora_target_modules) >= linear_types - {"ff_out"}  # every block linear is covered
    if family == "llada":  # the seven LLaDA names, not Llama's o_proj/gate_proj/down_proj
        assert adapter.lora_target_modules == ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"]


def test_lora_targets_wrap_through_peft():
    from peft import LoraConfig, get_peft_model
    adapter = make_tiny("llada")
    peft_model = get_peft_model(adapter.model,
                                LoraConfig(r=4, lora_alpha=8, target_modules=adapter.lora_target_modules))
    wrapped = [n for n, _ in peft_model.named_modules() if n.endswith(".lora_A")]
    # 7 linears per block × 2 blocks; the untied output head (also named ff_out) is wrapped too
    assert len(wrapped) == 15
    ids = torch.randint(0, 256, (1, 6))
    with torch.no_grad(), peft_model.disable_adapter():
        base = peft_model(ids)
    assert torch.equal(base, peft_model(ids).detach())  # LoRA B starts at zero: same function


def test_decode_completion_stops_at_eos():
    adapter = make_tiny("llada")
    ids = adapter.tokenizer("ok", add_special_tokens=False)["input_ids"] + [adapter.eos_id, 65, 66]
    assert adapter.decode_completion(torch.tensor(ids)) == "ok"


def test_chat_false_requires_text():
    adapter = make_tiny("dream")
    assert adapter.format_prompt("raw", chat=False) == "raw"
    with pytest.raises(TypeError):
        adapter.format_prompt([{"role": "user", "content": "x"}], chat=False)


def test_model_without_tokenizer_fails_only_when_text_is_needed():
    adapter = load_model(LLADA_TINY, device="cpu")
    adapter.logits(torch.tensor([[1, 2, 3]]))  # no tokenizer needed
    with pytest.raises(ValueError, match="ships no tokenizer.*'bytes'"):
        adapter.encode(["hello"])
    assert load_model(LLADA_TINY, tokenizer="bytes").encode(["hi"], chat=False)[0].tolist() == [[104, 105]]


def test_families_registry():
    assert {"llada", "dream"} <= set(FAMILIES)
    assert FAMILIES["dream"].logit_shift and not FAMILIES["llada"].logit_shift
