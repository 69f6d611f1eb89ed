"""Candidate sources that propose the same list to every shopper at a cutoff: the best sellers
of the last days (`Trending`) and of the items first sold lately (`NewArrivals`).

Each list is built once per cutoff and kept among the context's per-period entries: a service
asks at one cutoff until its clock moves on, so its requests only repeat the list per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from seqrec.ranker.candidates import Candidates, concat, no_candidates
from seqrec.ranker.context import RankerContext
from seqrec.ranker.queries import Queries


@dataclass
class Trending:
    """The ``n`` best sellers of the ``days`` days before the cutoff; score: those sales."""

    days: int = 7
    cached_periods: int = 8
    name: str = "trending"

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        def build(cutoff: int) -> tuple[np.ndarray, np.ndarray]:
            return best_sellers(context.events.window_table(cutoff, self.days), n)

        return per_cutoff(queries, context, ("trending", self.days, n), build, self.cached_periods)


def per_cutoff(
    queries: Queries,
    context: RankerContext,
    key: tuple,
    build: Callable[[int], tuple[np.ndarray, np.ndarray]],
    cached_periods: int,
) -> Candidates:
    """The same list (items [k], scores [k]) for every query of a cutoff: ``build(cutoff)``,
    kept among the context's per-period entries under ``key`` + the cutoff (a service asks at
    one cutoff until its clock moves on)."""
    parts = []
    for cutoff in np.unique(queries.cutoffs):
        at = int(cutoff)
        best, scores = context.periods.get((*key, at), partial(build, at), cached_periods)
        rows = np.flatnonzero(queries.cutoffs == cutoff)
        parts.append(
            Candidates(
                np.repeat(rows, len(best)).astype(np.int64),
                np.tile(best, len(rows)).astype(np.int64),
                np.tile(scores, len(rows)).astype(np.float32),
            )
        )
    return concat(parts)


def best_sellers(sales: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best-selling items (sales > 0), most sold first (ties: lower index), and
    their sales."""
    sold = np.flatnonzero(sales > 0)
    best = sold[np.lexsort((sold, -sales[sold]))][:n]  # [k]
    return best, sales[best]


@dataclass
class NewArrivals:
    """Items first sold within the ``days`` days before the cutoff, by their sales since then
    (the score). Items never sold are not proposed (content sources find them); none with
    order-only timestamps (no shared clock)."""

    days: int = 28
    cached_periods: int = 8
    name: str = "new_arrivals"

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        events, day = context.events, context.events.day
        if day is None or not len(events):
            return no_candidates()

        def build(cutoff: int) -> tuple[np.ndarray, np.ndarray]:
            first = events.first_sale  # [N] NEVER for an item never sold
            fresh = np.flatnonzero((first >= cutoff - self.days * day) & (first < cutoff))
            sales = np.zeros(context.n_items, dtype=np.float32)
            sales[fresh] = events.window_table(cutoff, self.days)[fresh]
            return best_sellers(sales, n)

        key = ("new_arrivals", self.days, n)
        return per_cutoff(queries, context, key, build, self.cached_periods)
