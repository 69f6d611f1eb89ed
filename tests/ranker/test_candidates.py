"""Merging the sources' candidates, dense scores, candidate recall and one source as a ranker."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqrec.ranker.candidates import (
    Candidates,
    SourceScorer,
    candidate_recall,
    dense_scores,
    generate,
    latest_queries,
    merge,
    runs,
    top_per_row,
)
from seqrec.ranker.config import RankerConfig, SourceSizes
from seqrec.ranker.context import RankerContext
from seqrec.ranker.events import Events
from seqrec.ranker.queries import Queries
from seqrec.ranker.sources import Repeats, Trending


def candidates(rows, items, scores) -> Candidates:
    return Candidates(
        np.array(rows, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.array(scores, dtype=np.float32),
    )


def found():
    return {
        "a": candidates([0, 0, 1], [5, 2, 3], [0.9, 0.5, 1.0]),
        "b": candidates([0, 0], [2, 7], [3.0, 3.0]),  # a tie: ranked in the source's order
    }


def test_merge_one_row_per_pair_with_each_sources_score_and_rank():
    merged = merge(2, found(), max_candidates=10)
    assert merged.rows.tolist() == [0, 0, 0, 1]
    assert merged.items.tolist() == [2, 5, 7, 3]
    np.testing.assert_array_equal(merged.scores["a"], np.float32([0.5, 0.9, np.nan, 1.0]))
    np.testing.assert_array_equal(merged.scores["b"], np.float32([3.0, np.nan, 3.0, np.nan]))
    assert merged.ranks["a"].tolist() == [2, 1, 0, 1]
    assert merged.ranks["b"].tolist() == [1, 0, 2, 0]


def test_merge_cap_keeps_the_best_ranks_ties_by_source_order():
    two = merge(2, found(), max_candidates=2)  # row 0: 5 (a's 1st), 2 (b's 1st); 7 dropped
    assert list(zip(two.rows.tolist(), two.items.tolist(), strict=True)) == [(0, 2), (0, 5), (1, 3)]
    assert two.ranks["b"].tolist() == [1, 0, 0]
    one = merge(2, found(), max_candidates=1)  # a tie of first ranks: source a comes first
    assert one.items.tolist() == [5, 3]


def test_merge_refuses_rows_outside_the_queries_and_takes_empty_sources():
    with pytest.raises(ValueError, match="outside"):
        merge(1, found(), max_candidates=10)
    empty = merge(3, {"a": candidates([], [], [])}, max_candidates=5)
    assert len(empty) == 0 and empty.scores["a"].shape == (0,)


def test_dense_scores_put_candidates_above_every_other_item():
    found_ = candidates([0, 0, 1, 3], [1, 3, 0, 2], [2.0, -1.0, 5.0, 3e8])
    scores = dense_scores(found_, n_queries=4, n_items=4)
    assert scores.dtype == np.float32
    assert scores[0, 1] == 2.0 and scores[0, 3] == -1.0
    assert scores[0, 0] == scores[0, 2] < -1.0  # the rest tie below the lowest candidate
    assert scores[1, 0] == 5.0 and len(set(scores[1, 1:])) == 1 and scores[1, 1] < 5.0
    assert len(set(scores[2])) == 1  # no candidates: all tie
    assert scores[3, 2] == np.float32(3e8) and scores[3, 0] < scores[3, 2]  # strictly, in float32


def test_dense_scores_of_a_merged_set_interleave_the_sources():
    scores = dense_scores(merge(2, found(), 10), n_queries=2, n_items=8)
    # row 0: a's first (5), b's first (2), a's second (2, already), b's second (7)
    order = np.argsort(-scores[0], kind="stable")[:3]
    assert order.tolist() == [5, 2, 7]
    assert scores[0, 7] > scores[0, 0] == scores[0, 1]


def test_candidate_recall_is_the_share_of_targets_found():
    found_ = candidates([0, 0, 1], [1, 2, 3], [1, 1, 1])
    targets = [np.array([1, 4]), np.array([3]), np.array([], dtype=np.int64)]
    assert candidate_recall(found_, targets) == pytest.approx(2 / 3)
    assert candidate_recall(merge(3, {"x": found_}, 10), targets) == pytest.approx(2 / 3)
    assert candidate_recall(found_, [np.array([], dtype=np.int64)]) == 0.0


def small_context() -> RankerContext:
    log = pd.DataFrame(
        {"user_id": [1, 1, 2, 2, 3], "item_idx": [0, 1, 0, 2, 3], "timestamp": [1, 1, 2, 2, 3]}
    )
    return RankerContext(n_items=5, events=Events(log, 5, day=1))


def test_generate_runs_the_enabled_sources_with_their_sizes():
    context = small_context()
    q = Queries([np.array([0, 4])], [np.array([1, 2])], [10])
    config = RankerConfig(sources=SourceSizes(trending=1, new_arrivals=0), trending_days=30)
    merged = generate(q, context, config)
    assert list(merged.scores) == ["repeats", "cooccurrence", "trending"]
    assert set(merged.items[merged.ranks["trending"] > 0]) == {0}  # the best seller, once
    assert set(merged.items[merged.ranks["repeats"] > 0]) == {0, 4}
    alone = generate(q, context, config, sources=[Repeats()])
    assert list(alone.scores) == ["repeats"] and alone.items.tolist() == [0, 4]


def test_source_scorer_ranks_by_one_source_alone():
    context = small_context()
    scorer = SourceScorer(Trending(days=30), context, n=2)
    q = Queries([np.array([4])], [np.array([1])], [10])
    scores = scorer.score_queries(q)
    assert scores.shape == (1, 5)
    assert scores[0, 0] > scores[0, 1] > scores[0, 2] == scores[0, 3] == scores[0, 4]
    # times unknown: asked right after the log's end
    np.testing.assert_array_equal(scorer.score([np.array([4])]), scores)
    later = latest_queries([np.array([2, 3])], context.events)
    assert later.cutoffs.tolist() == [4] and later.times[0].tolist() == [3, 3]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),  # row
            st.integers(0, 9),  # item
            st.sampled_from([0.0, 1.0, 2.0, np.nan]),  # score: ties and NaN
            st.sampled_from([0.0, 1.0, np.nan]),  # tie-break
        ),
        max_size=40,
    ),
    st.integers(0, 6),
    st.booleans(),
)
def test_top_per_row_is_each_rows_sorted_prefix(entries, n, with_ties):
    """The kept pairs are, row by row, the first ``n`` of the pairs sorted by score and tie
    descending (NaN last), then item ascending."""
    table = np.array(entries, dtype=np.float64).reshape(-1, 4)  # [C, row | item | score | tie]
    rows, items = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    scores, ties = table[:, 2], table[:, 3] if with_ties else np.zeros(len(table))
    got = top_per_row(rows, items, scores, n, ties if with_ties else None)
    order = np.lexsort((items, -ties, -scores, rows))
    rank = np.arange(len(order)) - np.searchsorted(rows[order], rows[order], side="left")
    kept = order[rank < n]
    np.testing.assert_array_equal(got.rows, rows[kept])
    np.testing.assert_array_equal(got.items, items[kept])
    np.testing.assert_array_equal(got.scores, scores[kept].astype(np.float32))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 3), max_size=30))
def test_runs_are_where_each_distinct_value_first_occurs_and_how_often(values):
    ordered = np.sort(np.array(values, dtype=np.int64))
    _, first, counts = np.unique(ordered, return_index=True, return_counts=True)
    starts, stops = runs(ordered)
    np.testing.assert_array_equal(starts, first)
    np.testing.assert_array_equal(stops - starts, counts)


def test_a_subset_of_every_query_in_order_is_the_same_queries():
    """What was computed once for a Queries (its memo) serves the sources that take every
    row of it; another subset is a new Queries."""
    queries = Queries([np.array([1, 2]), np.array([3])], [np.array([0, 1]), np.array([2])], [5, 6])
    assert queries.subset(np.arange(2)) is queries
    assert queries.subset(slice(None)) is queries
    for rows in (np.array([1, 0]), np.array([1]), np.array([0, 0])):
        part = queries.subset(rows)
        assert part is not queries
        assert [h.tolist() for h in part.histories] == [queries.histories[r].tolist() for r in rows]
        np.testing.assert_array_equal(part.cutoffs, queries.cutoffs[rows])


def _reference_merge(found: dict[str, Candidates], cap: int) -> dict:
    """`merge` spelled out: each source ranks its items per query by score descending (NaN
    last, ties in its order); a pair keeps its best (rank, source); a query its ``cap`` best
    pairs by rank, source, item."""
    cells: dict[tuple[int, int], dict[str, tuple[float, int]]] = {}
    for name, got in found.items():
        for row in sorted(set(got.rows.tolist())):
            at = [i for i in range(len(got.rows)) if got.rows[i] == row]
            at.sort(key=lambda i: (1, 0.0) if np.isnan(got.scores[i]) else (0, -got.scores[i]))
            for rank, i in enumerate(at, start=1):
                cells.setdefault((row, int(got.items[i])), {})[name] = (got.scores[i], rank)
    names = list(found)

    def order(pair):  # best (rank, source) of the pair, then its item
        return (*min((rank, names.index(n)) for n, (_, rank) in cells[pair].items()), pair[1])

    kept = []
    for row in sorted({row for row, _ in cells}):
        pairs = sorted((pair for pair in cells if pair[0] == row), key=order)
        kept += sorted(pairs[:cap])
    return {
        "pairs": kept,
        "scores": {n: [cells[p].get(n, (np.nan, 0))[0] for p in kept] for n in names},
        "ranks": {n: [cells[p].get(n, (np.nan, 0))[1] for p in kept] for n in names},
    }


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.tuples(st.integers(0, 2), st.integers(0, 6)),  # (row, item): once per source
            st.sampled_from([0.0, -0.0, 1.0, 2.5, np.nan]),  # ties, signed zeros, NaN
            max_size=10,
        ),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 8),
)
def test_merge_matches_its_spelled_out_rule(sources, cap):
    found = {
        f"s{at}": candidates(
            [row for row, _ in entries], [item for _, item in entries], list(entries.values())
        )
        for at, entries in enumerate(sources)
    }
    merged, expected = merge(3, found, cap), _reference_merge(found, cap)
    assert list(zip(merged.rows.tolist(), merged.items.tolist(), strict=True)) == expected["pairs"]
    for name in found:
        np.testing.assert_array_equal(merged.scores[name], np.float32(expected["scores"][name]))
        assert merged.ranks[name].tolist() == expected["ranks"][name]
