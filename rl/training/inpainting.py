"""IGPO's inpainting (facebookresearch/igpo ``utils/generate.py``, ``trainer_igpo.py``): a group whose completions
are all wrong is rolled out again with chunks of the prompt's reference solution fixed in the canvas, and up to
``inpaint_replacements`` correct inpainted completions replace the group's first completions, so the group carries
a learning signal. The loss then sees the mixed group; its hint tokens are marked (``extras["hint_mask"]``) for
IGPO's entropy filter (``rl/training/update.py``).

Hints of one completion (:func:`hint_tokens`), with the solution's tokens y and the usable canvas
U = L − ``inpaint_free_tail``: y (cut to U tokens) is cut into consecutive chunks of ``inpaint_chunk`` [min, max]
tokens (a remainder shorter than min is dropped); with the completion's ratio ρ, floor(n·(1 − ρ)) chunks drawn at
random stay hidden and the last chunk is always shown. Shown chunks keep their order: the first starts at
floor(a·s), each next one floor(gap·s) (at most ``inpaint_max_spacing``) after the previous one's end, with
s = clamp(U / |y|, 1, 1.5); a chunk is cut at U. Ratios ρ ~ U[lo, hi) (``inpaint_ratio``), one per completion,
sorted within the group. Everything is drawn from the step's seed, so a resumed run draws the same hints.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from unmask.rollouts.trajectory import Trajectory


def solution_ids(value: Any, adapter) -> list[int]:
    """The reference solution's token ids: a list of ids as is, text through the tokenizer."""
    if isinstance(value, (list, tuple)) and all(isinstance(t, int) for t in value):
        return list(value)
    if not isinstance(value, str):
        raise ValueError(f"algorithm.inpaint_column holds {type(value).__name__} values; IGPO needs each prompt's "
                         f"reference solution as text (or token ids)")
    return adapter.tokenizer(value, add_special_tokens=False)["input_ids"]


def cut_chunks(size: int, lo: int, hi: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """[a, b) spans cutting ``size`` tokens into consecutive chunks of lo..hi tokens (a remainder < lo is dropped)."""
    chunks, start = [], 0
    while start < size:
        n = min(int(torch.randint(lo, hi + 1, (), generator=generator)), size - start)
        if n < lo:
            break
        chunks.append((start, start + n))
        start += n
    return chunks


def place_chunks(solution: list[int], shown: list[tuple[int, int]], usable: int, full: int, max_spacing: int,
                 length: int) -> torch.Tensor:
    """[L] the shown chunks of ``solution`` in the canvas (−1 elsewhere): the first at floor(a·s), each next one
    min(floor(gap·s), max_spacing) after the previous one's end, s = clamp(usable / full, 1, 1.5), cut at usable."""
    out = torch.full((length,), -1, dtype=torch.long)
    scale = min(max(usable / max(full, 1), 1.0), 1.5)
    end = previous = None
    for a, b in shown:
        at = int(a * scale) if end is None else end + min(int((a - previous) * scale), max_spacing)
        if at >= usable:
            break
        n = min(b - a, usable - at)
        out[at: at + n] = torch.tensor(solution[a: a + n])
        end, previous = at + n, b
    return out


def hint_tokens(solution: list[int], ratio: float, settings, length: int, generator: torch.Generator) -> torch.Tensor:
    """[L] the tokens fixed in one completion's canvas (−1: free); see the module docstring."""
    usable = max(0, length - settings.inpaint_free_tail)
    chunks = cut_chunks(min(len(solution), usable), *settings.inpaint_chunk, generator)
    if not chunks:
        return torch.full((length,), -1, dtype=torch.long)
    hidden = set(torch.randperm(len(chunks), generator=generator)[:int(len(chunks) * (1 - ratio))].tolist())
    hidden.discard(len(chunks) - 1)  # the last chunk is always shown
    shown = [c for i, c in enumerate(chunks) if i not in hidden]
    return place_chunks(solution, shown, usable, len(solution), settings.inpaint_max_spacing, length)


def _take_scores(scores, extra, index: list[int]):
    """The scores of rows ``index`` of ``scores`` followed by ``extra``."""
    def pick(a, b):
        return None if a is None or b is None else [(list(a) + list(b))[i] for i in index]
    total = torch.cat([torch.as_tensor(scores.total).float(), torch.as_tensor(extra.total).float()])[index]
    per_reward = {k: pick(v, extra.per_reward.get(k)) for k, v in scores.per_reward.items()}
    return type(scores)(total, per_reward, pick(scores.prompts, extra.prompts), pick(scores.texts, extra.texts))


def inpaint_all_wrong(engine, score: Callable, settings, group: int, prompts: Sequence, rows: Sequence,
                      traj: Trajectory, scores, seed: int, prompt_ids: Callable) -> tuple[Trajectory, Any, dict]:
    """IGPO's step between scoring and advantages: the trajectory and scores with the replacements made, and
    ``inpaint/*`` metrics (the share of groups all wrong, of groups given a correct inpainted completion, and
    of completions replaced). ``rows`` holds each completion's dataset row; ``prompt_ids(traj)`` each row's ids."""
    total = torch.as_tensor(scores.total).float().nan_to_num(0.0)
    correct = (total >= settings.correct_reward).view(-1, group)
    wrong = [g for g in range(correct.shape[0]) if not bool(correct[g].any())]
    metrics = {"inpaint/groups_all_wrong": len(wrong) / correct.shape[0], "inpaint/groups_helped": 0.0,
               "inpaint/frac_replaced": 0.0}
    traj.extras.setdefault("hint_mask", torch.zeros_like(traj.completion_ids, dtype=torch.bool))
    if not wrong:
        return traj, scores, metrics
    generator = torch.Generator().manual_seed((seed * 2_654_435_761 + 97) % 2 ** 32)
    length, low, high = traj.completion_length, *settings.inpaint_ratio
    fixed = []
    for g in wrong:
        solution = solution_ids(rows[g * group][settings.inpaint_column], engine.adapter)
        ratios = (torch.rand(group, generator=generator, dtype=torch.float64) * (high - low) + low).sort().values
        fixed += [hint_tokens(solution, float(r), settings, length, generator) for r in ratios]
    hinted = engine.rollout([prompts[g] for g in wrong], num_generations=group,
                            seed=(seed * 1_000_003 + 7_919) % 2 ** 31, fixed=torch.stack(fixed))
    hinted_rows = [rows[g * group] for g in wrong for _ in range(group)]
    hinted_scores = score(prompt_ids(hinted), hinted.completion_ids, hinted_rows)
    ok = (torch.as_tensor(hinted_scores.total).float().nan_to_num(0.0) >= settings.correct_reward).view(-1, group)
    index, size, helped = list(range(traj.batch_size)), traj.batch_size, 0
    for j, g in enumerate(wrong):
        good = ok[j].nonzero().flatten()
        if len(good) > settings.inpaint_replacements:  # a random subset, as the code
            good = good[torch.randperm(len(good), generator=generator)[:settings.inpaint_replacements]]
        for slot, i in enumerate(good.tolist()):       # into the group's first slots
            index[g * group + slot] = size + j * group + i
        helped += bool(len(good))
    metrics.update({"inpaint/groups_helped": helped / correct.shape[0],
                    "inpaint/frac_replaced": sum(i >= size for i in index) / size})
    return Trajectory.cat([traj, hinted]).take(index), _take_scores(scores, hinted_scores, index), metrics
