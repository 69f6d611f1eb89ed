"""Candidate sources on hand-built histories, the leakage property, and which sources run."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqrec.ranker import candidates
from seqrec.ranker.config import RankerConfig, SourceSizes
from seqrec.ranker.context import PeriodCache, RankerContext
from seqrec.ranker.events import Events
from seqrec.ranker.features import feature_matrix
from seqrec.ranker.new_items import NewByContent
from seqrec.ranker.queries import Queries
from seqrec.ranker.sources import (
    ContentNeighbours,
    CoPurchase,
    NewArrivals,
    Repeats,
    SequenceTop,
    Trending,
    Variants,
    enabled_sources,
    neighbour_sums,
    prepare,
)


def context_of(log, n_items=10, day=1, **inputs) -> RankerContext:
    """A context over ``log``: (user, item, timestamp) triples."""
    frame = pd.DataFrame(log, columns=["user_id", "item_idx", "timestamp"])
    return RankerContext(n_items=n_items, events=Events(frame, n_items, day), **inputs)


def queries(*specs) -> Queries:
    """Queries from (history items, history times, cutoff) triples."""
    return Queries(
        [np.array(h, dtype=np.int64) for h, _, _ in specs],
        [np.array(t, dtype=np.int64) for _, t, _ in specs],
        [c for _, _, c in specs],
    )


def per_row(found, row):
    mine = found.rows == row
    return found.items[mine].tolist(), found.scores[mine].tolist()


def test_repeats_latest_first_then_most_bought_then_position():
    q = queries(([3, 5, 3, 7], [1, 2, 4, 4], 10), ([1, 2], [5, 5], 10), ([], [], 10))
    found = Repeats().candidates(q, context_of([]), n=5)
    assert per_row(found, 0) == ([3, 7, 5], [3.0, 2.0, 1.0])  # 3: bought at 4, twice
    assert per_row(found, 1) == ([2, 1], [2.0, 1.0])  # same time and count: the later entry
    assert per_row(found, 2) == ([], [])
    assert per_row(Repeats().candidates(q, context_of([]), n=2), 0)[0] == [3, 7]


GROUPS = np.array([0, 0, 0, 1, 1, 1, 1, 2, -1, -1])
SALES = [(9, 5, 1), (9, 5, 2), (9, 5, 3), (9, 6, 4), (9, 6, 5), (9, 2, 5), (9, 2, 6), (9, 4, 1)]


def test_variants_latest_group_first_ties_by_recent_sales():
    """Group 1 (bought the day before the cutoff) before group 0 (bought 9 days before); its
    items by sales in the 28 days before the cutoff; history items left out."""
    context = context_of(SALES, groups=GROUPS)
    q = queries(([0, 3], [1, 9], 10))
    found = Variants().candidates(q, context, n=10)
    items, scores = per_row(found, 0)
    assert items == [5, 6, 4, 2, 1]
    assert scores[0] == scores[2] > scores[3] == scores[4]
    np.testing.assert_allclose(scores[0], 0.5 ** (1 / 14), rtol=1e-6)
    # n = 2: group 1 alone holds n + history length items, group 0 is not expanded
    assert per_row(Variants().candidates(q, context, n=2), 0)[0] == [5, 6]


def test_variants_without_groups_or_grouped_history_propose_nothing():
    q = queries(([8, 9], [1, 2], 10))
    assert len(Variants().candidates(q, context_of(SALES, groups=GROUPS), 10).items) == 0
    assert len(Variants().candidates(q, context_of(SALES), 10).items) == 0


# co-purchases: 0 with 1 twice and with 2 once before day 10; 0 with 3 on day 12 (the log
# starts on day 0: refit periods start on days 0, 10, 20...)
COPURCHASES = [(0, 9, 0), (1, 0, 2), (1, 1, 2), (2, 0, 3), (2, 1, 3), (3, 0, 4), (3, 2, 4)]
COPURCHASES += [(4, 0, 12), (4, 3, 12)]


def test_cooccurrence_reads_only_the_log_before_the_refit_period():
    source = CoPurchase(refit_days=10)
    context = context_of(COPURCHASES)
    q = queries(([0], [1], 15), ([0], [1], 25), ([0, 1], [1, 2], 15))
    found = source.candidates(q, context, n=5)
    items, scores = per_row(found, 0)
    assert items == [1, 2]  # 3 was co-bought on day 12, inside the period of the cutoff 15
    np.testing.assert_allclose(scores, [2 / np.sqrt(6), 1 / np.sqrt(3)], rtol=1e-6)
    items, scores = per_row(found, 1)  # period from day 20: day 12 is readable
    assert items == [1, 2, 3]
    np.testing.assert_allclose(scores, [2 / np.sqrt(8), 0.5, 0.5], rtol=1e-6)
    assert per_row(found, 2)[0] == [2]  # history items left out
    assert [key[:2] for key in context.periods.entries] == [
        ("cooccurrence", 10),
        ("cooccurrence", 20),
    ]


def test_cooccurrence_within_a_window_before_the_period_reads_only_that_window():
    q = queries(([0], [1], 25))  # period from day 20
    found = CoPurchase(refit_days=10, days=9).candidates(q, context_of(COPURCHASES), n=5)
    assert per_row(found, 0)[0] == [3]  # only day 12 lies in [11, 20)
    found = CoPurchase(refit_days=10, days=5).candidates(q, context_of(COPURCHASES), n=5)
    assert per_row(found, 0)[0] == []


def test_cooccurrence_within_baskets_pairs_only_items_bought_together():
    log = [(1, 0, 2), (1, 1, 2), (1, 2, 3), (2, 0, 4), (2, 1, 4)]
    q = queries(([0], [1], 15))
    by_shopper = CoPurchase(refit_days=10).candidates(q, context_of(log), n=5)
    assert per_row(by_shopper, 0)[0] == [1, 2]
    by_basket = CoPurchase(refit_days=10, within="basket").candidates(q, context_of(log), n=5)
    assert per_row(by_basket, 0)[0] == [1]  # 2 was bought by shopper 1 on another day


def test_cooccurrence_keeps_only_the_latest_used_periods():
    context = context_of(COPURCHASES)
    source = CoPurchase(refit_days=10, cached_periods=2)
    for cutoff in (15, 25, 15, 35):  # periods 10, 20, 10 again (kept, now latest), 30
        source.candidates(queries(([0], [1], cutoff)), context, n=5)
    assert [key[1] for key in context.periods.entries] == [10, 30]


def test_period_cache_builds_once_and_drops_the_least_recently_used_of_each_kind():
    cache, built = PeriodCache(), []

    def build(key):
        return lambda: built.append(key) or key[1] * 10

    for key in (("a", 1), ("a", 2), ("a", 1), ("b", 7), ("a", 3), ("a", 2)):
        assert cache.get(key, build(key), size=2) == key[1] * 10
    # ("a", 2) was dropped when ("a", 3) came (("a", 1) had been used since); ("b", 7) is of
    # another kind and stays
    assert built == [("a", 1), ("a", 2), ("b", 7), ("a", 3), ("a", 2)]
    assert cache.entries == [("a", 3), ("a", 2), ("b", 7)]
    assert len(cache) == 3


def test_cooccurrence_with_order_only_times_reads_the_whole_log():
    found = CoPurchase(refit_days=10).candidates(
        queries(([0], [1], 15)), context_of(COPURCHASES, day=None), n=5
    )
    assert per_row(found, 0)[0] == [1, 2, 3]


UNIT = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [0, 0], [-1, 0]])


def test_content_neighbours_sum_cosines_to_the_last_items():
    for vectors in (UNIT, sp.csr_matrix(UNIT)):
        context = context_of([], n_items=6, vectors={"tfidf": vectors})
        q = queries(([0], [1], 9), ([0, 3], [1, 2], 9))
        found = ContentNeighbours("tfidf").candidates(q, context, n=5)
        assert per_row(found, 0)[0] == [1, 2]  # only positive scores; history left out
        np.testing.assert_allclose(per_row(found, 0)[1], [0.8, 0.6], rtol=1e-6)
        assert per_row(found, 1)[0] == [1, 2]  # tie 1.4: by item
        last_one = ContentNeighbours("tfidf", last_n=1).candidates(q, context, n=1)
        assert per_row(last_one, 1) == ([2], [np.float32(0.8)])
    assert ContentNeighbours("image").name == "content_image"


def test_content_neighbours_score_only_items_in_the_last_items_lists():
    """Only items among the ``neighbours`` most similar of some last item (itself included)
    are proposed: item 0 keeps [0, 1], item 3 keeps [3, 2]. Their score is still the whole
    cosine sum over the last items; a repeated last item counts each time."""
    context = context_of([], n_items=6, vectors={"tfidf": UNIT})
    q = queries(([0], [1], 9), ([0, 3], [1, 2], 9), ([0, 0], [1, 2], 9))
    found = ContentNeighbours("tfidf", neighbours=2).candidates(q, context, n=5)
    assert per_row(found, 0)[0] == [1]  # item 2 (cosine 0.6 to item 0) is not in its list
    assert per_row(found, 1)[0] == [1, 2]
    np.testing.assert_allclose(per_row(found, 1)[1], [1.4, 1.4], rtol=1e-6)  # 0.8 + 0.6 each
    np.testing.assert_allclose(per_row(found, 2)[1], [1.6], rtol=1e-6)
    assert [key[0] for key in context.cache] == ["content_graph"]  # built once, then read


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6))
def test_neighbour_sums_are_the_summed_weighted_rows_best_first(seed, n):
    """Against the dense sum of each query's weighted graph rows: positive sums only, the top
    n per query by sum, ties by item."""
    rng = np.random.default_rng(seed)
    n_items, n_queries = 8, 3
    dense = np.where(rng.random((n_items, n_items)) < 0.4, rng.integers(-2, 4, (8, 8)) / 4, 0)
    graph = sp.csr_matrix(dense)
    size = int(rng.integers(0, 7))
    rows, items = np.sort(rng.integers(0, n_queries, size)), rng.integers(0, n_items, size)
    weights = rng.integers(1, 3, size).astype(np.float64)
    empty = Queries(
        [np.zeros(0, np.int64)] * n_queries,
        [np.zeros(0, np.int64)] * n_queries,
        np.zeros(n_queries, np.int64),
    )
    found = neighbour_sums(empty, (rows, items, weights), graph, n, exclude_history=False)
    for row in range(n_queries):
        mine = rows == row
        sums = weights[mine] @ dense[items[mine]] if mine.any() else np.zeros(n_items)
        best = [i for i in np.lexsort((np.arange(n_items), -sums)) if sums[i] > 0][:n]
        np.testing.assert_array_equal(found.items[found.rows == row], best)
        np.testing.assert_allclose(found.scores[found.rows == row], sums[best], rtol=1e-6)


def test_prepare_builds_the_enabled_content_graphs_only():
    context = context_of([], n_items=6, vectors={"tfidf": UNIT, "image": UNIT})
    prepare(RankerConfig(sources=SourceSizes(content_image=0)), context)
    assert list(context.cache) == [("content_graph", "tfidf", 100)]


def test_trending_per_cutoff_and_never_unsold_items():
    log = [(1, 4, 2), (1, 4, 3), (2, 5, 8), (2, 5, 9), (3, 5, 9), (3, 6, 9), (3, 7, 12)]
    q = queries(([], [], 10), ([1], [1], 13), ([], [], 10))
    found = Trending(days=7).candidates(q, context_of(log), n=5)
    assert per_row(found, 0) == ([5, 4, 6], [3.0, 1.0, 1.0])  # day 2 is outside [3, 10)
    assert per_row(found, 2) == per_row(found, 0)
    assert per_row(found, 1) == ([5, 6, 7], [3.0, 1.0, 1.0])  # window [6, 13)
    assert per_row(Trending(days=7).candidates(q, context_of(log), n=1), 1)[0] == [5]


def test_shop_wide_lists_are_built_once_per_cutoff():
    """A cutoff's trending and new-arrival lists are kept with the context's per-period
    entries (a service asks at one cutoff): asked again, the kept list is read, not rebuilt."""
    log = [(1, 4, 2), (1, 4, 3), (2, 5, 8), (2, 5, 9), (3, 5, 9), (3, 6, 9), (3, 7, 12)]
    context, q = context_of(log), queries(([], [], 10), ([1], [1], 13), ([], [], 10))
    for source in (Trending(days=7), NewArrivals(days=7)):
        first = source.candidates(q, context, n=5)
        kept = [key for key in context.periods.entries if key[0] == source.name]
        assert [key[-1] for key in kept] == [10, 13]  # one list per distinct cutoff
        best, scores = context.periods.get(kept[0], lambda: None, size=8)
        scores[:] = 0.0  # changed in place: a rebuilt list would not show it
        again = source.candidates(q, context, n=5)
        assert per_row(again, 0) == (per_row(first, 0)[0], [0.0] * len(best))
        assert per_row(again, 1) == per_row(first, 1)


def test_new_arrivals_first_sold_within_the_window():
    log = [(1, 0, 1), (1, 0, 8), (2, 1, 7), (3, 1, 8), (4, 1, 9), (4, 2, 9), (5, 3, 10)]
    q = queries(([], [], 10))
    found = NewArrivals(days=5).candidates(q, context_of(log), n=5)
    assert per_row(found, 0) == ([1, 2], [3.0, 1.0])  # 0 sold first on day 1; 3 on day 10
    assert len(NewArrivals(days=5).candidates(q, context_of(log, day=None), 5).items) == 0


class StubModel:
    """Raw scores: a fixed preference, plus 10 for the last history item."""

    max_len, device = 3, torch.device("cpu")

    def __init__(self, n_items=5):
        self.base = torch.zeros(n_items)
        self.base[:5] = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.0])

    def raw(self, seq):
        scores = self.base.repeat(len(seq), 1)  # [B, N]
        last = seq[:, -1]
        scores[last > 0, last[last > 0] - 1] += 10.0
        return scores


def test_sequence_top_takes_the_models_best_raw_scores():
    context = context_of([], n_items=5, model=StubModel())
    found = SequenceTop().candidates(queries(([3], [1], 5), ([], [], 5)), context, n=2)
    items, scores = per_row(found, 0)
    assert items == [3, 1]
    np.testing.assert_allclose(scores, [10.2, 0.9], rtol=1e-6)
    assert per_row(found, 1)[0] == [1, 2]


def all_sources():
    return [
        Repeats(),
        Variants(),
        CoPurchase(refit_days=5),
        ContentNeighbours("tfidf"),
        Trending(days=7),
        NewArrivals(days=7),
        SequenceTop(),
    ]


EVENTS = st.tuples(st.integers(0, 4), st.integers(0, 9), st.integers(0, 30))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(EVENTS, max_size=40),
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 40)), max_size=15),
    st.lists(st.integers(0, 9), max_size=6),
    st.integers(1, 30),
)
def test_no_source_reads_events_at_or_after_the_cutoff(log, future, history, cutoff):
    """Events at or after the cutoff (future sales, new co-purchases) change no candidate."""
    past = [e for e in log if e[2] < cutoff]
    later = [(5, item, cutoff + dt) for item, dt in future]  # a shopper buying from the cutoff
    inputs = {"groups": GROUPS, "vectors": {"tfidf": np.random.default_rng(0).random((10, 3))}}
    q = queries((history, sorted(np.linspace(0, cutoff - 1, len(history)).astype(int)), cutoff))
    for source in all_sources():
        before = source.candidates(q, context_of(past, model=StubModel(10), **inputs), 8)
        after = source.candidates(q, context_of(past + later, model=StubModel(10), **inputs), 8)
        np.testing.assert_array_equal(before.items, after.items, err_msg=source.name)
        np.testing.assert_array_equal(before.scores, after.scores, err_msg=source.name)


def names(config, context):
    return [source.name for source in enabled_sources(config, context)]


def test_enabled_sources_honour_sizes_inputs_and_without():
    bare = context_of([], vectors={"tfidf": UNIT})
    assert names(RankerConfig(), bare) == [
        "repeats",
        "cooccurrence",
        "content_tfidf",
        "trending",
        "new_arrivals",
    ]
    vectors = {m: UNIT for m in ("tfidf", "text", "image", "fused")}
    full = context_of([], groups=GROUPS, vectors=vectors, model=StubModel(10))
    sizes = SourceSizes(content_text=5, content_fused=5, sequence=5, trending=0)
    assert names(RankerConfig(sources=sizes), full) == [
        "repeats",
        "variants",
        "cooccurrence",
        "content_tfidf",
        "content_text",
        "content_image",
        "content_fused",
        "new_arrivals",
        "sequence",
    ]
    without = names(RankerConfig(sources=sizes, without=["text", "sequence"]), full)
    assert without == ["repeats", "variants", "cooccurrence", "content_image", "new_arrivals"]
    assert "content_image" not in names(RankerConfig(sources=sizes, without=["image"]), full)
    no_model = context_of([], groups=GROUPS, vectors=vectors)
    assert "content_fused" not in names(RankerConfig(sources=sizes), no_model)
    assert "sequence" not in names(RankerConfig(sources=sizes), no_model)


def test_a_never_sold_item_is_a_content_candidate_with_never_sold_features():
    """A new article (no sale before the cutoff, or ever) reaches the candidates through its
    content, and its features say so: no age, no sales, its similarity to the history."""
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.99, 0.05]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    log = [(1, 0, 1), (1, 1, 2), (2, 2, 3), (3, 3, 9)]  # item 3 first sold after the cutoff
    context = context_of(log, n_items=4, vectors={"image": vectors})
    q = queries(([0], [1], 5))
    config = RankerConfig(
        sources=SourceSizes(**{**dict.fromkeys(SourceSizes().__dict__, 0), "content_image": 2})
    )
    found = candidates.generate(q, context, config)
    assert 3 in found.items.tolist()
    names, matrix = feature_matrix(q, found, context, config)
    row = dict(zip(names, matrix[found.items.tolist().index(3)], strict=True))
    assert np.isnan(row["item_age_days"]) and np.isnan(row["item_days_since_sale"])
    assert row["item_sales_all"] == 0
    assert row["cos_image_max"] == pytest.approx(float(vectors[3] @ vectors[0]), rel=1e-5)


def test_new_by_content_proposes_only_new_items_nearest_first():
    vectors = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0.95, 0.05], [0, 1], [0.7, 0.3]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # item 1 sold on day 1 (old at cutoff 20 with days=5), 2 first sold day 17 (new), 3 and 5
    # never sold before 20 (3 sells on day 25: still new at 20), 4 unsold but orthogonal
    log = [(1, 0, 1), (1, 1, 1), (2, 2, 17), (3, 3, 25)]
    context = context_of(log, n_items=6, vectors={"tfidf": sp.csr_matrix(vectors)})
    found = NewByContent("tfidf", days=5).candidates(queries(([0], [1], 20)), context, n=5)
    items, scores = per_row(found, 0)
    assert items == [3, 2, 5]  # by cosine to item 0; 0 (history), 1 (old), 4 (0) left out
    np.testing.assert_allclose(scores, vectors[[3, 2, 5]] @ vectors[0], rtol=1e-5)
    later = NewByContent("tfidf", days=5).candidates(queries(([0], [1], 30)), context, n=5)
    assert per_row(later, 0)[0] == [3, 5]  # at day 30 item 2 is no longer new (day 17 < 25)
    # one batch at both cutoffs, asked twice: each row as alone, each cutoff's new items built
    # once and kept with the context's per-period structures (a service asks at one cutoff)
    source = NewByContent("tfidf", days=5, cached_periods=4)
    fresh_context = context_of(log, n_items=6, vectors={"tfidf": sp.csr_matrix(vectors)})
    for _ in range(2):
        both = source.candidates(queries(([0], [1], 30), ([0], [1], 20)), fresh_context, n=5)
        assert per_row(both, 0)[0] == [3, 5] and per_row(both, 1)[0] == [3, 2, 5]
        assert len(fresh_context.periods) == 2
