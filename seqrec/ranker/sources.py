"""Candidate sources: each proposes up to ``n`` items per query with a score (higher = better).

Every source works on a whole batch of queries at once and reads only the query's history and
events strictly before its cutoff (`seqrec.ranker.events.Events`):

- `Repeats`: the shopper's own purchases, latest first, ties by how often bought;
- `Variants`: other items of the product groups the shopper bought (H&M: same product code);
- `CoPurchase`: items bought by the buyers of the shopper's last items (cosine co-occurrence,
  refitted on the log before each ``refit_days`` period);
- `ContentNeighbours`: items nearest to the shopper's last items by one content modality (each
  item's precomputed top ``neighbours`` by cosine, summed over the last items);
- `Trending`: the best sellers of the last days; `NewArrivals`: items first sold lately;
- `NewByContent` (`seqrec.ranker.new_items`): items new at the cutoff (unsold or first sold
  lately) nearest to the last items by one content modality;
- `SequenceTop`: the sequence model's top items by raw score.

Each returns its candidates sorted by query row, best first (`top_per_row`): `merge` ranks them
in that order. `enabled_sources` picks the sources a `RankerConfig` and a context allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from seqrec.baselines import user_item_matrix
from seqrec.data.sequences import histories_to_tensor
from seqrec.models.affinity import neighbour_graph
from seqrec.neighbours import cooccurrence_top
from seqrec.ranker.candidates import (
    Candidates,
    Source,
    concat,
    no_candidates,
    runs,
    top_per_row,
)
from seqrec.ranker.config import RankerConfig
from seqrec.ranker.context import RankerContext
from seqrec.ranker.cosines import Layout, last_slots, slot_cosines
from seqrec.ranker.events import Events
from seqrec.ranker.new_items import NewByContent
from seqrec.ranker.queries import Queries, history_events, in_history, last_items
from seqrec.ranker.shop_wide import NewArrivals, Trending

CHUNK = 256  # queries scored against the whole catalogue at once (memory: CHUNK x N floats)
TIE_DAYS = 28  # window of the sales that break ties between variants


def neighbour_sums(
    queries: Queries,
    last: tuple[np.ndarray, ...],
    graph: sp.csr_matrix,
    n: int,
    exclude_history: bool,
) -> Candidates:
    """Top ``n`` items per query by the summed neighbour rows of the query's items (``last``:
    rows [Q], items [Q], weights [Q] as `last_items` gives; the rows of ``graph`` [N, N] read
    directly, never a [B, N] product), positive sums only, history items left out when asked."""
    rows, items, weights = last
    width = graph.shape[1]
    keys, sums = _summed_rows(graph.indptr, graph.indices, graph.data, rows, items, weights, width)
    c_rows, c_items = keys // width, keys % width  # [K] distinct (query, neighbour), by key
    keep = sums > 0
    if exclude_history:
        keep[keep] = ~in_history(queries, c_rows[keep], c_items[keep])
    return top_per_row(c_rows[keep], c_items[keep], sums[keep], n)


@numba.njit(nogil=True)
def _summed_rows(indptr, indices, data, rows, items, weights, width):  # noqa: PLR0913, PLR0917
    """(keys [K], sums [K] float64): each distinct row * width + neighbour of the entries of
    ``items``' rows in ``graph`` (CSR arrays), ascending, with its summed similarity times the
    item's weight, added in entry order."""
    sizes = indptr[items + 1] - indptr[items]
    keys, values = np.empty(sizes.sum(), np.int64), np.empty(sizes.sum(), np.float64)
    at = 0
    for last in range(len(items)):
        for entry in range(indptr[items[last]], indptr[items[last] + 1]):
            keys[at] = rows[last] * width + indices[entry]
            values[at] = np.float64(data[entry]) * weights[last]
            at += 1
    order = np.argsort(keys, kind="mergesort")  # stable: a key's entries stay in entry order
    distinct, sums = np.empty(len(keys), np.int64), np.zeros(len(keys), np.float64)
    count = 0
    for position in range(len(order)):
        key = keys[order[position]]
        if count == 0 or distinct[count - 1] != key:
            distinct[count] = key
            count += 1
        sums[count - 1] += values[order[position]]
    return distinct[:count], sums[:count]


