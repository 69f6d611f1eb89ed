"""The ranker's features: hand-computed values on a tiny shop, NaN where documented, the
ablation families, and the leakage property (no feature reads events at or after a cutoff)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqrec.ranker.candidates import CandidateSet
from seqrec.ranker.config import RankerConfig
from seqrec.ranker.context import RankerContext
from seqrec.ranker.events import Events
from seqrec.ranker.features import feature_family, feature_matrix
from seqrec.ranker.queries import Queries

NAN = np.nan
IMAGE = np.array([[1, 0], [0, 1], [0.6, 0.8], [0, 0], [1, 0], [0.8, 0.6]])
TFIDF = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0.6, 0, 0.8]])
BASE = torch.tensor([0.5, 0.1, 0.9, 0.9, 0.3, 0.2])


class LastItemModel:
    """A stand-in sequence model: raw score = BASE, + 1 for the history's last item."""

    max_len, device = 4, torch.device("cpu")

    def raw(self, seq: torch.Tensor) -> torch.Tensor:
        scores = BASE.repeat(len(seq), 1)  # [B, N]
        last = seq[:, -1]
        rows = torch.nonzero(last > 0).ravel()
        scores[rows, last[rows] - 1] += 1.0
        return scores


def events_frame(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_idx", "timestamp"]).astype(np.int64)


def tiny_context(day: int | None = 1, model: bool = True) -> RankerContext:
    log = events_frame(
        [(0, 0, 1), (0, 1, 1), (0, 0, 5), (1, 2, 3), (1, 0, 8), (1, 5, 9), (2, 0, 10), (2, 2, 12)]
    )
    return RankerContext(
        n_items=6,
        events=Events(log, 6, day),
        groups=np.array([0, 0, 1, 1, -1, 2]),
        categories=np.array([[1, 1], [1, 2], [2, 1], [2, 2], [0, 1], [1, 0]]),
        prices=np.array([10, 20, 30, NAN, 50, 40], dtype=np.float32),
        vectors={"tfidf": sp.csr_matrix(TFIDF), "image": IMAGE.astype(np.float32)},
        model=LastItemModel() if model else None,  # type: ignore[arg-type]
    )


def tiny_queries() -> Queries:
    histories = [np.array([0, 1, 0]), np.array([2, 0, 5])]
    return Queries(histories, [np.array([1, 1, 5]), np.array([3, 8, 9])], np.array([10, 12]))


def tiny_candidates() -> CandidateSet:
    return CandidateSet(
        rows=np.array([0, 0, 0, 0, 1, 1]),
        items=np.array([0, 2, 3, 4, 1, 5]),
        scores={
            "repeats": np.array([5, NAN, NAN, NAN, NAN, 9], dtype=np.float32),
            "content_image": np.array([NAN, 0.8, NAN, 1.0, 0.6, NAN], dtype=np.float32),
        },
        ranks={
            "repeats": np.array([1, 0, 0, 0, 0, 1]),
            "content_image": np.array([0, 2, 0, 1, 1, 0]),
        },
    )


def features(context: RankerContext, **config) -> dict[str, np.ndarray]:
    names, matrix = feature_matrix(
        tiny_queries(), tiny_candidates(), context, RankerConfig(**config)
    )
    assert matrix.dtype == np.float32 and matrix.shape == (6, len(names))
    assert len(set(names)) == len(names)
    return dict(zip(names, matrix.T, strict=True))


# expected value per pair, pairs in order (q0: items 0, 2, 3, 4; q1: items 1, 5); history_last_n=2
EXPECTED = {
    "src_repeats_score": [5, NAN, NAN, NAN, NAN, 9],
    "src_repeats_rank": [1, NAN, NAN, NAN, NAN, 1],
    "src_content_image_score": [NAN, 0.8, NAN, 1.0, 0.6, NAN],
    "src_content_image_rank": [NAN, 2, NAN, 1, 1, NAN],
    "src_count": [1, 1, 0, 1, 1, 1],
    "user_item_count": [2, 0, 0, 0, 0, 1],
    "user_item_days_since": [5, NAN, NAN, NAN, NAN, 3],
    "user_item_from_end": [1, NAN, NAN, NAN, NAN, 1],
    "user_group_count": [3, 0, 0, NAN, 1, 1],
    "user_group_days_since": [5, NAN, NAN, NAN, 4, 3],
    "user_group_from_end": [1, NAN, NAN, NAN, 2, 1],
    "item_sales_all": [3, 1, 0, 0, 1, 1],
    "item_sales_1d": [0, 0, 0, 0, 0, 0],
    "item_sales_7d": [2, 1, 0, 0, 0, 1],
    "item_sales_28d": [3, 1, 0, 0, 1, 1],
    "item_trend_7d": [1.5, 2, 1, 1, 0.5, 2],
    "item_age_days": [9, 7, NAN, NAN, 11, 3],
    "item_days_since_sale": [2, 7, NAN, NAN, 11, 3],
    "item_price": [10, 30, NAN, 50, 20, 40],
    "price_ratio_to_user": [0.75, 2.25, NAN, 3.75, 0.75, 1.5],
    "price_minus_user": [10 - 40 / 3, 30 - 40 / 3, NAN, 50 - 40 / 3, 20 - 80 / 3, 40 - 80 / 3],
    "cat0_share_last": [1, 0, 0, NAN, 1, 1],
    "cat0_share_all": [1, 0, 0, NAN, 2 / 3, 2 / 3],
    "cat1_share_last": [0.5, 0.5, 0.5, 0.5, 0, NAN],
    "cat1_share_all": [2 / 3, 2 / 3, 1 / 3, 2 / 3, 0, NAN],
    "cos_tfidf_max": [1, 0, 0, NAN, 1, 1],
    "cos_tfidf_mean": [1, 0, 0, NAN, 0.8, 0.8],
    "cos_image_max": [1, 0.8, NAN, 1, 0.6, 1],
    "cos_image_mean": [0.5, 0.7, NAN, 0.5, 0.3, 0.9],
    "seq_score": [1.5, 0.9, 0.9, 0.3, 0.1, 1.2],
    "seq_rank": [1, 2, 2, 4, 6, 1],
    "user_history_length": [3, 3, 3, 3, 3, 3],
    "user_baskets": [2, 2, 2, 2, 3, 3],
    "user_days_since_last": [5, 5, 5, 5, 3, 3],
    "user_days_since_first": [9, 9, 9, 9, 9, 9],
    "user_mean_basket_size": [1.5, 1.5, 1.5, 1.5, 1, 1],
}


def test_every_feature_matches_hand_computed_values():
    got = features(tiny_context(), history_last_n=2)
    assert list(got) == list(EXPECTED)  # the documented order, nothing more
    for name, expected in EXPECTED.items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, err_msg=name)


