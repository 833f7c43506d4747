"""The order prompts are visited in: deterministic, resumable, a fresh permutation each epoch.

Epoch e visits the rows in a permutation drawn from (seed, e); the position (epoch, index) is the whole
state, saved with each checkpoint, so a resumed run sees exactly the prompts it would have.
"""
from __future__ import annotations

import random


class PromptOrder:
    """Deterministic, resumable order over ``n`` rows: a fresh permutation each epoch."""

    def __init__(self, n: int, seed: int, epoch: int = 0, index: int = 0):
        self.n, self.seed, self.epoch, self.index = n, seed, epoch, index
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> list[int]:
        perm = list(range(self.n))
        random.Random(f"prompts:{self.seed}:{epoch}").shuffle(perm)
        return perm

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.index == self.n:
                self.epoch, self.index = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            out.append(self._perm[self.index])
            self.index += 1
        return out

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.index / self.n

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._perm = self._permutation(self.epoch)
