"""Candidates: what each source proposes per query, and their union with one column per source.

A source returns `Candidates` (query row, item, score; higher = better), at most ``n`` per
query and never an item twice for one query. `merge` joins the sources' lists into one
`CandidateSet`: each (query, item) pair once, with every source's score and rank (NaN / 0 where
that source did not propose the pair): the first columns of the ranker's features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numba
import numpy as np

from seqrec.ranker.queries import Queries

if TYPE_CHECKING:
    from seqrec.ranker.config import RankerConfig
    from seqrec.ranker.context import RankerContext
    from seqrec.ranker.events import Events


@dataclass
class Candidates:
    rows: np.ndarray  # [C] int64 query row
    items: np.ndarray  # [C] int64 item index
    scores: np.ndarray  # [C] float32 the source's score, higher = better


class Source(Protocol):
    """One candidate source: ``name`` (a key of `seqrec.ranker.config.SourceSizes`) and its
    top ``n`` items per query, reading only the query's history and events before its cutoff."""

    name: str

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates: ...


@dataclass
class CandidateSet:
    """The union of the sources' candidates: one row per distinct (query, item) pair, sorted by
    query row then item."""

    rows: np.ndarray  # [P] int64 query row
    items: np.ndarray  # [P] int64 item index
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # source -> [P] float32, NaN
    ranks: dict[str, np.ndarray] = field(default_factory=dict)  # source -> [P] 1-based, 0 = not

    def __len__(self) -> int:
        return len(self.rows)


def source_ranks(found: Candidates) -> np.ndarray:
    """[C] int64 1-based rank of each candidate within its query: by score descending, ties in
    the order the source returned them (its own tie-breaks)."""
    return _source_ranks(found.rows, found.scores)


def runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[R], [R] int64 where each run of equal values in ``sorted_values`` begins, and one past
    where it ends."""
    if not len(sorted_values):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1))
    return starts, np.concatenate((starts[1:], [len(sorted_values)]))


def merge(n_queries: int, found: dict[str, Candidates], max_candidates: int) -> CandidateSet:
    """The union of the sources' candidates (`CandidateSet`). A query with more than
    ``max_candidates`` distinct items keeps those with the best (smallest) rank over the
    sources, ties by source order (the order of ``found``), then by item index."""
    names = list(found)
    rows = np.concatenate([np.zeros(0, np.int64), *(found[s].rows for s in names)])
    items = np.concatenate([np.zeros(0, np.int64), *(found[s].items for s in names)])
    all_scores = np.concatenate([np.zeros(0, np.float32), *(found[s].scores for s in names)])
    source = np.repeat(np.arange(len(names)), [len(found[s].rows) for s in names])  # [C]
    if len(rows) and (rows.min() < 0 or rows.max() >= n_queries):
        raise ValueError(f"candidate rows outside the {n_queries} queries")
    width = int(items.max(initial=0)) + 1
    kept, scores, ranks = _merged(
        source, rows, items, all_scores, len(names), n_queries, width, max_candidates
    )  # [P] each pair's best entry, [S, P] each source's score and rank (NaN / 0: absent)
    out = CandidateSet(rows[kept], items[kept])
    out.scores = {name: scores[s] for s, name in enumerate(names)}
    out.ranks = {name: ranks[s] for s, name in enumerate(names)}
    return out


@numba.njit(nogil=True)
def _merged(source, rows, items, scores, n_sources, n_queries, width, max_candidates):  # noqa: PLR0913, PLR0917
    """`merge`'s pairs in (query, item) order, as the entry index of each pair's best entry
    [P], with the sources' scores and ranks [S, P]."""
    ranks = _source_ranks(source * n_queries + rows, scores)  # [C]
    keys = rows * width + items  # [C] one per (query, item)
    by_key = np.argsort(keys, kind="mergesort")
    best = np.empty(len(keys), dtype=np.int64)  # each pair's entry of the best rank, then source
    n_pairs = 0
    for at in range(len(by_key)):
        entry = by_key[at]
        if n_pairs == 0 or keys[best[n_pairs - 1]] != keys[entry]:
            best[n_pairs] = entry
            n_pairs += 1
        else:
            held = best[n_pairs - 1]
            if ranks[entry] < ranks[held] or (
                ranks[entry] == ranks[held] and source[entry] < source[held]
            ):
                best[n_pairs - 1] = entry
    best = best[:n_pairs]
    keep = _capped(best, rows, items, source, ranks, n_sources, width, max_candidates)
    kept = best[keep]
    out_scores = np.full((n_sources, len(kept)), np.nan, dtype=np.float32)
    out_ranks = np.zeros((n_sources, len(kept)), dtype=np.int64)
    pair, column = -1, -1
    for at in range(len(by_key)):  # every entry of a kept pair fills its source's cells
        entry = by_key[at]
        if at == 0 or keys[by_key[at - 1]] != keys[entry]:
            pair += 1
            column += keep[pair]
        if keep[pair]:
            out_scores[source[entry], column] = scores[entry]
            out_ranks[source[entry], column] = ranks[entry]
    return kept, out_scores, out_ranks


