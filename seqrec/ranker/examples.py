"""Training queries from past baskets: each earlier basket a target, the purchases before it the
history.

A basket is every event of one shopper at one timestamp (one H&M purchase day). A shopper with
baskets b1 < b2 < ... < bm gives the queries (history = events before b_j, cutoff = time of
b_j, targets = the distinct items of b_j) for the last ``n_baskets`` of b2..bm: the first basket
has no history to learn from. Only the shopper's own events before the cutoff form the history,
and sources and features read other shoppers' events before it (`seqrec.ranker.events`), so a
query sees nothing of its own basket or later.

With a sequence model, the model that scores these queries is a second copy trained on the
table without them (`without_last_baskets`): a model trained on a basket scores its items
in-sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqrec.data.dataset import sort_interactions
from seqrec.ranker.queries import Queries


def training_queries(
    interactions: pd.DataFrame, n_baskets: int
) -> tuple[Queries, list[np.ndarray]]:
    """Every user's last ``n_baskets`` baskets that have an earlier basket, as queries (users in id
    order, baskets in time order) and their targets (distinct items, ascending).

    interactions: a fit table (``user_id``, ``item_idx``, ``timestamp``), sorted here by user
    then time (file order kept inside a timestamp).
    """
    table = sort_interactions(interactions[["user_id", "item_idx", "timestamp"]])
    items = table["item_idx"].to_numpy(dtype=np.int64)  # [E]
    times = table["timestamp"].to_numpy(dtype=np.int64)  # [E]
    users = pd.factorize(table["user_id"])[0]  # [E] codes, ascending in the sorted table
    # one row per (user, timestamp) basket, in table order, with its first event's position
    first = np.flatnonzero(np.r_[True, (users[1:] != users[:-1]) | (times[1:] != times[:-1])])
    basket_user = users[first]  # [K]
    per_user = pd.Series(basket_user).groupby(basket_user)
    from_start = per_user.cumcount().to_numpy()  # [K] 0 = the user's first basket
    from_end = per_user.cumcount(ascending=False).to_numpy()  # [K] 0 = the user's last
    chosen = np.flatnonzero((from_start >= 1) & (from_end < n_baskets))  # [Q] basket rows
    ends = np.r_[first[1:], len(items)]  # [K] one past each basket's last event
    user_start = first[chosen - from_start[chosen]]  # [Q] the user's first event
    histories, history_times, targets = [], [], []
    for start, stop, end in zip(user_start, first[chosen], ends[chosen], strict=True):
        histories.append(items[start:stop])
        history_times.append(times[start:stop])
        targets.append(np.unique(items[stop:end]))
    return Queries(histories, history_times, times[first[chosen]]), targets


def without_last_baskets(interactions: pd.DataFrame, n_baskets: int = 1) -> pd.DataFrame:
    """``interactions`` without each user's last ``n_baskets`` baskets (the events at the user's
    latest ``n_baskets`` timestamps): what the nested sequence model is trained on, so that
    the training queries of those baskets (`training_queries` with the same ``n_baskets``) are
    scored by a model that never saw their targets. Row order and columns kept."""
    from_end = interactions.groupby("user_id", sort=False)["timestamp"].rank(
        method="dense", ascending=False
    )  # 1 = the user's last basket
    keep = from_end.to_numpy() > n_baskets
    return interactions[keep].reset_index(drop=True)