@dataclass
class Repeats:
    """The shopper's own history items: latest purchase first, ties by how often bought, then
    by position. Score: distinct positive integers, the first item the largest."""

    name: str = "repeats"

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        rows, items, times, from_end = history_events(queries)
        if not len(rows):
            return no_candidates()
        key = rows * context.n_items + items  # [E] one per (query, item)
        order = np.lexsort((-from_end, times, key))  # by pair, its latest entry last
        sorted_key = key[order]
        starts, ends = runs(sorted_key)  # [P] each
        latest = order[ends - 1]  # [P] each pair's latest entry
        count = ends - starts  # [P]
        p_rows, p_items = rows[latest], items[latest]
        by = np.lexsort((from_end[latest], -count, -times[latest], p_rows))  # best first
        row_end = np.searchsorted(p_rows[by], p_rows[by], side="right")  # past the row's pairs
        score = np.empty(len(by), dtype=np.float64)
        score[by] = row_end - np.arange(len(by))  # distinct, the row's first = its item count
        return top_per_row(p_rows, p_items, score, n)


def group_members(context: RankerContext) -> tuple[np.ndarray, np.ndarray]:
    """(indptr [G + 1], items [M]): the items of each product group (cached in the context)."""
    key = ("group_members",)
    if key not in context.cache:
        groups = context.groups
        assert groups is not None
        valid = np.flatnonzero(groups >= 0)
        order = valid[np.argsort(groups[valid], kind="stable")]
        n_groups = int(groups.max(initial=-1)) + 1
        indptr = np.searchsorted(groups[order], np.arange(n_groups + 1))
        context.cache[key] = (indptr, order.astype(np.int64))
    return context.cache[key]  # type: ignore[return-value]


