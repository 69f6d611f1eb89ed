"""One feature row per (query, candidate) pair: what the re-ranker reads.

Every feature comes from the query's own history (items, their timestamps) and from
``context.events`` read as of the query's cutoff (`seqrec.ranker.events`: only events with
timestamp strictly before it), so no feature sees the moment asked or anything after it. The
columns are computed for all pairs at once (numpy/scipy; loops run over a handful of windows,
modalities, category columns or query batches, never over pairs). Days are timestamp units /
``context.events.day``; with order-only timestamps (``day`` None) every feature measured in days
and the windowed sales (1/7/28 days, trend) are NaN, and sales counts read the whole log.

Names (stable strings; NaN = missing; [family] where `feature_family` gives one, the families
`RankerConfig.without` can leave out):

    src_<source>_score        the source's score of the item, NaN where it did not propose it
                              [image: content_image, new_image; text: content_tfidf,
                              content_text, new_tfidf; sequence: sequence, content_fused]
    src_<source>_rank         its 1-based rank among that source's candidates, NaN where absent
    src_count                 number of sources that proposed the item
    user_item_count           times the shopper bought the item
    user_item_days_since      days from the shopper's last purchase of it to the cutoff (NaN: never)
    user_item_from_end        position of that purchase from the history's end (1 = latest; NaN)
    user_group_count          the same three for the item's product group (``context.groups``;
    user_group_days_since       NaN where the item has no group; absent without groups)
    user_group_from_end
    item_sales_all            the item's sales before the cutoff
    item_sales_1d             ... in the 1 day before the cutoff
    item_sales_7d             ... in the 7 days before it
    item_sales_28d            ... in the 28 days before it
    item_trend_7d             (sales in the last 7 days + 1) / (sales in the 7 days before + 1)
    item_age_days             days since the item's first sale (NaN: never sold before the cutoff)
    item_days_since_sale      days since its last sale (NaN: never sold before the cutoff)
    item_price                the item's price (absent without prices; NaN where unknown)
    price_ratio_to_user       price / mean price of the shopper's history items (NaN: unknown)
    price_minus_user          price - that mean price
    cat<c>_share_last         share of the shopper's last ``history_last_n`` items with the
                              item's code in category column c (NaN: code 0 = unknown, no history)
    cat<c>_share_all          ... of the whole history
    cos_<modality>_max        max cosine of the item's vector to the last ``history_last_n``
                              history items, per modality of ``context.vectors`` (NaN: the item or
                              every one of those items has no vector) [text: tfidf, text;
                              image: image; sequence: fused]
    cos_<modality>_mean       ... mean cosine
    seq_score                 the sequence model's raw score of the item [sequence]
    seq_rank                  its 1-based rank in the model's raw scores over the whole catalogue
                              (ties share the best rank) [sequence]
    user_history_length       purchases in the shopper's history
    user_baskets              distinct purchase times (baskets) in it
    user_days_since_last      days from the latest purchase to the cutoff (NaN: no history)
    user_days_since_first     days from the first purchase to the cutoff
    user_mean_basket_size     history length / baskets (NaN: no history)

Which columns exist depends only on the context (groups, prices, categories, vectors, model),
the candidate set's sources and the config, so a ranker's training and scoring see the same list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.ranker.candidates import CandidateSet, runs
from seqrec.ranker.config import SOURCES, RankerConfig
from seqrec.ranker.context import RankerContext, Vectors, has_vector
from seqrec.ranker.cosines import Layout, last_slots, slot_cosines
from seqrec.ranker.events import Events
from seqrec.ranker.queries import Queries, history_events
from seqrec.scoring import ModelScorer

Columns = dict[str, np.ndarray]  # feature name -> [P] values

SOURCE_FAMILY = {
    "content_image": "image",
    "content_tfidf": "text",
    "content_text": "text",
    "sequence": "sequence",
    "content_fused": "sequence",
    "new_tfidf": "text",
    "new_image": "image",
}
MODALITY_FAMILY = {"tfidf": "text", "text": "text", "image": "image", "fused": "sequence"}
SALES_DAYS = (1, 7, 28)
QUERY_CHUNK = 256  # queries per block of full-catalogue model scores


@functools.cache
def feature_family(name: str) -> str | None:
    """The family ("image", "text", "sequence") a feature belongs to, None for the others."""
    if name.startswith("seq_"):
        return "sequence"
    for source, family in SOURCE_FAMILY.items():
        if name in (f"src_{source}_score", f"src_{source}_rank"):
            return family
    if name.startswith("cos_"):
        return MODALITY_FAMILY.get(name[len("cos_") :].rsplit("_", 1)[0])
    return None


@dataclass
class _Pairs:
    """The candidate pairs, with their queries' histories flattened (one entry per purchase)."""

    rows: np.ndarray  # [P] int64 query row
    items: np.ndarray  # [P] int64
    cutoffs: np.ndarray  # [P] int64 cutoff of the pair's query
    query_cutoffs: np.ndarray  # [B] int64
    lengths: np.ndarray  # [B] history lengths
    h_rows: np.ndarray  # [E] query row of each history entry
    h_items: np.ndarray  # [E]
    h_times: np.ndarray  # [E] float64 (NaN where the query gave no times)
    h_from_end: np.ndarray  # [E] 1 = the latest entry of its history
    day: int | None

    @functools.cached_property
    def layout(self) -> Layout:
        """The pairs grouped by query (`seqrec.ranker.cosines.Layout`), built once."""
        return Layout.of(self.rows, len(self.lengths))

    def days_before(self, times: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
        """Days from ``times`` to ``cutoffs`` (NaN where a time is NaN or without a clock)."""
        if self.day is None:
            return np.full(len(times), np.nan)
        return (cutoffs.astype(np.float64) - times) / self.day


def _pairs(queries: Queries, candidates: CandidateSet, day: int | None) -> _Pairs:
    h_rows, h_items, h_times, from_end = history_events(queries)  # [E] each
    lengths = np.array([len(h) for h in queries.histories], dtype=np.int64)  # [B]
    timed = np.array(
        [len(t) == len(h) for h, t in zip(queries.histories, queries.times, strict=True)],
        dtype=bool,
    )  # [B] queries that gave their history's times
    rows = np.asarray(candidates.rows, dtype=np.int64)
    return _Pairs(
        rows=rows,
        items=np.asarray(candidates.items, dtype=np.int64),
        cutoffs=queries.cutoffs[rows],
        query_cutoffs=queries.cutoffs,
        lengths=lengths,
        h_rows=h_rows,
        h_items=h_items,
        h_times=np.where(timed[h_rows], h_times.astype(np.float64), np.nan),
        h_from_end=from_end + 1,
        day=day,
    )


def _find(distinct: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position [P], found [P]) of ``keys`` in the ascending array ``distinct``."""
    if len(distinct) == 0:
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(distinct, keys), len(distinct) - 1)
    return pos, distinct[pos] == keys


def _gather(values: np.ndarray, pos: np.ndarray, found: np.ndarray, fill: float) -> np.ndarray:
    """[P] float64 ``values[pos]`` where found, ``fill`` elsewhere (``values`` may be empty)."""
    out = np.full(len(pos), fill, dtype=np.float64)
    out[found] = values[pos[found]]
    return out


def _source_columns(candidates: CandidateSet) -> Columns:
    names = [s for s in SOURCES if s in candidates.scores]
    names += sorted(set(candidates.scores) - set(SOURCES))
    ranks = np.zeros((len(names), len(candidates)), dtype=np.float32)  # [S, P]
    for at, name in enumerate(names):
        ranks[at] = candidates.ranks[name]
    proposed = ranks > 0
    ranks[~proposed] = np.nan
    columns: Columns = {}
    for at, name in enumerate(names):
        columns[f"src_{name}_score"] = np.asarray(candidates.scores[name], dtype=np.float32)
        columns[f"src_{name}_rank"] = ranks[at]
    columns["src_count"] = proposed.sum(axis=0, dtype=np.float32)
    return columns


def _bought(pairs: _Pairs, h_codes: np.ndarray, codes: np.ndarray, prefix: str) -> Columns:
    """The shopper's purchases of each pair's code (item or group; -1 = none): how many, how
    long before the cutoff the latest, and its position from the history's end."""
    n_codes = int(max(h_codes.max(initial=0), codes.max(initial=0))) + 1
    kept = np.flatnonzero(h_codes >= 0)  # [E'] entries with a code
    keys = pairs.h_rows[kept] * n_codes + h_codes[kept]
    order = np.argsort(keys, kind="stable")  # history order kept within a key
    sorted_keys = keys[order]
    first, stop = runs(sorted_keys)  # [K] where each distinct key's entries begin and end
    distinct, counts = sorted_keys[first], stop - first
    latest = kept[order[first + counts - 1]]  # [K] entry index of each key's latest purchase
    pos, found = _find(distinct, pairs.rows * n_codes + codes)
    found &= codes >= 0
    count = _gather(counts, pos, found, 0.0)
    count[codes < 0] = np.nan
    last_time = _gather(pairs.h_times[latest], pos, found, np.nan)
    from_end = _gather(pairs.h_from_end[latest], pos, found, np.nan)
    return {
        f"{prefix}_count": count,
        f"{prefix}_days_since": pairs.days_before(last_time, pairs.cutoffs),
        f"{prefix}_from_end": from_end,
    }


def _popularity(pairs: _Pairs, events: Events) -> Columns:
    items, cutoffs = pairs.items, pairs.cutoffs
    nan = np.full(len(items), np.nan)
    windows = (None, *SALES_DAYS, 14) if events.timed else (None,)
    every, *sales = events.counts(items, cutoffs, windows)
    columns: Columns = {"item_sales_all": every}
    for at, days in enumerate(SALES_DAYS):
        columns[f"item_sales_{days}d"] = sales[at] if events.timed else nan
    if events.timed:
        before = sales[-1] - columns["item_sales_7d"]
        columns["item_trend_7d"] = (columns["item_sales_7d"] + 1.0) / (before + 1.0)
    else:
        columns["item_trend_7d"] = nan
    columns["item_age_days"] = pairs.days_before(events.first_time(items, cutoffs), cutoffs)
    columns["item_days_since_sale"] = pairs.days_before(events.last_time(items, cutoffs), cutoffs)
    return columns


def _price(pairs: _Pairs, prices: np.ndarray) -> Columns:
    h_prices = prices[pairs.h_items].astype(np.float64)  # [E]
    known = ~np.isnan(h_prices)
    n_queries = len(pairs.lengths)
    total = np.bincount(pairs.h_rows[known], weights=h_prices[known], minlength=n_queries)
    priced = np.bincount(pairs.h_rows[known], minlength=n_queries)
    mean = np.full(n_queries, np.nan)
    np.divide(total, priced, out=mean, where=priced > 0)  # [B]
    price, user = prices[pairs.items].astype(np.float64), mean[pairs.rows]  # [P]
    ratio = np.full(len(price), np.nan)
    np.divide(price, user, out=ratio, where=user > 0)
    return {"item_price": price, "price_ratio_to_user": ratio, "price_minus_user": price - user}


def _category_shares(pairs: _Pairs, categories: np.ndarray, last_n: int) -> Columns:
    """Share of the query's history entries (its latest ``last_n``, and all) with the
    candidate's code, per category column; NaN for an unknown code (0) or no entries."""
    n_queries = len(pairs.lengths)
    h_codes = np.asarray(categories[pairs.h_items], dtype=np.int64)  # [E, C]
    p_codes = np.asarray(categories[pairs.items], dtype=np.int64)  # [P, C]
    n_codes = int(max(h_codes.max(initial=0), p_codes.max(initial=0))) + 1
    shares = np.full((2, *p_codes.shape), np.nan)  # [last | all, P, C]
    _code_shares(
        np.searchsorted(pairs.h_rows, np.arange(n_queries + 1)),  # history rows are sorted
        h_codes,
        pairs.h_from_end <= last_n,
        pairs.layout.order,
        pairs.layout.starts,
        p_codes,
        n_codes,
        shares,
    )
    return {
        f"cat{column}_share_{part}": shares[at, :, column]
        for column in range(categories.shape[1])
        for at, part in enumerate(("last", "all"))
    }


@numba.njit(nogil=True)
def _code_shares(h_starts, h_codes, h_last, order, p_starts, p_codes, n_codes, shares):
    """Per query: its entries' codes counted per column (latest entries and all), each
    candidate's code looked up, the counts cleared again."""
    n_columns = h_codes.shape[1]
    counts = np.zeros((2, n_columns, n_codes))  # [last | all, C, codes]
    for query in range(h_starts.shape[0] - 1):
        sizes = np.zeros(2)
        for entry in range(h_starts[query], h_starts[query + 1]):
            sizes[0] += h_last[entry]
            sizes[1] += 1
            for column in range(n_columns):
                counts[0, column, h_codes[entry, column]] += h_last[entry]
                counts[1, column, h_codes[entry, column]] += 1
        for at in range(p_starts[query], p_starts[query + 1]):
            pair = order[at]
            for column in range(n_columns):
                code = p_codes[pair, column]
                for part in range(2):
                    if code > 0 and sizes[part] > 0:
                        shares[part, pair, column] = counts[part, column, code] / sizes[part]
        for entry in range(h_starts[query], h_starts[query + 1]):
            for column in range(n_columns):
                counts[:, column, h_codes[entry, column]] = 0.0


def _similarities(
    pairs: _Pairs, vectors: Vectors, has_vector: np.ndarray, last: np.ndarray, modality: str
) -> Columns:
    """Max and mean cosine of each candidate to its query's latest history items (rows are
    unit vectors; items without a vector (``has_vector`` [N] False) are left out of both)."""
    sims = slot_cosines(vectors, pairs.items, last, pairs.layout)  # [P, last_n]
    best, mean = _valid_max_mean(sims, last, pairs.rows, pairs.items, has_vector)  # [P] each
    return {f"cos_{modality}_max": best, f"cos_{modality}_mean": mean}


@numba.njit(nogil=True)
def _valid_max_mean(sims, last, rows, items, has_vector):
    """Max and mean of each pair's cosines over its valid slots (a filled slot, both items with
    a vector); NaN where none is valid."""
    best, mean = np.full(len(items), np.nan), np.full(len(items), np.nan)
    for pair in range(len(items)):
        if not has_vector[items[pair]]:
            continue
        top, total, seen = -np.inf, 0.0, 0
        for slot in range(last.shape[1]):
            other = last[rows[pair], slot]
            if other >= 0 and has_vector[other]:
                top = max(top, sims[pair, slot])
                total += sims[pair, slot]
                seen += 1
        if seen:
            best[pair], mean[pair] = top, total / seen
    return best, mean


def _sequence(pairs: _Pairs, queries: Queries, model: ModelScorer) -> Columns:
    """The model's raw score of each candidate and its rank over the catalogue (1 + items
    scored strictly above it), ``QUERY_CHUNK`` queries at a time on the model's device."""
    score, rank = np.full(len(pairs.items), np.nan), np.full(len(pairs.items), np.nan)
    layout = pairs.layout
    for first in range(0, len(queries), QUERY_CHUNK):
        stop = min(first + QUERY_CHUNK, len(queries))
        lo, hi = layout.starts[first], layout.starts[stop]
        if lo == hi:
            continue
        seq = histories_to_tensor(queries.histories[first:stop], model.max_len)  # [b, L]
        raw = torch.as_tensor(model.raw(seq.to(model.device))).float()  # [b, N]
        ascending = _sorted_rows(raw)  # [b, N]
        picked = layout.order[lo:hi]
        values = raw.cpu().numpy()[layout.rows[lo:hi] - first, pairs.items[picked]]  # [p]
        not_above = np.empty(len(picked), dtype=np.int64)  # items scored <= the candidate
        for row in range(stop - first):  # the query's pairs: a slice of the sorted ones
            mine = slice(layout.starts[first + row] - lo, layout.starts[first + row + 1] - lo)
            not_above[mine] = np.searchsorted(ascending[row], values[mine], side="right")
        score[picked] = values
        rank[picked] = raw.shape[1] - not_above + 1
    return {"seq_score": score, "seq_rank": rank}


def _sorted_rows(scores: torch.Tensor) -> np.ndarray:
    """Each row of ``scores`` [b, N] in ascending order, as numpy (sorted on the model's device;
    numpy's vectorised sort on the CPU)."""
    if scores.device.type != "cpu":
        return torch.sort(scores, dim=1).values.cpu().numpy()
    return np.sort(scores.numpy(), axis=1)


def _activity(pairs: _Pairs) -> Columns:
    """Per-query activity, repeated for each of the query's candidates."""
    n_queries, lengths = len(pairs.lengths), pairs.lengths
    new_basket = np.ones(len(pairs.h_rows), dtype=bool)  # [E] first entry of a distinct time
    new_basket[1:] = (pairs.h_rows[1:] != pairs.h_rows[:-1]) | (
        pairs.h_times[1:] != pairs.h_times[:-1]
    )
    baskets = np.bincount(pairs.h_rows[new_basket], minlength=n_queries).astype(np.float64)
    filled = np.flatnonzero(lengths > 0)
    starts = np.cumsum(lengths) - lengths
    first, latest = np.full(n_queries, np.nan), np.full(n_queries, np.nan)
    first[filled] = pairs.h_times[starts[filled]]
    latest[filled] = pairs.h_times[starts[filled] + lengths[filled] - 1]
    basket_size = np.full(n_queries, np.nan)
    np.divide(lengths, baskets, out=basket_size, where=baskets > 0)
    per_query = {
        "user_history_length": lengths.astype(np.float64),
        "user_baskets": baskets,
        "user_days_since_last": pairs.days_before(latest, pairs.query_cutoffs),
        "user_days_since_first": pairs.days_before(first, pairs.query_cutoffs),
        "user_mean_basket_size": basket_size,
    }
    return {name: values[pairs.rows] for name, values in per_query.items()}


def _content_columns(
    pairs: _Pairs, last: np.ndarray, context: RankerContext, without: set[str]
) -> Columns:
    columns: Columns = {}
    modalities = [m for m in MODALITY_FAMILY if m in context.vectors]
    modalities += sorted(set(context.vectors) - set(MODALITY_FAMILY))
    for modality in modalities:
        if MODALITY_FAMILY.get(modality) not in without:
            vectors, with_vector = context.vectors[modality], has_vector(context, modality)
            columns.update(_similarities(pairs, vectors, with_vector, last, modality))
    return columns


def feature_matrix(
    queries: Queries, candidates: CandidateSet, context: RankerContext, config: RankerConfig
) -> tuple[list[str], np.ndarray]:
    """(feature names [F], features [P, F] float32, NaN = missing): one row per candidate pair,
    in ``candidates`` order; the families of ``config.without`` left out (module docstring)."""
    without = set(config.without or ())
    pairs = _pairs(queries, candidates, context.events.day)
    columns = _source_columns(candidates)
    columns.update(_bought(pairs, pairs.h_items, pairs.items, "user_item"))
    if context.groups is not None:
        groups = np.asarray(context.groups, dtype=np.int64)
        columns.update(_bought(pairs, groups[pairs.h_items], groups[pairs.items], "user_group"))
    columns.update(_popularity(pairs, context.events))
    if context.prices is not None:
        columns.update(_price(pairs, context.prices))
    if context.categories is not None:
        columns.update(_category_shares(pairs, context.categories, config.history_last_n))
    last = last_slots(queries, config.history_last_n)  # [B, last_n]
    columns.update(_content_columns(pairs, last, context, without))
    if context.model is not None and "sequence" not in without:
        columns.update(_sequence(pairs, queries, context.model))
    columns.update(_activity(pairs))
    names = [name for name in columns if feature_family(name) not in without]
    matrix = np.empty((len(names), len(pairs.items)), dtype=np.float32)  # [F, P]
    for column, name in enumerate(names):
        matrix[column] = columns[name]
    return names, np.ascontiguousarray(matrix.T)  # [P, F]
