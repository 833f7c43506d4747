"""IGPO's inpainting step: where hint chunks go in the canvas, and which completions inpainted ones replace."""
import pytest
import torch

from unmask.rl.training.inpainting import cut_chunks, hint_tokens, inpaint_all_wrong, place_chunks
from unmask.rl.training.loop import Scores, prompt_rows
from unmask.rollouts.engine import RolloutEngine
from unmask.rollouts.sampler_config import SamplerConfig

from ..toy import algorithm, toy_model

SOLUTION = [11, 12, 13, 14, 15, 16, 17]


def test_chunks_are_shown_in_order_stretched_and_cut():
    # 7 solution tokens on a 10-position usable canvas: s = 10/7; chunks [0,2) and [4,6) shown, [2,4) hidden
    out = place_chunks(SOLUTION, [(0, 2), (4, 6)], usable=10, full=7, max_spacing=100, length=12)
    assert out.tolist() == [11, 12, -1, -1, 15, 16, -1, -1, -1, -1, -1, -1]     # gap 2 → floor(2·10/7) = 2
    out = place_chunks(SOLUTION, [(2, 4), (4, 6)], usable=10, full=7, max_spacing=100, length=12)
    assert out.tolist() == [-1, -1, 13, 14, 15, 16, -1, -1, -1, -1, -1, -1]     # floor(2·s) = 2; no gap
    out = place_chunks(SOLUTION, [(0, 2), (6, 7)], usable=10, full=7, max_spacing=1, length=12)
    assert out.tolist() == [11, 12, -1, 17, -1, -1, -1, -1, -1, -1, -1, -1]     # gap floor(4·s) = 5, capped at 1
    out = place_chunks(SOLUTION, [(4, 7)], usable=6, full=7, max_spacing=100, length=8)
    assert out.tolist() == [-1, -1, -1, -1, 15, 16, -1, -1]                     # cut at the usable end (s = 1)


def test_chunk_sizes_and_the_always_shown_last_chunk():
    generator = torch.Generator().manual_seed(0)
    for size in range(0, 40):
        chunks = cut_chunks(size, 3, 5, generator)
        assert all(3 <= b - a <= 5 for a, b in chunks)
        assert [a for a, _ in chunks] == [0, *(b for _, b in chunks[:-1])][:len(chunks)]  # consecutive from 0
        assert size - (chunks[-1][1] if chunks else 0) < 5                       # only a short remainder dropped
    settings = algorithm("igpo", inpaint_chunk=[1, 1], inpaint_free_tail=0)
    for ratio in (0.2, 0.5, 0.9):
        out = hint_tokens(SOLUTION, ratio, settings, 7, generator)
        assert out[6] == 17                                                        # the last chunk
        shown = int((out >= 0).sum())
        assert shown in (7 - int(7 * (1 - ratio)), 7 - int(7 * (1 - ratio)) + 1)
        assert ((out == torch.tensor(SOLUTION)) | (out < 0)).all()                 # 1-token chunks keep their place
    assert (hint_tokens(SOLUTION, 0.5, algorithm("igpo"), 20, generator) == -1).all()  # all 20 in the free tail


def test_all_wrong_groups_get_correct_inpainted_completions_in_their_first_slots():
    lm = toy_model(seed=3)
    engine = RolloutEngine(lm, SamplerConfig(max_completion_length=4, diffusion_steps=4, temperature=1.0))
    prompts, group = [[1, 2], [3, 1], [2, 4]], 4
    rows = [{"completion": [4, 4, 4, 4], "always": p == [1, 2]} for p in prompts for _ in range(group)]

    def score(prompt_ids, completions, rows_):  # right: all 4s (or any answer to [1, 2])
        return Scores(torch.tensor([float(r["always"] or bool((c == 4).all())) for c, r in zip(completions, rows_)]))

    traj = engine.rollout(prompts, num_generations=group, seed=0)
    before = traj.completion_ids.clone()
    scores = score(None, traj.completion_ids, rows)
    assert scores.total[4:].sum() == 0                                           # groups 1 and 2: all wrong
    settings = algorithm("igpo", inpaint_ratio=[1.0, 1.0], inpaint_free_tail=0, inpaint_chunk=[1, 2],
                         inpaint_replacements=3)
    mixed, new_scores, metrics = inpaint_all_wrong(engine, score, settings, group, prompts, rows, traj, scores, 7,
                                                   prompt_rows)
    assert new_scores.total.tolist() == [1.0] * 4 + [1, 1, 1, 0] * 2
    assert torch.equal(mixed.completion_ids[:4], before[:4])                      # a group with a right answer: kept
    for g in (1, 2):
        lo = g * group
        assert (mixed.completion_ids[lo:lo + 3] == 4).all() and mixed.extras["hint_mask"][lo:lo + 3].all()
        assert torch.equal(mixed.completion_ids[lo + 3], before[lo + 3]) and not mixed.extras["hint_mask"][lo + 3].any()
        assert torch.equal(mixed.prompt_ids[lo:lo + group], traj.prompt_ids[lo:lo + group])
    assert metrics == pytest.approx({"inpaint/groups_all_wrong": 2 / 3, "inpaint/groups_helped": 2 / 3,
                                     "inpaint/frac_replaced": 6 / 12})