@dataclass
class Variants:
    """Other items of the groups of the shopper's history items (history items left out).

    Score: the group's recency-weighted count of the shopper's purchases (a purchase ``age``
    days before the cutoff weighs 0.5 ** (age / half_life_days); order-only timestamps: age in
    events), ties by the item's sales in the 28 days before the cutoff. Work is bounded per
    query: its groups are expanded best first until they hold n + history length items.
    """

    half_life_days: float = 14.0
    name: str = "variants"

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        if context.groups is None:
            return no_candidates()
        rows, items, times, _ = history_events(queries)
        groups = context.groups[items]  # [E]
        known = groups >= 0
        rows, times, groups = rows[known], times[known], groups[known]
        age = np.maximum(queries.cutoffs[rows] - times, 0) / (context.events.day or 1)
        weight = 0.5 ** (age / self.half_life_days)  # [E]
        indptr, members = group_members(context)
        n_groups = len(indptr) - 1
        pair, inverse = np.unique(rows * n_groups + groups, return_inverse=True)
        g_rows, g_groups = pair // max(n_groups, 1), pair % max(n_groups, 1)  # [P]
        g_score = np.bincount(inverse, weights=weight, minlength=len(pair))  # [P]
        best = self._best_groups(queries, context, g_rows, g_groups, g_score, n)
        g_rows, g_groups, g_score = best
        sizes = indptr[g_groups + 1] - indptr[g_groups]  # [P]
        c_rows = np.repeat(g_rows, sizes)  # [C]
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        c_items = members[np.repeat(indptr[g_groups], sizes) + within]  # [C]
        c_score = np.repeat(g_score, sizes)
        fresh = ~in_history(queries, c_rows, c_items)
        c_rows, c_items, c_score = c_rows[fresh], c_items[fresh], c_score[fresh]
        sales = context.events.count(c_items, queries.cutoffs[c_rows], TIE_DAYS)
        return top_per_row(c_rows, c_items, c_score, n, ties=sales)

    @staticmethod
    def _best_groups(
        queries: Queries,
        context: RankerContext,
        rows: np.ndarray,
        groups: np.ndarray,
        score: np.ndarray,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each query's groups best first, kept while the groups before hold fewer than
        n + history length items."""
        order = np.lexsort((groups, -score, rows))
        rows, groups, score = rows[order], groups[order], score[order]
        indptr, _ = group_members(context)
        sizes = indptr[groups + 1] - indptr[groups]
        held = np.cumsum(sizes) - sizes  # items in the groups before, over all rows
        row_start = np.searchsorted(rows, rows, side="left")
        held -= held[row_start]  # ... within the row
        lengths = np.array([len(h) for h in queries.histories], dtype=np.int64)
        keep = held < n + lengths[rows]
        return rows[keep], groups[keep], score[keep]


def refit_period_start(cutoffs: np.ndarray, events: Events, refit_days: int) -> np.ndarray:
    """[B] start of each cutoff's refit period: t_min + whole periods of ``refit_days`` days;
    one period (the log's end) when timestamps are not a shared clock."""
    cutoffs = np.asarray(cutoffs, dtype=np.int64)
    if events.day is None:
        return np.full(cutoffs.shape, events.t_max + 1, dtype=np.int64)
    period = refit_days * events.day
    return events.t_min + np.floor_divide(cutoffs - events.t_min, period) * period


@dataclass
class CoPurchase:
    """Items bought with the query's last ``last_n`` items: the sum of their cosine
    co-occurrence (`seqrec.neighbours.cooccurrence_top`: cosine, top ``neighbours`` per item),
    fitted once per refit period on the log strictly before the period's start: its last
    ``days`` days (0 = all of it), items counted together when one shopper bought them
    (``within="shopper"``) or in one basket (``"basket"``: one shopper, one timestamp). The
    ``cached_periods`` latest used periods stay in memory (`PeriodCache`)."""

    last_n: int = 5
    refit_days: int = 28
    neighbours: int = 100
    exclude_history: bool = True  # the shopper's own items are left to `Repeats`
    days: int = 0
    within: str = "shopper"
    cached_periods: int = 8
    name: str = "cooccurrence"

    def similarity(self, context: RankerContext, start: int) -> sp.csr_matrix:
        """[N, N] item similarity of the log before ``start`` (cached per period)."""
        key = ("cooccurrence", start, self.neighbours, self.days, self.within)
        return context.periods.get(key, lambda: self._fit(context, start), self.cached_periods)

    def _fit(self, context: RankerContext, start: int) -> sp.csr_matrix:
        events = context.events
        users, items, times = events.log_before(start)
        known = users >= 0
        if self.days and events.day is not None:
            known &= times >= start - self.days * events.day
        owners = users[known]
        if self.within == "basket":
            owners = owners * events.span + (times[known] - events.t_min)  # [E'] one per basket
        log = pd.DataFrame({"user_id": owners, "item_idx": items[known]})
        # top neighbours per block of items: never the whole [N, N] co-occurrence matrix
        return cooccurrence_top(user_item_matrix(log, context.n_items), self.neighbours)

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        starts = refit_period_start(queries.cutoffs, context.events, self.refit_days)
        parts = []
        for start in np.unique(starts):
            rows = np.flatnonzero(starts == start)
            part = queries.subset(rows)
            graph = self.similarity(context, int(start))
            last = last_items(part, self.last_n)
            found = neighbour_sums(part, last, graph, n, self.exclude_history)
            parts.append(Candidates(rows[found.rows], found.items, found.scores))
        return concat(parts)


def best_in_chunks(queries: Queries, n: int, score_chunk, exclude_history: bool) -> Candidates:
    """Top ``n`` positive-scored items per query, scoring ``CHUNK`` queries at a time with
    ``score_chunk(queries) -> [b, N]`` (the history's items left out when asked)."""
    parts = []
    for start in range(0, len(queries), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(queries)))
        part = queries.subset(rows)
        scores = np.array(score_chunk(part), dtype=np.float32)  # [b, N]
        if exclude_history:
            h_rows, h_items, _, _ = history_events(part)
            scores[h_rows, h_items] = -np.inf
        k = min(n, scores.shape[1])
        if k <= 0:
            continue
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # [b, k]
        values = np.take_along_axis(scores, top, axis=1)  # [b, k]
        b_rows = np.repeat(np.arange(len(rows)), k)
        keep = np.isfinite(values.ravel()) & (values.ravel() > 0)
        found = top_per_row(b_rows[keep], top.ravel()[keep], values.ravel()[keep], n)
        parts.append(Candidates(rows[found.rows], found.items, found.scores))
    return concat(parts)


@dataclass
class ContentNeighbours:
    """Items near the query's last ``last_n`` items by ``modality`` (a key of
    ``context.vectors``), scored by their summed cosine to those items (counted as often as
    they occur; `seqrec.baselines.ContentKNN`). Only items among some last item's
    ``neighbours`` most similar items (`content_graph`, computed once per context) are
    scored: the ``pool`` best of them by their summed list similarities get the exact sum
    (every last item counts, also where the item is not in its list), so a query reads
    ``pool`` vectors instead of the whole catalogue."""

    modality: str
    last_n: int = 5
    neighbours: int = 100
    pool: int = 100  # per query, items whose exact sum is computed (at least n are)
    exclude_history: bool = True  # the shopper's own items are left to `Repeats`
    name: str = field(init=False, default="")

    def __post_init__(self):
        self.name = f"content_{self.modality}"

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        graph = content_graph(context, self.modality, self.neighbours)
        last = last_items(queries, self.last_n, binary=False)
        pool = neighbour_sums(queries, last, graph, max(n, self.pool), self.exclude_history)
        rows, items = pool.rows, pool.items
        slots = last_slots(queries, self.last_n)  # [B, last_n]
        sims = slot_cosines(
            context.vectors[self.modality], items, slots, Layout.of(rows, len(queries))
        )  # [C, last_n] 0 in the slots of a shorter history
        scores = sims.sum(axis=1)  # [C]
        positive = scores > 0
        return top_per_row(rows[positive], items[positive], scores[positive], n)


def content_graph(context: RankerContext, modality: str, neighbours: int) -> sp.csr_matrix:
    """[N, N] sparse: row i holds item i's ``neighbours`` most similar items by cosine of
    ``context.vectors[modality]`` (`seqrec.models.affinity.neighbour_graph`; zero
    similarities dropped). Depends on the catalogue only: computed once per context."""
    key = ("content_graph", modality, neighbours)
    if key not in context.cache:
        items, sims = neighbour_graph(context.vectors[modality], neighbours)  # [N, K] each
        n_items, k = items.shape
        indptr = np.arange(0, n_items * k + 1, k, dtype=np.int64)  # [N + 1]
        graph = sp.csr_matrix(
            (sims.numpy().ravel(), items.numpy().ravel(), indptr), shape=(n_items, n_items)
        )
        graph.eliminate_zeros()
        graph.sort_indices()
        context.cache[key] = graph
    return context.cache[key]  # type: ignore[return-value]


@dataclass
class SequenceTop:
    """The sequence model's (``context.model``) top ``n`` items by raw score (the score)."""

    name: str = "sequence"

    def candidates(self, queries: Queries, context: RankerContext, n: int) -> Candidates:
        model = context.model
        if model is None:
            return no_candidates()

        def raw(part: Queries) -> np.ndarray:
            seq = histories_to_tensor(part.histories, model.max_len).to(model.device)  # [b, L]
            return model.raw(seq).float().cpu().numpy()  # [b, N]

        with torch.no_grad():
            return best_in_chunks(queries, n, raw, exclude_history=False)


def enabled_sources(config: RankerConfig, context: RankerContext) -> list[Source]:
    """The sources with a size above 0 whose inputs the context has, minus the families of
    ``config.without`` (image: content_image, new_image; text: content_tfidf, content_text,
    new_tfidf; sequence: sequence, content_fused)."""
    last_n = config.history_last_n
    candidates: list[Source] = [
        Repeats(),
        Variants(),
        CoPurchase(
            last_n=last_n,
            refit_days=config.refit_days,
            days=config.cooccurrence_days,
            within=config.cooccurrence_within,
            cached_periods=config.cached_periods,
        ),
        *(ContentNeighbours(m, last_n) for m in ("tfidf", "text", "image", "fused")),
        Trending(config.trending_days, config.cached_periods),
        NewArrivals(config.new_arrival_days, config.cached_periods),
        *(
            NewByContent(m, config.new_arrival_days, last_n, config.cached_periods)
            for m in ("tfidf", "image")
        ),
        SequenceTop(),
    ]
    dropped = {
        name
        for family in config.without or []
        for name in SOURCE_FAMILIES.get(family, ())  # ConfigError is raised on load
    }
    return [
        source
        for source in candidates
        if getattr(config.sources, source.name) > 0
        and source.name not in dropped
        and has_inputs(source, context)
    ]


def prepare(config: RankerConfig, context: RankerContext) -> None:
    """Build what the enabled sources compute once per catalogue (each content modality's
    neighbour graph, `content_graph`) now, so that no query pays for it (a service calls this
    when it loads, before the first request)."""
    for source in enabled_sources(config, context):
        if isinstance(source, ContentNeighbours):
            content_graph(context, source.modality, source.neighbours)


SOURCE_FAMILIES = {
    "image": ("content_image", "new_image"),
    "text": ("content_tfidf", "content_text", "new_tfidf"),
    "sequence": ("sequence", "content_fused"),
}


def has_inputs(source: Source, context: RankerContext) -> bool:
    """Whether the context holds what ``source`` reads (groups, a modality, the model)."""
    if isinstance(source, Variants):
        return context.groups is not None
    if isinstance(source, NewByContent):
        return source.modality in context.vectors
    if isinstance(source, ContentNeighbours):
        model_ok = source.modality != "fused" or context.model is not None
        return source.modality in context.vectors and model_ok
    if isinstance(source, SequenceTop):
        return context.model is not None
    return True
