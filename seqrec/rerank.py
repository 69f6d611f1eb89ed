"""The history re-rank: a shopper's own history items above every other item.

It runs on full-catalogue scores [B, N] after whatever produced them (the model's raw scores,
or a baseline's) and before ranking. Items outside the history keep their scores; the history
items go first, in one of three orders:

- ``"score"``: their own scores' order (each lifted by the row's score spread + 1);
- ``"recency"``: the latest purchase first (a lifted item scores ``row max + 1 + key``, key from
  `history_key`);
- ``"frequency"``: the most often bought first, ties by recency (the repeat baselines).

``slots`` > 0: only that many history items (the first in that order) go first; the others
compete with every other item. The model's settings are ``model.history_first``,
``history_slots`` and ``history_order`` (`HistoryFirst.of`).

Histories come as the model reads them: ``seq`` [B, L], item_idx + 1, right-aligned, 0 =
padding (`seqrec.data.sequences.histories_to_tensor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from seqrec.models.recommender import ModelConfig

ORDERS = ("score", "recency", "frequency")


def history_key(
    seq: torch.Tensor, n_items: int, order: str = "recency", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[B, N] ordering key of each row's history items, 0 for every other item: distinct
    positive integers within a row, the first item the largest.

    order="recency": 1 + the position in ``seq`` of the item's latest occurrence (1..L).
    order="frequency": its number of occurrences x (L + 1) + that recency key.
    """
    if order not in ("recency", "frequency"):
        raise ValueError(f"unknown history order {order!r}; use 'recency' or 'frequency'")
    rows, length = seq.shape
    present = seq > 0  # [B, L]
    index = seq.sub(1).clamp_min(0)  # [B, L] padding writes 0 onto item 0: no effect on a max
    positions = torch.arange(1, length + 1, device=seq.device, dtype=dtype) * present  # [B, L]
    blank = torch.zeros(rows, n_items, device=seq.device, dtype=dtype)  # [B, N]
    latest = blank.scatter_reduce(1, index, positions, "amax")  # [B, N]
    if order == "recency":
        return latest
    counts = blank.scatter_add(1, index, present.to(dtype))  # [B, N]
    return torch.where(latest > 0, counts * (length + 1) + latest, latest)


@dataclass(frozen=True)
class HistoryFirst:
    """Scores [B, N] -> scores with the history items of ``seq`` [B, L] above the rest."""

    order: str = "score"  # one of ORDERS
    slots: int = 0  # how many history items go first (the first in ``order``); 0 = all

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"unknown history order {self.order!r}; expected one of {ORDERS}")
        if self.slots < 0:
            raise ValueError(f"history slots must be at least 0, not {self.slots}")

    @classmethod
    def of(cls, config: ModelConfig) -> HistoryFirst | None:
        """The re-rank a model's ``config`` asks for; None without ``history_first``."""
        if not config.history_first:
            return None
        return cls(order=config.history_order, slots=config.history_slots)

    def __call__(self, scores: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        if self.order == "score":
            return self._by_score(scores, seq)
        return self._by_key(scores, history_key(seq, scores.shape[1], self.order, scores.dtype))

    def _by_key(self, scores: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Items with ``key`` > 0 (the ``slots`` largest, with slots) score ``row max + 1 +
        key``: above every other item, the largest key first."""
        first = key > 0  # [B, N] in the history
        if self.slots:
            slots = min(self.slots, scores.shape[1])
            threshold = key.topk(slots, dim=1).values[:, -1:]  # [B, 1] 0 if the history is short
            first = first & (key >= threshold)
        top = scores.amax(dim=1, keepdim=True)  # [B, 1]
        return torch.where(first, top + 1.0 + key, scores)

    def _by_score(self, scores: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """History items (the ``slots`` best-scored, with slots) lifted by the row's score
        spread + 1: above every other item, in their own order."""
        spread = scores.amax(dim=1, keepdim=True) - scores.amin(dim=1, keepdim=True)  # [B, 1]
        latest = seq[:, -1:]  # [B, 1], 0 only for an empty history
        # every history item (padding stands for the latest item) goes above the rest: each
        # write to an item carries the same value, so repeats and padding are harmless
        index = torch.where(seq > 0, seq, latest).sub(1).clamp_min(0)  # [B, L]
        lift = (spread + 1.0) * (latest > 0)  # [B, 1]
        if self.slots:
            return scores + lift * self._best_slots(scores, index)
        return scores.scatter(1, index, scores.gather(1, index) + lift)  # [B, N]

    def _best_slots(self, scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """[B, N] 1.0 at the ``slots`` best-scored distinct items of each history (``index``
        [B, L], 0-based, padding already replaced by the latest item), else 0.0."""
        in_history = torch.zeros_like(scores, dtype=torch.bool).scatter(1, index, True)  # [B, N]
        ranked = torch.where(in_history, scores, torch.full_like(scores, -torch.inf))
        best = ranked.topk(min(self.slots, scores.shape[1]), dim=1)  # [B, S]
        first = torch.zeros_like(scores).scatter(1, best.indices, 1.0)  # [B, N]
        return first * in_history  # an ordinary item never fills a slot a short history left
