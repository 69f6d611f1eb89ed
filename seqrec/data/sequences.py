"""Turn per-user histories into padded item-index tensors, without Python loops over events.

Convention shared by every model: a padded sequence holds ``item_idx + 1`` and ``0`` is padding.
Sequences are right-aligned (left-padded), so the most recent item always sits at the last
position and the last hidden state is the user's state. There are no per-user parameters: a user
is their history, so a shopper never seen in training is served from the items they browsed.

Items that share a user's timestamp form one basket; they stay next to each other in file order
(``basket_ids`` marks them), which is how next-basket targets (H&M days) are kept together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from seqrec.data.dataset import user_codes

if TYPE_CHECKING:
    from seqrec.data.split import Split

PAD = 0


@dataclass
class Sequences:
    users: np.ndarray  # [U] user ids
    items: torch.Tensor  # [U, L] int64, item_idx + 1, 0 = padding, most recent at L - 1
    basket_ids: torch.Tensor  # [U, L] int64, 1.. per user in time order, 0 = padding

    def __len__(self) -> int:
        return len(self.users)


def pad_from_csr(indptr: np.ndarray, values: np.ndarray, max_len: int) -> np.ndarray:
    """Right-aligned [U, max_len] array from CSR rows, keeping each row's last max_len values.

    ``values`` are written as they are (callers add 1 to item indices first); missing = 0.
    """
    lengths = np.diff(indptr)  # [U]
    n_rows = len(lengths)
    row_of = np.repeat(np.arange(n_rows), lengths)  # [E]
    from_end = indptr[row_of + 1] - 1 - np.arange(len(values))  # [E], 0 = the row's last value
    keep = from_end < max_len
    out = np.zeros((n_rows, max_len), dtype=np.int64)
    out[row_of[keep], max_len - 1 - from_end[keep]] = values[keep]
    return out


def build_sequences(interactions: pd.DataFrame, max_len: int) -> Sequences:
    """One row per user: their last ``max_len`` interactions in time order.

    ``interactions`` must be sorted by (user_id, timestamp), as every loader returns them.
    """
    codes = user_codes(interactions["user_id"])  # [R]
    change = np.ones(len(codes), dtype=bool)
    change[1:] = codes[1:] != codes[:-1]
    starts = np.flatnonzero(change)
    indptr = np.append(starts, len(codes)).astype(np.int64)
    items = interactions["item_idx"].to_numpy(dtype=np.int64) + 1
    # basket number inside each user: increments when the timestamp changes or a user starts
    times = interactions["timestamp"].to_numpy()
    new_basket = change.copy()
    new_basket[1:] |= times[1:] != times[:-1]
    basket_counter = np.cumsum(new_basket)
    baskets = basket_counter - basket_counter[starts].repeat(np.diff(indptr)) + 1
    return Sequences(
        users=interactions["user_id"].iloc[starts].to_numpy(),
        items=torch.from_numpy(pad_from_csr(indptr, items, max_len)),
        basket_ids=torch.from_numpy(pad_from_csr(indptr, baskets, max_len)),
    )


def histories_to_tensor(histories: list[np.ndarray], max_len: int) -> torch.Tensor:
    """[B, max_len] padded model input from item-index histories (for serving and evaluation):
    each row the history's last max_len items + 1, right-aligned, 0 before them."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, history in enumerate(histories):
        tail = np.asarray(history, dtype=np.int64)[-max_len:]
        out[row, max_len - len(tail) :] = tail + 1
    return torch.from_numpy(out)


def target_pairs(batch: torch.Tensor, target: str, last: int = 0):
    """Training pairs of a batch [B, 2, L + 1]: (rows [P], query positions [P], targets [P]).

    The state after input position ``cols[p]`` of row ``rows[p]`` must rank item ``targets[p]``
    (0-based). ``next_item``: every position predicts the item right after it. ``next_basket``:
    the last position of each basket predicts every item of the next basket, and nothing is
    predicted from the items of its own basket (the next-basket protocol of H&M, where a day's
    purchases come in arbitrary order). Positions are those of the inputs ``batch[:, 0, :-1]``.
    ``last`` > 0 keeps only the targets in each row's last ``last`` items (next_item) or baskets
    (next_basket): the end of a history is what is evaluated, and shoppers with long histories
    behave differently (more repeats) from the same shoppers at their start.
    """
    items, baskets = batch[:, 0], batch[:, 1]  # [B, L + 1]
    if target == "next_item":
        mask = (items[:, :-1] > 0) & (items[:, 1:] > 0)  # [B, L]
        if last:
            mask[:, : max(0, mask.shape[1] - last)] = False
        rows, cols = mask.nonzero(as_tuple=True)  # [P], [P]
        return rows, cols, items[:, 1:][rows, cols] - 1
    length = items.shape[1]
    positions = torch.arange(length, device=items.device).expand_as(items)  # [B, L + 1]
    starts = torch.ones_like(items, dtype=torch.bool)
    starts[:, 1:] = baskets[:, 1:] != baskets[:, :-1]  # first position of each basket
    first = torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values
    query = first - 1  # [B, L + 1] last position of the previous basket (-1: none)
    previous = items.gather(1, query.clamp_min(0))  # item at the query position
    mask = (items > 0) & (query >= 0) & (previous > 0)  # [B, L + 1] target positions
    if last:
        mask &= baskets > baskets[:, -1:] - last  # basket numbers grow to the row's last
    rows, target_cols = mask.nonzero(as_tuple=True)
    return rows, query[rows, target_cols], items[rows, target_cols] - 1


EXAMPLE_CHUNK = 65536  # users whose training targets are found at once


def training_examples(split: Split, max_len: int, target: str = "next_item") -> torch.Tensor:
    """[U, 2, max_len + 1] right-aligned training sequences: item_idx + 1 ([:, 0]) and basket
    numbers ([:, 1]), for the users with at least one training target (`target_pairs`)."""
    sequences = build_sequences(split.train, max_len + 1)
    examples = torch.stack([sequences.items, sequences.basket_ids], dim=1)  # [U, 2, L + 1]
    del sequences
    keep = torch.zeros(len(examples), dtype=torch.bool)
    for start in range(0, len(examples), EXAMPLE_CHUNK):  # bounded temporaries at any size
        rows, _, _ = target_pairs(examples[start : start + EXAMPLE_CHUNK], target)
        keep[start + rows] = True  # every user with a target has one at the end
    return examples[keep]
