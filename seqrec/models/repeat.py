"""Repeat bias: a learned score bonus for items already in the user's history.

Shoppers buy again what they bought before (on H&M, repeat purchases are the strongest single
signal). A dot product between the history state and item vectors can only express this
indirectly, so the recommender may add, for every history item, a learned weight that depends on
how many steps ago it occurred:

    bias(user, item) = w[steps since `item` was last seen in the history]

Only the latest occurrence counts: ranking the history by recency ("what did I buy last") is
a much stronger signal on H&M than by how often an item was bought (validation NDCG@12 0.040 vs
0.032 for the repeat-then-content-KNN heuristic), and a sum over occurrences is the latter.

``w`` starts at zero (no effect) and is learned with the rest of the model; the data decide
whether repeats help (fashion baskets) or not (ML-1M, where seen items are removed anyway).
Adam moves a parameter by about the learning rate per step whatever its gradient, while these
bonuses live on the logit scale (several units), so they are stored divided by ``SCALE``: the
bonus is ``SCALE * weight`` and reaches useful values within a few hundred steps.
"""

from __future__ import annotations

import torch
from torch import nn

SCALE = 10.0


def seen_later(history: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """[M, L] bool: True where the item at position j occurs again at a visible j' > j.

    history [M, L] (item_idx + 1), visible [M, L] bool. ``visible & ~seen_later(...)`` marks
    the latest visible occurrence of each item.
    """
    length = history.shape[1]
    same = history[:, :, None] == history[:, None, :]  # [M, L, L] same item at j and j'
    later = torch.ones(length, length, dtype=torch.bool, device=history.device).triu(1)  # j' > j
    return (same & later & visible[:, None, :]).any(dim=2)  # [M, L]


class RepeatBias(nn.Module):
    def __init__(self, max_len: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_len))  # [L] bonus by steps back (0 = latest)

    def _rows(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        """History items and their weights for query positions (rows[m], cols[m]) of ``seq``.

        seq [B, L] (item_idx + 1, 0 = padding); a query at position t sees positions j <= t.
        Returns items [M, L] (0-based, -1 where nothing counts) and weights [M, L].
        """
        length = seq.shape[1]
        positions = torch.arange(length, device=seq.device)  # [L]
        history = seq[rows]  # [M, L]
        distance = cols[:, None] - positions[None, :]  # [M, L] steps back from the query
        visible = (distance >= 0) & (history > 0)  # [M, L]
        visible = visible & ~seen_later(history, visible)  # the latest visible occurrence
        weights = SCALE * self.weight[distance.clamp(0, length - 1)] * visible  # [M, L]
        items = torch.where(visible, history - 1, torch.full_like(history, -1))  # [M, L]
        return items, weights

    def full(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_items: int):
        """[M, N] bias over the whole catalogue for each query position."""
        items, weights = self._rows(seq, rows, cols)
        out = weights.new_zeros(rows.shape[0], n_items + 1)  # last column collects padding
        out.scatter_add_(1, torch.where(items < 0, n_items, items), weights)
        return out[:, :n_items]

    def at(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, candidates):
        """[M, C] bias for given candidate items [M, C] (or [C], shared by every row)."""
        items, weights = self._rows(seq, rows, cols)
        if candidates.dim() == 1:
            candidates = candidates[None, :].expand(rows.shape[0], -1)
        match = items[:, :, None] == candidates[:, None, :]  # [M, L, C]
        return (weights[:, :, None] * match).sum(dim=1)  # [M, C]

    def last_entries(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(items [B, L], bias [B, L]) after the whole history (the last position of
        right-aligned ``seq``): each history item's bias at its latest position, 0.0 at the
        others (whose item reads 0). Scattered with ``scatter_add`` they give `last`."""
        rows = torch.arange(seq.shape[0], device=seq.device)
        cols = torch.full_like(rows, seq.shape[1] - 1)
        items, weights = self._rows(seq, rows, cols)
        return items.clamp_min(0), weights

    def last(self, seq: torch.Tensor, n_items: int) -> torch.Tensor:
        """[B, N] bias after the whole history (the last position of right-aligned ``seq``)."""
        items, weights = self.last_entries(seq)
        return weights.new_zeros(seq.shape[0], n_items).scatter_add(1, items, weights)