@numba.njit(nogil=True)
def _source_ranks(groups, scores):
    """[C] int64 1-based rank of each entry within its group by score descending (NaN last),
    ties in entry order."""
    order = np.argsort(groups, kind="mergesort")
    ranks = np.empty(len(groups), dtype=np.int64)
    start = 0
    while start < len(order):
        stop = _run_end(groups, order, start)
        for at in range(start + 1, stop):  # insertion sort of the group, stable
            entry, place = order[at], at
            while place > start and _descending(scores[entry], scores[order[place - 1]]) > 0:
                order[place] = order[place - 1]
                place -= 1
            order[place] = entry
        for at in range(start, stop):
            ranks[order[at]] = at - start + 1
        start = stop
    return ranks


@numba.njit(nogil=True)
def _run_end(keys, order, start):
    """One past the run of ``order[start:]`` whose ``keys`` equal the first one's."""
    stop = start
    while stop < len(order) and keys[order[stop]] == keys[order[start]]:
        stop += 1
    return stop


@numba.njit(nogil=True)
def _capped(best, rows, items, source, ranks, n_sources, width, max_candidates):  # noqa: PLR0913, PLR0917
    """[P] bool: the pairs (``best``, grouped by query) a query keeps, its ``max_candidates``
    best by rank, then source, then item."""
    keep = np.ones(len(best), dtype=np.bool_)
    start = 0
    while start < len(best):
        stop = _run_end(rows, best, start)
        if stop - start > max_candidates:
            run = best[start:stop]
            order = (ranks[run] * n_sources + source[run]) * width + items[run]
            keep[start:stop] = False
            keep[start + np.argsort(order, kind="mergesort")[:max_candidates]] = True
        start = stop
    return keep


def generate(
    queries: Queries,
    context: RankerContext,
    config: RankerConfig,
    sources: list[Source] | None = None,
) -> CandidateSet:
    """Every source's candidates for ``queries`` (`enabled_sources` unless ``sources`` are
    given; each proposes its size in ``config.sources``), merged."""
    from seqrec.ranker.sources import enabled_sources  # sources import this module

    chosen = enabled_sources(config, context) if sources is None else sources
    found = {s.name: s.candidates(queries, context, n_of(config, s)) for s in chosen}
    return merge(len(queries), found, config.max_candidates)


def n_of(config: RankerConfig, source: Source) -> int:
    """The number of candidates ``source`` proposes per query (``config.sources``)."""
    return int(getattr(config.sources, source.name))


def interleaved(candidates: CandidateSet) -> np.ndarray:
    """[P] float64 value ordering a merged set without a ranker: by best rank over the sources,
    ties by source order (the sources' lists interleaved)."""
    n_sources = len(candidates.ranks)
    best = np.full(len(candidates), np.inf)
    for s, ranks in enumerate(candidates.ranks.values()):
        best = np.minimum(best, np.where(ranks > 0, ranks * n_sources + s, np.inf))
    return -best


