import numpy as np
import pandas as pd

from seqrec.ranker.examples import training_queries


def _log(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_idx", "timestamp"])


def _as_lists(queries, targets):
    return [
        (h.tolist(), t.tolist(), int(c), g.tolist())
        for h, t, c, g in zip(
            queries.histories, queries.times, queries.cutoffs, targets, strict=True
        )
    ]


def test_each_later_basket_is_a_query_with_the_purchases_before_it():
    log = _log(
        [
            ("a", 1, 10),
            ("a", 2, 10),
            ("a", 3, 20),
            ("a", 3, 20),  # bought twice in one basket: one target
            ("a", 1, 20),
            ("a", 4, 30),
            ("b", 5, 15),  # a single basket: nothing before it, no query
            ("b", 6, 15),
            ("c", 7, 5),
            ("c", 8, 7),
        ]
    )
    queries, targets = training_queries(log, n_baskets=3)
    assert _as_lists(queries, targets) == [
        ([1, 2], [10, 10], 20, [1, 3]),
        ([1, 2, 3, 3, 1], [10, 10, 20, 20, 20], 30, [4]),
        ([7], [5], 7, [8]),
    ]


def test_only_the_last_baskets_are_taken_and_row_order_does_not_matter():
    log = _log([("u", item, time) for item, time in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]])
    shuffled = log.sample(frac=1.0, random_state=0)
    queries, targets = training_queries(shuffled, n_baskets=2)
    assert _as_lists(queries, targets) == [
        ([1, 2, 3], [1, 2, 3], 4, [4]),
        ([1, 2, 3, 4], [1, 2, 3, 4], 5, [5]),
    ]
    queries, targets = training_queries(shuffled, n_baskets=1)
    assert queries.cutoffs.tolist() == [5]


def test_no_query_when_nobody_has_two_baskets():
    queries, targets = training_queries(_log([("a", 1, 3), ("b", 2, 4), ("b", 3, 4)]), 3)
    assert len(queries) == 0 and targets == []
    assert np.asarray(queries.cutoffs).dtype == np.int64
