"""The purchase log, read as of a cutoff: how often, how recently and since when each item sold.

Every question is asked per (cutoff, item) pair and answered from events with timestamp strictly
below the cutoff, so nothing at or after the moment of a query can leak into its candidates or
features. Events are kept sorted by (item, timestamp): a windowed count is two binary searches
in the item's own events per pair (compiled), whatever the number of distinct cutoffs (linear
memory, no per-cutoff tables).

Time windows are in days: ``day`` is the number of timestamp units in a day (1 for day
timestamps, 86400 for seconds). Datasets whose timestamps only order one shopper's events
(``time_unit = "order"``, SASRec files) have no shared clock: there every cutoff reads the whole
log and windows are ignored (``day = None``).
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

DAY_UNITS = {"day": 1, "second": 86400}  # Dataset.time_unit -> timestamp units per day
NEVER = np.iinfo(np.int64).max  # `Events.first_sale` of an item never sold


def day_length(time_unit: str) -> int | None:
    """Timestamp units per day, None when timestamps are not a shared clock."""
    return DAY_UNITS.get(time_unit)


class Events:
    """Item sales before any cutoff.

    interactions: ``item_idx`` and ``timestamp`` columns (``user_id`` optional), one row per
    unit sold. day: timestamp units per day (`day_length`), None for order-only timestamps.
    """

    def __init__(self, interactions: pd.DataFrame, n_items: int, day: int | None):
        self.n_items, self.day = n_items, day
        items = interactions["item_idx"].to_numpy(dtype=np.int64)
        times = interactions["timestamp"].to_numpy(dtype=np.int64)
        self.t_min = int(times.min()) if len(times) else 0
        self.t_max = int(times.max()) if len(times) else 0
        self.span = self.t_max - self.t_min + 2  # a key per (item, time) with room for cutoffs
        order = np.lexsort((times, items))
        self.item_of = items[order]  # [E] sorted by item, then time
        self.time_of = times[order]  # [E]
        self.item_indptr = np.searchsorted(self.item_of, np.arange(n_items + 1))  # [N + 1]
        sold = np.diff(self.item_indptr) > 0  # [N]
        self.first_sale = np.full(n_items, NEVER, dtype=np.int64)  # [N] first sale, NEVER if none
        self.first_sale[sold] = self.time_of[self.item_indptr[:-1][sold]]
        by_time = np.argsort(times, kind="stable")
        self.items_by_time = items[by_time]  # [E] for per-cutoff tables (trending)
        self.times_by_time = times[by_time]  # [E] ascending
        if "user_id" in interactions:
            users = pd.factorize(interactions["user_id"])[0].astype(np.int64)
        else:
            users = np.full(len(items), -1, dtype=np.int64)
        self.users_by_time = users[by_time]  # [E]

    def __len__(self) -> int:
        return len(self.time_of)

    @property
    def timed(self) -> bool:
        return self.day is not None

    def _cut(self, cutoffs: np.ndarray, days: int | np.ndarray = 0) -> np.ndarray:
        """[C] cutoffs (moved ``days`` days back; [K, C] for ``days`` [K, 1]) as offsets from
        t_min, clipped to [0, span - 1]; the end of the log when timestamps are not a shared
        clock. A window's start is moved back before clipping, so a cutoff after the log's end
        still opens its window at ``cutoff - days``."""
        cutoffs = np.asarray(cutoffs, dtype=np.int64)
        if self.day is None:
            shape = np.broadcast_shapes(cutoffs.shape, np.shape(days))
            return np.full(shape, self.span - 1, dtype=np.int64)
        offsets = cutoffs - days * self.day - self.t_min
        return np.minimum(np.maximum(offsets, 0), self.span - 1)  # np.clip, without its checks

    def _position(self, items: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """[C] (or [K, C] for offsets [K, C]) index of the first event of ``items`` at or after
        ``offsets`` (from t_min): a binary search in the item's own events (its end when there
        is none)."""
        items = np.asarray(items, np.int64)
        times = np.asarray(offsets, np.int64) + self.t_min
        found = _first_at_or_after(self.item_indptr, self.time_of, items, np.atleast_2d(times))
        return found.reshape(times.shape)

    def count(self, items: np.ndarray, cutoffs: np.ndarray, days: int | None = None) -> np.ndarray:
        """[C] float32 sales of ``items[c]`` before ``cutoffs[c]``; with ``days``, only within the
        ``days`` days before it (timestamps in ``[cutoff - days * day, cutoff)``)."""
        return self.counts(items, cutoffs, (days,))[0]

    def counts(
        self, items: np.ndarray, cutoffs: np.ndarray, windows: tuple[int | None, ...]
    ) -> list[np.ndarray]:
        """`count` for each of ``windows`` (days, None = all before the cutoff), the cutoff's
        position in each item's events searched once."""
        items = np.asarray(items, np.int64)
        windowed = [days for days in windows if days is not None and self.timed]
        back = np.array([0, *windowed], dtype=np.int64)[:, None]  # [K, 1] days
        bounds = self._cut(cutoffs, back)  # [K, C]
        stop, *starts = self._position(items, bounds)  # [C] each, all searched in one pass
        out = []
        for days in windows:
            start = starts.pop(0) if days is not None and self.timed else self.item_indptr[items]
            out.append((stop - start).astype(np.float32))
        return out

    def last_time(self, items: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
        """[C] float64 timestamp of the last sale of ``items[c]`` before ``cutoffs[c]``; NaN when
        there is none."""
        items = np.asarray(items, np.int64)
        stop = self._position(items, self._cut(cutoffs))
        found = stop > self.item_indptr[items]
        out = np.full(len(items), np.nan)
        out[found] = self.time_of[stop[found] - 1]
        return out

    def first_time(self, items: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
        """[C] float64 timestamp of the first sale of ``items[c]`` if it was before
        ``cutoffs[c]``; NaN for an item not sold before its cutoff (a new arrival)."""
        first = self.first_sale[np.asarray(items, np.int64)]  # [C]
        before = first != NEVER
        before[before] = first[before] - self.t_min < self._cut(np.asarray(cutoffs)[before])
        out = np.full(len(first), np.nan)
        out[before] = first[before]
        return out

    def window_table(self, cutoff: int, days: int | None) -> np.ndarray:
        """[N] float32 sales per item in the ``days`` days before ``cutoff`` (all before it
        when ``days`` is None or time is not shared): one cutoff's trending table."""
        offset = int(self._cut(np.array([cutoff]))[0]) + self.t_min
        stop = np.searchsorted(self.times_by_time, offset, side="left")
        start = 0
        if days is not None and self.timed:
            begin = int(self._cut(np.array([cutoff]), days)[0]) + self.t_min
            start = int(np.searchsorted(self.times_by_time, begin, side="left"))
        window = self.items_by_time[start:stop]
        return np.bincount(window, minlength=self.n_items).astype(np.float32)

    def log_before(self, cutoff: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user codes [E'], items [E'], timestamps [E']) of every event before ``cutoff``, in
        time order: what a model of the log (co-occurrence) may be fitted on for that cutoff.
        User codes are -1 when the interactions had no ``user_id``."""
        offset = int(self._cut(np.array([cutoff]))[0]) + self.t_min
        stop = np.searchsorted(self.times_by_time, offset, side="left")
        return self.users_by_time[:stop], self.items_by_time[:stop], self.times_by_time[:stop]


@numba.njit(nogil=True)
def _first_at_or_after(indptr, times, items, bounds):
    """[K, C] for each k, c: the first index in ``indptr[items[c]] .. indptr[items[c] + 1]``
    whose time is >= ``bounds[k, c]`` (``times`` ascending within each item). Each search
    gallops out from the previous answer of the item (the first from its end): an item's
    window starts lie near each other and near its latest sales."""
    out = np.empty(bounds.shape, dtype=np.int64)
    for at in range(items.shape[0]):
        first, end = indptr[items[at]], indptr[items[at] + 1]
        hint = end
        for bound in range(bounds.shape[0]):
            hint = _search_from(times, first, end, hint, bounds[bound, at])
            out[bound, at] = hint
    return out


@numba.njit(nogil=True)
def _search_from(times, first, end, hint, target):  # noqa: PLR0913, PLR0917
    """The first index in ``first .. end`` whose time is >= ``target``: steps of doubling
    size away from ``hint`` bracket it, a binary search finds it."""
    step = 1
    if hint == end or times[hint] >= target:  # at or before hint
        low, high = max(hint - step, first), hint
        while low > first and times[low] >= target:
            high = low
            step *= 2
            low = max(hint - step, first)
    else:  # after hint
        low, high = hint + 1, min(hint + step, end)
        while high < end and times[high] < target:
            low = high + 1
            step *= 2
            high = min(hint + step, end)
    while low < high:
        middle = (low + high) // 2
        if times[middle] < target:
            low = middle + 1
        else:
            high = middle
    return low
