"""Queries: shoppers asking for recommendations at a moment.

A query is one shopper's history (item indices in time order, with their timestamps) and the
cutoff: the moment recommendations are asked for. Everything a candidate source or a feature
reads about other shoppers comes from events strictly before the cutoff (`seqrec.ranker.events`);
the shopper's own history is given here and is before the cutoff too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.data.split import EvalTask


@dataclass
class Queries:
    histories: list[np.ndarray]  # B arrays of item indices, time order
    times: list[np.ndarray]  # B arrays of the matching timestamps
    cutoffs: np.ndarray  # [B] int64: the moment asked; only events with timestamp < cutoff count

    def __len__(self) -> int:
        return len(self.histories)

    def __post_init__(self):
        self.cutoffs = np.asarray(self.cutoffs, dtype=np.int64)
        if not len(self.histories) == len(self.times) == len(self.cutoffs):
            raise ValueError("histories, times and cutoffs must have one entry per query")

    def subset(self, rows: np.ndarray | slice) -> Queries:
        picked = np.arange(len(self))[rows]
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
