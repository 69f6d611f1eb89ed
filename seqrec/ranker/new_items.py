"""New items by content: the articles that are new at the cutoff, nearest to the shopper's taste.

In a fashion shop most of what sells next is new: articles never sold before the moment asked,
or first sold only days before. Sales-based sources (repeats, co-purchase, trending, new
arrivals by sales) cannot propose an article nobody has bought yet, and content neighbours rank
new articles among the whole catalogue, where older look-alikes crowd them out. `NewByContent`
scores only the new ones: items with no sale before the cutoff or a first sale within the
``days`` days before it, by their summed cosine to the query's last ``last_n`` items (as
`seqrec.ranker.sources.ContentNeighbours`), exactly over that set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqrec.ranker.candidates import Candidates, concat, top_per_row
from seqrec.ranker.context import RankerContext, Vectors, has_vector
from seqrec.ranker.cosines import last_slots, slot_profiles
from seqrec.ranker.events import NEVER, Events
from seqrec.ranker.queries import Queries, in_history

CHUNK = 256  # queries scored against one cutoff's new items at once


def new_items(events: Events, cutoff: int, days: int) -> np.ndarray:
    """[N] bool: items not sold before ``cutoff``, or first sold within the ``days`` days
    before it. Without a shared clock (order-only timestamps): items with no sale at all."""
    if events.day is None:
        return events.first_sale == NEVER
    return events.first_sale >= cutoff - days * events.day


@dataclass
class NewByContent:
    """New items (`new_items`) nearest to the query's last ``last_n`` items by ``modality``
    (a key of ``context.vectors``): score = summed cosine, positive only, history left out."""

    modality: str
    days: int = 28
    last_n: int = 5
    cached_periods: int = 8
    name: str = field(init=False, default="")

    def __post_init__(self):
        self.name = f"new_{self.modality}"

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        vectors = context.vectors[self.modality]
        last = last_slots(queries, self.last_n)  # [B, last_n]
        parts = []
        for cutoff in np.unique(queries.cutoffs):
            fresh, fresh_vectors = self.fresh(context, int(cutoff))  # [F], [F, D]
            rows = np.flatnonzero(queries.cutoffs == cutoff)
            for start in range(0, len(rows) if len(fresh) else 0, CHUNK):
                chunk = rows[start : start + CHUNK]
                profile = slot_profiles(vectors, last[chunk])  # [b, D]
                parts.append(self._best(queries, profile, fresh_vectors, chunk, fresh, n))
        return concat(parts)

    def fresh(self, context: RankerContext, cutoff: int) -> tuple[np.ndarray, Vectors]:
        """The items new at ``cutoff`` that have content, and their vectors: built once per
        cutoff (a service asks at one cutoff until its clock moves on) and kept among the
        context's per-period structures. The modality's vectors are the catalogue's content,
        which `seqrec.ranker.context.with_model` shares, never the model's fused ones."""
        key = (self.name, cutoff, self.days)  # kind: one modality's new items
        return context.periods.get(key, lambda: self._fresh(context, cutoff), self.cached_periods)

    def _fresh(self, context: RankerContext, cutoff: int) -> tuple[np.ndarray, Vectors]:
        with_content = has_vector(context, self.modality)  # [N]
        fresh = np.flatnonzero(new_items(context.events, cutoff, self.days) & with_content)
        return fresh, context.vectors[self.modality][fresh]

    @staticmethod
    def _best(queries, profile, fresh_vectors, rows, fresh, n: int) -> Candidates:
        """Top ``n`` of ``fresh`` per row of ``rows`` by ``profile @ fresh_vectors.T``."""
        profile = profile.astype(fresh_vectors.dtype)  # [b, D] dense
        scores = np.asarray(fresh_vectors @ profile.T).T  # [b, F] (sparse rows times dense)
        k = min(n, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # [b, k]
        values = np.take_along_axis(scores, top, axis=1).ravel()  # [b * k]
        c_rows, c_items = np.repeat(rows, k), fresh[top.ravel()]
        keep = values > 0
        keep[keep] = ~in_history(queries, c_rows[keep], c_items[keep])
        return top_per_row(c_rows[keep], c_items[keep], values[keep].astype(np.float32), n)