def test_dense_and_sparse_cosines_agree_and_vector_presence_computed_once():
    """Sparse and dense rows of the same vectors give the hand values; which items have a
    vector is found once per context (cached), not per call."""
    context = tiny_context()
    context.vectors["dense_tfidf"] = TFIDF.astype(np.float32)
    got = features(context, history_last_n=2)
    for name in ("cos_tfidf_max", "cos_tfidf_mean", "cos_image_max", "cos_image_mean"):
        np.testing.assert_allclose(got[name], EXPECTED[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(got["cos_dense_tfidf_mean"], EXPECTED["cos_tfidf_mean"], 1e-6)
    assert ("has_vector", "image") in context.cache
    context.cache[("has_vector", "image")] = np.zeros(6, dtype=bool)  # read, not recomputed
    assert np.isnan(features(context, history_last_n=2)["cos_image_max"]).all()


def test_days_divide_by_the_day_length():
    log = tiny_context().events
    frame = pd.DataFrame({"item_idx": log.item_of, "timestamp": log.time_of * 2})
    context = tiny_context()
    context.events = Events(frame, 6, 2)  # the same log in half-day units
    queries = tiny_queries()
    queries = Queries(queries.histories, [t * 2 for t in queries.times], queries.cutoffs * 2)
    names, matrix = feature_matrix(queries, tiny_candidates(), context, RankerConfig())
    got = dict(zip(names, matrix.T, strict=True))
    for name in ("item_age_days", "item_sales_7d", "user_item_days_since", "user_days_since_last"):
        np.testing.assert_allclose(got[name], EXPECTED[name], rtol=1e-6, err_msg=name)


def test_order_only_timestamps_leave_time_features_nan():
    got = features(tiny_context(day=None), history_last_n=2)
    timed = [
        "item_sales_1d", "item_sales_7d", "item_sales_28d", "item_trend_7d", "item_age_days",
        "item_days_since_sale", "user_item_days_since", "user_group_days_since",
        "user_days_since_last", "user_days_since_first",
    ]  # fmt: skip
    for name in timed:
        assert np.isnan(got[name]).all(), name
    # no shared clock: sales read the whole log (item 2's sale at 12 counts for q0's cutoff 10)
    np.testing.assert_array_equal(got["item_sales_all"], [4, 2, 0, 0, 1, 1])
    np.testing.assert_array_equal(got["user_item_count"], EXPECTED["user_item_count"])


def test_an_empty_history_gives_nan_shares_and_activity():
    queries = Queries([np.zeros(0, np.int64)], [np.zeros(0, np.int64)], np.array([10]))
    candidates = CandidateSet(rows=np.array([0, 0]), items=np.array([0, 2]))
    names, matrix = feature_matrix(queries, candidates, tiny_context(), RankerConfig())
    got = dict(zip(names, matrix.T, strict=True))
    np.testing.assert_array_equal(got["user_item_count"], [0, 0])
    for name in ("cat0_share_all", "cos_image_max", "price_ratio_to_user", "user_mean_basket_size"):
        assert np.isnan(got[name]).all(), name
    np.testing.assert_array_equal(got["item_sales_all"], [3, 1])


def test_missing_context_parts_leave_their_features_out():
    context = RankerContext(n_items=6, events=tiny_context().events)
    names, _ = feature_matrix(tiny_queries(), tiny_candidates(), context, RankerConfig())
    for prefix in ("user_group", "item_price", "price_", "cat", "cos_", "seq_"):
        assert not [n for n in names if n.startswith(prefix)], prefix


@pytest.mark.parametrize("family", ["image", "text", "sequence"])
def test_without_removes_exactly_that_family(family):
    full = features(tiny_context())
    reduced = features(tiny_context(), without=[family])
    dropped = [name for name in full if name not in reduced]
    assert dropped and all(feature_family(name) == family for name in dropped)
    assert [n for n in full if feature_family(n) != family] == list(reduced)
    for name, values in reduced.items():
        np.testing.assert_array_equal(values, full[name])


def test_feature_families():
    assert feature_family("src_content_image_rank") == "image"
    assert feature_family("src_content_tfidf_score") == "text"
    assert feature_family("src_content_fused_score") == "sequence"
    assert feature_family("src_sequence_rank") == "sequence"
    assert feature_family("cos_text_mean") == "text"
    assert feature_family("cos_fused_max") == "sequence"
    assert feature_family("seq_rank") == "sequence"
    for name in ("src_repeats_score", "src_trending_rank", "item_sales_7d", "cat0_share_all"):
        assert feature_family(name) is None


@st.composite
def shops(draw):
    """A random log, catalogue, queries (histories before their cutoffs) and candidates."""
    n_items = draw(st.integers(1, 6))
    event = st.tuples(st.integers(0, 3), st.integers(0, n_items - 1), st.integers(0, 30))
    log = events_frame(draw(st.lists(event, max_size=25)))
    n_queries = draw(st.integers(1, 4))
    cutoffs = draw(st.lists(st.integers(0, 36), min_size=n_queries, max_size=n_queries))
    histories, times, rows, items = [], [], [], []
    for row, cutoff in enumerate(cutoffs):
        bought = draw(st.lists(st.integers(0, n_items - 1), max_size=6 if cutoff else 0))
        moments = draw(st.lists(st.integers(0, max(cutoff - 1, 0)), min_size=len(bought)))
        histories.append(np.array(bought, dtype=np.int64))
        times.append(np.sort(np.array(moments[: len(bought)], dtype=np.int64)))
        picked = sorted(draw(st.sets(st.integers(0, n_items - 1), max_size=n_items)))
        rows += [row] * len(picked)
        items += picked
    day = draw(st.sampled_from([1, 2]))
    seed = draw(st.integers(0, 2**16))
    return log, n_items, day, seed, Queries(histories, times, cutoffs), rows, items


def random_context(log, n_items, day, seed) -> RankerContext:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n_items, 3)) * (rng.random((n_items, 1)) < 0.8)
    tfidf = sp.csr_matrix(rng.random((n_items, 4)) * (rng.random((n_items, 4)) < 0.5))
    norms = np.linalg.norm(image, axis=1, keepdims=True)
    return RankerContext(
        n_items=n_items,
        events=Events(log, n_items, day),
        groups=rng.integers(-1, 3, n_items),
        categories=rng.integers(0, 3, (n_items, 2)),
        prices=np.where(rng.random(n_items) < 0.8, rng.random(n_items), NAN).astype(np.float32),
        vectors={"image": image / np.where(norms > 0, norms, 1), "tfidf": tfidf},
        model=LastItemModel() if n_items == 6 else None,  # type: ignore[arg-type]
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shops())
def test_no_feature_reads_events_at_or_after_the_cutoff(shop):
    log, n_items, day, seed, queries, rows, items = shop
    rows, items = np.array(rows, dtype=np.int64), np.array(items, dtype=np.int64)
    rng = np.random.default_rng(seed)
    ranks = rng.integers(0, 3, len(rows))
    candidates = CandidateSet(
        rows,
        items,
        {"trending": np.where(ranks > 0, rng.random(len(rows)), NAN)},
        {"trending": ranks},
    )
    config = RankerConfig(history_last_n=3)
    names, full = feature_matrix(
        queries, candidates, random_context(log, n_items, day, seed), config
    )
    for row, cutoff in enumerate(queries.cutoffs):
        before = random_context(log[log["timestamp"] < cutoff], n_items, day, seed)
        mine = rows == row
        alone = CandidateSet(
            np.zeros(mine.sum(), np.int64),
            items[mine],
            {"trending": candidates.scores["trending"][mine]},
            {"trending": ranks[mine]},
        )
        names_alone, part = feature_matrix(queries.subset([row]), alone, before, config)
        assert names_alone == names
        np.testing.assert_allclose(
            part, full[mine], rtol=1e-5, atol=1e-6
        )  # NaNs at the same places


def test_new_item_sources_belong_to_their_modalitys_family():
    assert feature_family("src_new_tfidf_score") == "text"
    assert feature_family("src_new_image_rank") == "image"
