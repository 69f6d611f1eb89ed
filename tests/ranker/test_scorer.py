import numpy as np
import pandas as pd
import pytest

from seqrec.data.dataset import DataError
from seqrec.ranker import candidates, features
from seqrec.ranker.candidates import CandidateSet
from seqrec.ranker.config import LightGBMConfig, RankerConfig
from seqrec.ranker.context import RankerContext
from seqrec.ranker.events import Events
from seqrec.ranker.model import LabelledPairs, train_lambdarank
from seqrec.ranker.queries import Queries
from seqrec.ranker.scorer import RankerScorer

N_ITEMS = 10
PROPOSED = {0: [2, 5, 7, 9], 1: [1, 3, 4]}  # query row -> candidate items


def _fake_generate(queries, context, config):
    rows = [row for row in range(len(queries)) for _ in PROPOSED[row % 2]]
    items = [item for row in range(len(queries)) for item in PROPOSED[row % 2]]
    return CandidateSet(np.array(rows, np.int64), np.array(items, np.int64))


def _fake_features(queries, found, context, config):
    """Two columns: ``noise`` (constant) and ``signal`` (decreasing with the item index)."""
    signal = 1.0 - found.items / N_ITEMS  # [P]
    return ["noise", "signal"], np.stack([np.zeros(len(found)), signal], axis=1).astype(np.float32)


@pytest.fixture
def stand_ins(monkeypatch):
    """The scorer with stand-in candidates and features: the test checks its own work."""
    calls = []

    def generate(queries, context, config):
        calls.append(queries)
        return _fake_generate(queries, context, config)

    monkeypatch.setattr(candidates, "generate", generate)
    monkeypatch.setattr(features, "feature_matrix", _fake_features)
    return calls


@pytest.fixture(scope="module")
def ranker():
    """A ranker that learned "the higher the signal, the better" on random pairs."""
    rng = np.random.default_rng(0)

    def pairs(n_queries):
        signal = rng.random(n_queries * 10).astype(np.float32)
        labels = (signal > np.repeat(np.sort(signal.reshape(-1, 10))[:, -3], 10)).astype(np.int32)
        matrix = np.stack([np.zeros_like(signal), signal], axis=1)
        return LabelledPairs(matrix, labels, np.full(n_queries, 10), ["noise", "signal"])

    config = RankerConfig(
        lightgbm=LightGBMConfig(n_estimators=40, num_leaves=15, min_data_in_leaf=3, threads=1)
    )
    return train_lambdarank(pairs(80), pairs(20), config)


def _context():
    log = pd.DataFrame({"item_idx": [1, 2, 3], "timestamp": [4, 6, 9], "user_id": [0, 1, 1]})
    return RankerContext(n_items=N_ITEMS, events=Events(log, N_ITEMS, day=1))


def _queries(n):
    histories = [np.array([1, 2]) for _ in range(n)]
    return Queries(histories, [np.array([3, 4]) for _ in range(n)], np.full(n, 5))


def test_candidates_rank_above_the_rest_in_ranker_order(stand_ins, ranker):
    scorer = RankerScorer(ranker, _context())
    scores = scorer.score_queries(_queries(3))  # [3, N]
    assert scores.shape == (3, N_ITEMS) and scores.dtype == np.float32
    found, predicted = scorer.candidates_and_scores(_queries(3))
    for row in range(3):
        proposed = PROPOSED[row % 2]
        others = np.setdiff1d(np.arange(N_ITEMS), proposed)
        assert scores[row, proposed].min() > scores[row, others].max()
        assert len(set(scores[row, others].tolist())) == 1  # the rest tie below
        np.testing.assert_array_equal(
            scores[row, proposed], predicted[found.rows == row].astype(np.float32)
        )
        # the ranker learned: lower item index = higher signal = ranked first
        order = np.array(proposed)[np.argsort(-scores[row, proposed], kind="stable")]
        assert order.tolist() == sorted(proposed)


def test_scores_are_deterministic(stand_ins, ranker):
    scorer = RankerScorer(ranker, _context())
    np.testing.assert_array_equal(
        scorer.score_queries(_queries(4)), scorer.score_queries(_queries(4))
    )


def test_histories_without_times_ask_at_the_end_of_the_log(stand_ins, ranker):
    scorer = RankerScorer(ranker, _context())
    scores = scorer.score([np.array([1, 2]), np.array([3])])
    asked = stand_ins[-1]
    assert asked.cutoffs.tolist() == [10, 10]  # the log's last event is at 9
    assert [times.tolist() for times in asked.times] == [[9, 9], [9]]
    np.testing.assert_array_equal(scores, scorer.score_queries(asked))


def test_feature_columns_are_matched_by_name(stand_ins, monkeypatch, ranker):
    scorer = RankerScorer(ranker, _context())
    expected = scorer.score_queries(_queries(2))

    def swapped(queries, found, context, config):
        names, matrix = _fake_features(queries, found, context, config)
        return names[::-1], matrix[:, ::-1]

    monkeypatch.setattr(features, "feature_matrix", swapped)
    np.testing.assert_array_equal(scorer.score_queries(_queries(2)), expected)

    def without_signal(queries, found, context, config):
        names, matrix = _fake_features(queries, found, context, config)
        return names[:1], matrix[:, :1]

    monkeypatch.setattr(features, "feature_matrix", without_signal)
    with pytest.raises(DataError, match="signal"):
        scorer.score_queries(_queries(2))
