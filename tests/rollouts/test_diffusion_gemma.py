"""DiffusionGemma rollouts: unmask's sampler gives the tokens of transformers' ``generate`` for the same seed, and its
record replays every step (tiny random models built from transformers' own config and model classes)."""
import pytest
import torch

pytest.importorskip("transformers.models.diffusion_gemma")

from unmask.rollouts.adapter import left_pad  # noqa: E402
from unmask.rollouts.diffusion_gemma import (  # noqa: E402
    BlockDiffusionConfig,
    accept,
    accepted_logprobs,
    replay_logits,
    sample,
    tiny_diffusion_gemma,
)

PROMPTS = [[2, 10, 11, 12, 13], [2, 20, 21]]


def generate_and_sample(model, prompts, seed, **settings):
    ids, mask = left_pad(prompts, 0)
    torch.manual_seed(seed)
    expected = model.generate(ids, attention_mask=mask, **settings).sequences
    record = sample(model, ids, mask, BlockDiffusionConfig(**settings), generator=torch.Generator().manual_seed(seed))
    return expected, record


@pytest.mark.parametrize("prompts,settings", [
    (PROMPTS[:1], {"max_new_tokens": 16}),                                                 # defaults: 48 steps
    (PROMPTS, {"max_new_tokens": 24, "max_denoising_steps": 6}),                           # left padding, 3 canvases
    (PROMPTS, {"max_new_tokens": 16, "max_denoising_steps": 8, "stability_threshold": 0,
               "confidence_threshold": 4.836}),                                            # rows stop at other steps
    (PROMPTS, {"max_new_tokens": 16, "max_denoising_steps": 8, "stability_threshold": 2, "confidence_threshold": 4.6,
               "entropy_bound": 3.0}),
    (PROMPTS, {"max_new_tokens": 24, "max_denoising_steps": 4, "eos_token_id": [7, 9], "pad_token_id": 0}),
])
def test_sampler_gives_generates_tokens(prompts, settings):
    model = tiny_diffusion_gemma(seed=1, vocab_size=32) if "eos_token_id" in settings else tiny_diffusion_gemma(seed=1)
    for seed in (0, 1):
        expected, record = generate_and_sample(model, prompts, seed, **settings)
        assert torch.equal(record.sequences, expected)


def test_rows_stop_refining_at_different_steps_and_eos_pads():
    model = tiny_diffusion_gemma(seed=1)
    _, record = generate_and_sample(model, PROMPTS, 0, max_new_tokens=16, max_denoising_steps=8,
                                    stability_threshold=0, confidence_threshold=4.836)
    steps = record.refining.sum(-1)                         # [rows, canvases]: the random model's entropy is ~4.83
    assert steps.max() < 8 and bool((steps[0] != steps[1]).any())   # these settings do stop rows at other steps
    model = tiny_diffusion_gemma(seed=1, vocab_size=32)
    _, record = generate_and_sample(model, PROMPTS, 0, max_new_tokens=24, max_denoising_steps=4, eos_token_id=[7, 9],
                                    pad_token_id=0)
    completion = record.sequences[:, 5:]
    assert bool(((completion == 0).any(-1)).any())          # some row ended early and was padded


def test_replay_recomputes_every_step():
    model = tiny_diffusion_gemma(seed=2)
    _, record = generate_and_sample(model, PROMPTS, 3, max_new_tokens=16, max_denoising_steps=6)
    for canvas in range(record.canvases):
        logits = replay_logits(model, record, canvas)
        for j in range(logits.shape[1]):
            live = record.refining[:, canvas, j]
            # the recorded acceptance is the entropy rule on the replayed logits, the next input follows from it
            assert torch.equal(accept(logits[:, j], record.config["entropy_bound"])[live],
                               record.accepted[:, canvas, j][live])
            if j + 1 < logits.shape[1]:
                nxt = record.inputs[:, canvas, j + 1]
                acc = record.accepted[:, canvas, j] & live[:, None]
                assert torch.equal(nxt[acc], record.samples[:, canvas, j][acc])
        last = record.refining[:, canvas].sum(-1) - 1          # the canvas kept: the argmax of each row's last step
        kept = logits[torch.arange(2), last].argmax(-1)
        start = 5 + canvas * 8
        assert torch.equal(kept, record.sequences[:, start:start + 8])
        some = replay_logits(model, record, canvas, keep=[0, logits.shape[1] - 2])  # what an update keeps
        assert sorted(some) == [0, logits.shape[1] - 2]
        assert all(torch.equal(some[j], logits[:, j]) for j in some)


