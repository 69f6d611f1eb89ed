"""GRU4Rec-style sequence backbone: a multi-layer GRU over the item vectors of a history.

Input sequences are right-aligned (left-padded): the real items are the last ``mask.sum()``
positions of each row. A GRU run over the padding first would change its state before the first
real item (its biases move the state even on zero inputs), so the encoder shifts each row to start
at position 0, runs the GRU, and shifts the outputs back. The state at a position then depends only
on the real items up to it: causal, and the same however much padding precedes the history.
"""

from __future__ import annotations

import torch
from torch import nn


class GRUEncoder(nn.Module):
    def __init__(self, dim: int, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.output_dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, dim)  # GRU states live in (-1, 1); let the scores scale freely

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D] item vectors, mask: [B, L] bool (True at real items) -> [B, L, D]."""
        _, length, dim = x.shape
        shift = length - mask.sum(dim=1)  # [B] number of padding positions
        positions = torch.arange(length, device=x.device)  # [L]
        # Left-align: position j of the shifted row reads position j + shift of the input.
        to_left = (positions + shift[:, None]) % length  # [B, L]
        x_left = x.gather(1, to_left[..., None].expand(-1, -1, dim))  # [B, L, D]
        h_left, _ = self.gru(self.input_dropout(x_left))  # [B, L, D]
        # Back to right alignment; positions past each row's length were garbage and become padding.
        to_right = (positions - shift[:, None]) % length  # [B, L]
        h = h_left.gather(1, to_right[..., None].expand(-1, -1, dim))  # [B, L, D]
        h = self.out(self.output_dropout(h))
        return h * mask.unsqueeze(-1)
