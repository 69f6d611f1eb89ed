"""Queries: shoppers asking for recommendations at a moment.

A query is one shopper's history (item indices in time order, with their timestamps) and the
cutoff: the moment recommendations are asked for. Everything a candidate source or a feature
reads about other shoppers comes from events strictly before the cutoff (`seqrec.ranker.events`);
the shopper's own history is given here and is before the cutoff too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqrec.data.split import EvalTask


@dataclass
class Queries:
    histories: list[np.ndarray]  # B arrays of item indices, time order
    times: list[np.ndarray]  # B arrays of the matching timestamps
    cutoffs: np.ndarray  # [B] int64: the moment asked; only events with timestamp < cutoff count
    # what several sources read of the same histories (`history_events`, `last_items`),
    # computed once per Queries (a Queries is not changed after it is made)
    memo: dict[object, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.histories)

    def __post_init__(self):
        self.cutoffs = np.asarray(self.cutoffs, dtype=np.int64)
        if not len(self.histories) == len(self.times) == len(self.cutoffs):
            raise ValueError("histories, times and cutoffs must have one entry per query")

    def subset(self, rows: np.ndarray | slice) -> Queries:
        """The queries of ``rows``: this one itself when they are all of its rows in order (what
        was computed once for it is kept)."""
        every = np.arange(len(self))
        picked = every[rows]
        if np.array_equal(picked, every):
            return self
        return Queries(
            [self.histories[r] for r in picked],
            [self.times[r] for r in picked],
            self.cutoffs[picked],
        )


def queries_from_task(task: EvalTask) -> Queries:
    """The task's users as queries: their histories, history times and cutoffs (the first
    timestamp of their held-out targets)."""
    if task.cutoffs is None or task.history_times is None:
        raise ValueError("this task carries no timestamps: a time-aware ranker cannot score it")
    return Queries(task.histories(), task.times(), task.cutoffs)


def history_events(queries: Queries) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row [E], item [E], time [E], position from the end [E]) of every history entry. A query
    whose times do not match its history (times unknown) gets its positions as times."""
    if "history_events" not in queries.memo:
        arrays = _history_events(queries)
        for array in arrays:
            array.flags.writeable = False  # shared by every caller
        queries.memo["history_events"] = arrays
    return queries.memo["history_events"]  # type: ignore[return-value]


def _history_events(queries: Queries) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(h) for h in queries.histories], dtype=np.int64)  # [B]
    rows = np.repeat(np.arange(len(queries)), lengths)  # [E]
    if not lengths.sum():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    items = np.concatenate(queries.histories).astype(np.int64)
    pairs = zip(queries.histories, queries.times, strict=True)
    times = np.concatenate([t if len(t) == len(h) else np.arange(len(h)) for h, t in pairs])
    times = times.astype(np.int64)
    ends = np.cumsum(lengths)  # [B] one past each query's last entry
    from_end = ends[rows] - 1 - np.arange(len(items))  # [E] 0 = the latest entry
    return rows, items, times, from_end


ROW_STRIDE = 1 << 32  # (row, item) key = row * ROW_STRIDE + item: one int64 per pair


def in_history(queries: Queries, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[C] bool: whether ``items[c]`` is in the history of query ``rows[c]`` (binary search in
    the queries' sorted (row, item) keys, built once per Queries)."""
    if "history_keys" not in queries.memo:
        h_rows, h_items, _, _ = history_events(queries)
        queries.memo["history_keys"] = np.unique(h_rows * ROW_STRIDE + h_items)
    keys: np.ndarray = queries.memo["history_keys"]  # type: ignore[assignment]
    asked = np.asarray(rows, np.int64) * ROW_STRIDE + np.asarray(items, np.int64)
    if not len(keys):
        return np.zeros(len(asked), dtype=bool)
    at = np.minimum(np.searchsorted(keys, asked), len(keys) - 1)
    return keys[at] == asked


def last_items(queries: Queries, last_n: int, binary: bool = True) -> tuple[np.ndarray, ...]:
    """(row [Q], item [Q], weight [Q] float64) of the last ``last_n`` history items of each
    query, sorted by row then item, each (row, item) once: weight 1, or how often the item is
    among them (``binary=False``). Shared by the sources that ask the same: read-only."""
    key = ("last_items", last_n, binary)
    if key not in queries.memo:
        arrays = _last_items(queries, last_n, binary)
        for array in arrays:
            array.flags.writeable = False
        queries.memo[key] = arrays
    return queries.memo[key]  # type: ignore[return-value]


def _last_items(queries: Queries, last_n: int, binary: bool) -> tuple[np.ndarray, ...]:
    rows, items, _, from_end = history_events(queries)
    recent = from_end < last_n
    width = int(items.max(initial=0)) + 1
    pairs, counts = np.unique(rows[recent] * width + items[recent], return_counts=True)
    weights = np.ones(len(pairs)) if binary else counts.astype(np.float64)
    return pairs // width, pairs % width, weights