def test_accepted_logprobs_match_transformers_forward_in_value_and_gradient():
    model = tiny_diffusion_gemma(seed=4)
    prompt = PROMPTS[:1]                                  # one row, no padding: transformers' forward needs no mask
    _, record = generate_and_sample(model, prompt, 5, max_new_tokens=8, max_denoising_steps=5)
    replayed = replay_logits(model, record, 0)
    steps = [0, 2, 4]
    ours = accepted_logprobs(model, record, 0, steps, replayed)
    ours.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    # the same surrogate through transformers' own forward (encoder and decoder in one call)
    ids = torch.tensor(prompt)
    total = 0
    for k, j in enumerate(steps):
        sc = None if j == 0 else replayed[:, j - 1]
        logits = model(input_ids=ids, decoder_input_ids=record.inputs[:, 0, j].long(), self_conditioning_logits=sc,
                       decoder_position_ids=torch.arange(5, 13, dtype=torch.int32)[None]).logits
        logp = torch.log_softmax(logits.float() / record.temperatures[j], -1)
        chosen = logp.gather(-1, record.samples[:, 0, j].long().unsqueeze(-1)).squeeze(-1)
        value = (chosen * record.accepted[:, 0, j]).sum(-1)
        torch.testing.assert_close(value, ours[:, k].detach(), atol=1e-5, rtol=0)
        total = total + value.sum()
    total.backward()
    assert grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    assert any(float(g.abs().max()) > 0 for g in grads.values())
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_the_engine_rolls_out_text_prompts_as_sample_does():
    from unmask.rollouts.diffusion_gemma_engine import BlockDiffusionEngine
    from unmask.rollouts.tokenizer import byte_tokenizer
    eos = 257
    model = tiny_diffusion_gemma(seed=3, vocab_size=300)
    tokenizer = byte_tokenizer(mask_token_id=299, eos_token_id=eos)
    engine = BlockDiffusionEngine(model, tokenizer, BlockDiffusionConfig(max_new_tokens=16, max_denoising_steps=4,
                                                                         eos_token_id=eos))
    assert tokenizer.decode(engine.encode("ab")) == "<|user|>\nab\n<|assistant|>\n"
    record = engine.rollout(["ab", "cde"], num_generations=2, seed=7)
    ids, mask = left_pad([engine.encode(p) for p in ("ab", "ab", "cde", "cde")], engine.config.pad_token_id)
    direct = sample(model, ids, mask, engine.config, generator=torch.Generator().manual_seed(7))
    assert torch.equal(record.sequences, direct.sequences) and torch.equal(record.samples, direct.samples)
    completions = engine.completions(record)
    for row, ids in zip(record.sequences[:, record.prompt_ids.shape[1]:].tolist(), completions):
        assert row[:len(ids)] == ids and (ids[-1] == eos or len(ids) == len(row)) and eos not in ids[:-1]
    assert engine.texts(record) == [tokenizer.decode(c, skip_special_tokens=True) for c in completions]


def test_a_saved_checkpoint_loads_with_its_tokenizer_and_other_models_are_refused(tmp_path):
    from unmask.rollouts.diffusion_gemma_engine import load_block_diffusion
    from unmask.rollouts.models.checkpoint import CheckpointError
    from unmask.rollouts.tokenizer import TokenizerError

    from ..paths import LLADA_TINY
    model = tiny_diffusion_gemma(seed=3, vocab_size=300, eos_token_id=257, bos_token_id=258)
    model.save_pretrained(tmp_path / "dg")
    loaded, tokenizer = load_block_diffusion(tmp_path / "dg", dtype="float32", device="cpu", tokenizer="bytes")
    assert tokenizer.eos_token_id == 257 and tokenizer.decode(tokenizer("ab")["input_ids"]) == "ab"
    ids = torch.tensor([[2, 10, 11]])
    record = sample(loaded, ids, config=BlockDiffusionConfig(max_new_tokens=8, max_denoising_steps=3),
                    generator=torch.Generator().manual_seed(1))
    again = sample(model, ids, config=BlockDiffusionConfig(max_new_tokens=8, max_denoising_steps=3),
                   generator=torch.Generator().manual_seed(1))
    assert torch.equal(record.sequences, again.sequences)
    with pytest.raises(TokenizerError, match="ships no tokenizer"):
        load_block_diffusion(tmp_path / "dg", dtype="float32", device="cpu")
    with pytest.raises(CheckpointError, match="model_type 'llada' is not diffusion_gemma.*load_model"):
        load_block_diffusion(LLADA_TINY, device="cpu")
