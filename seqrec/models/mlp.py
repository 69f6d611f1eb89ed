"""MLP sequence backbone over a recency-weighted pooling of the history.

The state at position t pools the real items up to t with exponentially decaying weights,

    pooled_t = sum_{s <= t} exp(-rate * (t - s)) x_s  /  sum_{s <= t} exp(-rate * (t - s)),

(a running weighted mean where the latest item weighs 1, the one before exp(-rate), ...), then
an MLP maps it to the hidden state. The decay ``rate`` is learnable (or fixed). Every position
gets its state in one pass, causally, with a cumulative sum instead of a loop over time:
exp(-rate * (t - s)) = exp(rate * (s - T)) / exp(rate * (t - T)) for any reference T, and the
factor of t cancels between numerator and denominator. With T = L - 1 every weight is at most 1;
the sums run in float64 and the rate is capped at 700 / (max_len - 1), so the smallest weight,
exp(-700), stays representable and no state divides by zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLPEncoder(nn.Module):
    def __init__(
        self,
        dim: int,
        layers: int = 2,
        dropout: float = 0.1,
        max_len: int = 50,
        decay: float = 0.5,
        learn_decay: bool = True,
    ):
        super().__init__()
        if decay <= 0:
            raise ValueError(f"decay must be positive, got {decay}")
        self.max_len = max_len
        self.max_rate = 700.0 / max(max_len - 1, 1)
        raw = torch.tensor(math.log(math.expm1(decay)))  # inverse softplus: rate starts at decay
        if learn_decay:
            self.raw_rate = nn.Parameter(raw)
        else:
            self.register_buffer("raw_rate", raw)
        self.dropout = nn.Dropout(dropout)
        self.input = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(dim),
                nn.Linear(dim, 4 * dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(4 * dim, dim),
                nn.Dropout(dropout),
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    @property
    def rate(self) -> torch.Tensor:
        """The decay per step (a scalar tensor): weight exp(-rate) for the previous item."""
        return F.softplus(self.raw_rate).clamp(max=self.max_rate)

    def pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Causal recency-weighted mean: x [B, L, D], mask [B, L] -> [B, L, D] (0 at padding)."""
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}")
        steps = torch.arange(length, device=x.device, dtype=torch.float64) - (length - 1)  # [L]
        weights = torch.exp(self.rate.double() * steps) * mask  # [B, L], in (0, 1]
        numerator = torch.cumsum(weights.unsqueeze(-1) * x.double(), dim=1)  # [B, L, D]
        denominator = torch.cumsum(weights, dim=1).unsqueeze(-1)  # [B, L, 1]
        has_items = denominator > 0  # False on the left padding
        safe = torch.where(has_items, denominator, torch.ones_like(denominator))
        pooled = torch.where(has_items, numerator / safe, torch.zeros_like(numerator))
        return pooled.to(x.dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D] item vectors, mask: [B, L] bool (True at real items) -> [B, L, D]."""
        h = self.input(self.dropout(self.pool(x, mask)))  # [B, L, D]
        for block in self.blocks:
            h = h + block(h)
        return self.norm(h) * mask.unsqueeze(-1)
