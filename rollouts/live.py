"""``unmask generate --show``: the canvas redrawn in the terminal at every decoding step (``rich.live``).

Each row is its prompt (dim) and its completion: masked positions as a dim ``░``, tokens the last step committed in
bold green (and, for samplers that undo commits such as RCR, positions it re-masked in red), the others plain, with
a ``│`` before each block after the first. The header counts steps and forward passes. The view is fed by the
sampler's ``on_step`` hook (the model input before each forward pass) and ends with the final state. When stdout
is not a terminal nothing is drawn: ``unmask generate`` prints its usual lines.
"""
from __future__ import annotations

import torch

MASK_GLYPH = "░"


class LiveCanvas:
    def __init__(self, tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, mask_id: int,
                 blocks: list[tuple[int, int]], console=None):
        from rich.console import Console
        from rich.live import Live
        self.tokenizer, self.mask_id, self.blocks = tokenizer, mask_id, blocks
        self.prompts = [tokenizer.decode(p[m.bool()].tolist()) for p, m in zip(prompt_ids, prompt_mask)]
        self.width = prompt_ids.shape[1]
        self.previous: torch.Tensor | None = None
        self.steps = 0
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)

    def __enter__(self) -> "LiveCanvas":
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def on_step(self, step: int, x: torch.Tensor) -> None:
        """The sampler's hook: ``x`` [B, P + L] is the input of step ``step`` (what the steps before it left)."""
        self.steps += 1
        self.show(x[:, self.width:].cpu(), f"step {step} · {self.steps} forward passes")

    def finish(self, completion: torch.Tensor, steps: int, nfe: int) -> None:
        self.show(completion.cpu(), f"done: {steps} steps · {nfe} forward passes")

    def show(self, completion: torch.Tensor, header: str) -> None:
        from rich.console import Group
        from rich.text import Text
        before = self.previous if self.previous is not None else torch.full_like(completion, self.mask_id)
        starts = {lo for lo, _ in self.blocks if lo > 0}
        lines = [Text(header, style="bold")]
        for row, ids in enumerate(completion.tolist()):
            line = Text(self.prompts[row], style="dim")
            for i, t in enumerate(ids):
                if i in starts:
                    line.append("│", style="blue")
                was = int(before[row, i])
                if t == self.mask_id:
                    line.append(MASK_GLYPH, style="red" if was != self.mask_id else "dim")
                else:
                    text = self.tokenizer.decode([t]).replace("\n", "↵")
                    line.append(text, style="bold green" if was == self.mask_id else "")
            lines.append(line)
        self.previous = completion
        self.live.update(Group(*lines), refresh=True)
