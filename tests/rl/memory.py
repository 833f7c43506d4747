"""Peak activation memory on any device, measured exactly: the bytes of tensors autograd keeps for
the backward pass that are alive at once (``torch.autograd.graph.saved_tensors_hooks``). Used by the
tests that show step-by-step backward keeps memory flat in the number of steps.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class _Held:
    """A saved tensor plus the bookkeeping that releases its bytes when autograd drops it."""

    __slots__ = ("tensor", "meter", "nbytes")

    def __init__(self, tensor: torch.Tensor, meter: "SavedTensorMeter"):
        self.tensor, self.meter = tensor, meter
        self.nbytes = tensor.numel() * tensor.element_size()
        meter.current += self.nbytes
        meter.peak = max(meter.peak, meter.current)

    def __del__(self):
        self.meter.current -= self.nbytes


class SavedTensorMeter:
    def __init__(self):
        self.current = 0
        self.peak = 0


@contextmanager
def track_saved_tensors() -> Iterator[SavedTensorMeter]:
    """``with track_saved_tensors() as m: ...`` then ``m.peak`` = peak bytes saved for backward."""
    meter = SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: _Held(t, meter), lambda held: held.tensor):
        yield meter
