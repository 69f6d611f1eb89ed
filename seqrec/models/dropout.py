"""Dropout with a random mask that is cheaper to draw than `torch.nn.Dropout`'s on a CPU.

`nn.Dropout` draws one Bernoulli sample per element; in a torch.profiler run of a SASRec
training step on ML-1M (2 cores), once the cross-entropy was chunked, that draw was the largest
single cost, about a quarter of the step. Here one 64-bit random integer gives four 15-bit
uniform numbers, and an element is kept when its number is at least ``round(p * 2**15)``:
the drop rate is ``p`` to within 2**-16, and the kept elements are scaled so the expectation
is unchanged. The draw uses torch's generator on the tensor's device, so ``torch.manual_seed``
makes it reproducible, as with `nn.Dropout`. `benchmarks/results/train_step.md` has the step
times before and after.
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 2**15  # resolution of the drop rate


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability 1 - p (to 2**-16)."""
    count = shape.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()
    # random_() fills int64 with 0 .. 2**63 - 1: every 16-bit lane but the sign bit is uniform
    lanes = words.view(torch.int16)[:count].view(shape) & (LEVELS - 1)  # uniform 0 .. 2**15 - 1
    return lanes >= round(p * LEVELS)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    dropped = round(p * LEVELS)
    return x * keep_mask(x.shape, p, x.device) * (LEVELS / (LEVELS - dropped))


class Dropout(nn.Module):
    """`nn.Dropout` with the cheaper mask of `dropout`; the identity in eval mode."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