def dense_scores(
    candidates: Candidates | CandidateSet,
    n_queries: int,
    n_items: int,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """[B, N] float32: each candidate pair gets its value (default: the Candidates' score; for
    a CandidateSet, `interleaved`), every other item of the row ties strictly below the row's
    lowest candidate value (so evaluation ranks them last, pessimistically)."""
    if values is None and isinstance(candidates, CandidateSet):
        values = interleaved(candidates)
    elif values is None and isinstance(candidates, Candidates):
        values = candidates.scores
    values = np.asarray(values, dtype=np.float32)
    lowest = np.full(n_queries, np.inf, dtype=np.float32)
    np.minimum.at(lowest, candidates.rows, values)
    found = np.isfinite(lowest)  # [B] rows with at least one candidate
    floor = np.where(found, lowest, 0.0).astype(np.float64)
    below = floor - np.maximum(1.0, np.abs(floor) * 1e-3)  # strictly below, also in float32
    fill = np.where(found, below, 0.0).astype(np.float32)  # [B]
    out = np.repeat(fill[:, None], n_items, axis=1)  # [B, N]
    out[candidates.rows, candidates.items] = values
    return out


def candidate_recall(candidates: Candidates | CandidateSet, targets: list[np.ndarray]) -> float:
    """Share of the target items (one array per query row) that are among the query's
    candidates; 0 without targets."""
    lengths = [len(t) for t in targets]
    if not sum(lengths):
        return 0.0
    t_rows = np.repeat(np.arange(len(targets)), lengths)
    t_items = np.concatenate(targets).astype(np.int64)
    width = max(int(t_items.max()), int(candidates.items.max(initial=0))) + 1
    found = np.isin(t_rows * width + t_items, candidates.rows * width + candidates.items)
    return float(found.mean())


def latest_queries(histories: list[np.ndarray], events: Events) -> Queries:
    """Queries for histories whose times are unknown: every item bought at the log's end, asked
    right after it (cutoff ``events.t_max + 1``)."""
    times = [np.full(len(h), events.t_max, dtype=np.int64) for h in histories]
    return Queries(list(histories), times, np.full(len(histories), events.t_max + 1))


@dataclass
class SourceScorer:
    """One source alone as a full-catalogue ranker: its top ``n`` in the source's order, the
    rest of the catalogue tied below them."""

    source: Source
    context: RankerContext
    n: int

    def score_queries(self, queries: Queries) -> np.ndarray:  # [B, N] float32
        found = self.source.candidates(queries, self.context, self.n)
        order = -source_ranks(found).astype(np.float64)
        return dense_scores(found, len(queries), self.context.n_items, order)

    def score(self, histories: list[np.ndarray]) -> np.ndarray:  # [B, N] float32
        return self.score_queries(latest_queries(histories, self.context.events))


def top_per_row(
    rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n: int, ties: np.ndarray | None = None
) -> Candidates:
    """The ``n`` best (row, item) pairs of each row, sorted by row then best first: by score
    descending, then ``ties`` descending, then item index ascending (NaN below any number)."""
    rows, items = np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    ties = np.zeros(len(rows)) if ties is None else np.asarray(ties, dtype=np.float64)
    by_row = np.argsort(rows, kind="stable")
    keep = _best_of_rows(rows, items, scores, ties, by_row, n)
    return Candidates(rows[keep], items[keep], scores[keep].astype(np.float32))


@numba.njit(nogil=True)
def _best_of_rows(rows, items, scores, ties, by_row, n):
    """Indices of each row's ``n`` best, row by row, best first: a sorted buffer of at most n
    per row, each index inserted where it ranks (compiled: no full sort of every pair)."""
    keep = np.empty(len(rows) if n > 0 else 0, dtype=np.int64)
    if n <= 0:
        return keep
    kept, start = 0, 0
    while start < len(by_row):
        stop = _run_end(rows, by_row, start)
        size = 0  # the row's best so far: keep[kept : kept + size], best first
        for at in range(start, stop):
            index = by_row[at]
            if size == n and not _better(index, keep[kept + n - 1], scores, ties, items):
                continue  # not above the row's n-th best
            place = min(size, n - 1)
            while place > 0 and _better(index, keep[kept + place - 1], scores, ties, items):
                keep[kept + place] = keep[kept + place - 1]
                place -= 1
            keep[kept + place] = index
            size = min(size + 1, n)
        kept += size
        start = stop
    return keep[:kept]


@numba.njit(nogil=True)
def _better(first, second, scores, ties, items):
    """Whether pair ``first`` ranks above ``second``: score, then tie, descending (NaN last),
    then item ascending."""
    order = _descending(scores[first], scores[second])
    if order == 0:
        order = _descending(ties[first], ties[second])
    return order > 0 if order else items[first] < items[second]


@numba.njit(nogil=True)
def _descending(one, other):
    """1 when ``one`` ranks above ``other`` (higher; a number above NaN), -1 below, 0 tied."""
    if np.isnan(one) or np.isnan(other):
        return int(np.isnan(other)) - int(np.isnan(one))
    return 1 if one > other else (-1 if one < other else 0)


def no_candidates() -> Candidates:
    empty = np.zeros(0, dtype=np.int64)
    return Candidates(empty, empty, np.zeros(0, dtype=np.float32))


def concat(parts: list[Candidates]) -> Candidates:
    """The candidates of several row subsets, sorted by row (each part's order kept)."""
    if not parts:
        return no_candidates()
    rows = np.concatenate([p.rows for p in parts])
    order = np.argsort(rows, kind="stable")
    items = np.concatenate([p.items for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    return Candidates(rows[order], items[order], scores[order])
