import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from seqrec.evaluate import evaluate
from seqrec.experiment import prepare
from seqrec.ranker import candidates
from seqrec.ranker import features as ranker_features
from seqrec.ranker.candidates import CandidateSet
from seqrec.ranker.config import LightGBMConfig, RankerConfig
from seqrec.ranker.context import RankerContext, with_model
from seqrec.ranker.events import Events
from seqrec.ranker.examples import without_last_baskets
from seqrec.ranker.fit import fit_ranker, label_pairs, ranker_context, training_sets
from seqrec.ranker.nested import past_split
from seqrec.ranker.queries import Queries
from seqrec.ranker.scorer import RankerScorer

CONFIG = RankerConfig(
    lightgbm=LightGBMConfig(
        n_estimators=30, min_data_in_leaf=5, early_stopping_rounds=10, threads=1
    )
)


@pytest.fixture(scope="module")
def prepared(tiny_config, demo_shop, tmp_path_factory):
    return prepare(tiny_config, demo_shop, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def ranker(prepared):
    return fit_ranker(prepared.dataset, prepared.split, prepared.features, CONFIG)


def _test_scores(ranker, prepared):
    task = prepared.split.task("test")
    context = ranker_context(prepared.dataset, prepared.features, task.fit)
    return RankerScorer(ranker, context), task


def test_fit_on_the_demo_shop_evaluates_to_finite_metrics(ranker, prepared):
    scorer, task = _test_scores(ranker, prepared)
    result = evaluate(scorer, task, ks=(12,), bootstrap=0)
    assert result.counts["users"] == len(task) > 0
    assert np.isfinite(result.metrics["ndcg@12"]) and result.metrics["ndcg@12"] > 0
    info = ranker.info
    assert info["training_queries"] == "past baskets"
    for part in ("train", "valid"):
        assert 0 < info[part]["queries_kept"] <= info[part]["queries"]
        assert info[part]["positives"] <= info[part]["targets"]
        assert 0 < info[part]["candidate_recall"] <= 1
    assert info["best_iteration"] == ranker.best_iteration >= 1
    assert 0 < info["valid_ndcg@12"] <= 1
    assert set(info["feature_importance"]) == set(ranker.feature_names)
    assert {"context", "boosting", "train_candidates", "valid_features"} <= set(info["seconds"])


def test_two_fits_give_the_same_predictions(ranker, prepared):
    lines = []
    again = fit_ranker(
        prepared.dataset, prepared.split, prepared.features, CONFIG, progress=lines.append
    )
    assert any("boosting" in line for line in lines)
    task = prepared.split.task("test")
    queries = Queries(task.histories(), task.times(), task.cutoffs)
    first, _ = _test_scores(ranker, prepared)
    second, _ = _test_scores(again, prepared)
    np.testing.assert_array_equal(first.score_queries(queries), second.score_queries(queries))


def test_the_test_split_is_never_read(ranker, prepared):
    split = prepared.split
    scrambled = split.test.assign(item_idx=split.test["item_idx"].to_numpy()[::-1])
    other = dataclasses.replace(split, test=scrambled.iloc[::2].reset_index(drop=True))
    refit = fit_ranker(prepared.dataset, other, prepared.features, CONFIG)
    assert refit.booster.model_to_string() == ranker.booster.model_to_string()


def test_with_a_sequence_model_the_training_queries_are_the_same_past_baskets(prepared):
    split = prepared.split
    with_model = training_sets(split, CONFIG, has_model=True)
    without = training_sets(split, CONFIG, has_model=False)
    assert with_model[2] == "past baskets, nested model"
    assert with_model[0][0].cutoffs.tolist() == without[0][0].cutoffs.tolist()
    # early stopping on every validation shopper, as the task gives them
    task = split.task("valid")
    assert with_model[1][0].cutoffs.tolist() == task.cutoffs.tolist()


def test_without_last_baskets_removes_each_users_latest_timestamps():
    log = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "c"],
            "item_idx": [1, 2, 3, 7, 4, 5, 6],
            "timestamp": [10, 20, 20, 30, 5, 7, 3],
        }
    )
    assert without_last_baskets(log)["item_idx"].tolist() == [1, 2, 3, 4]
    assert without_last_baskets(log, 2)["item_idx"].tolist() == [1]


class SpyScorer:
    """A stand-in sequence model: records every history it scores; scores favour low items."""

    def __init__(self, n_items: int, max_len: int = 8):
        self.n_items, self.max_len, self.device = n_items, max_len, torch.device("cpu")
        self.seen: list[tuple[int, ...]] = []

    def raw(self, seq):
        self.seen.extend(tuple(int(i) for i in row if i > 0) for row in seq)
        return -torch.arange(self.n_items, dtype=torch.float32).repeat(len(seq), 1)

    def item_matrix(self):
        return torch.eye(self.n_items, 4)


def test_past_basket_queries_are_scored_by_the_nested_model_only(prepared):
    """The model given as ``past_model`` scores the training queries (the last train baskets,
    which `without_last_baskets` keeps out of its training data); the full model scores the
    validation queries only."""
    split, n_items = prepared.split, prepared.dataset.n_items
    full, past = SpyScorer(n_items), SpyScorer(n_items)
    ranker_fit = fit_ranker(
        prepared.dataset, split, prepared.features, CONFIG, model=full, past_model=past
    )
    assert ranker_fit.info["training_queries"] == "past baskets, nested model"
    (fit, _), (stop, _), _ = training_sets(split, CONFIG, has_model=True)
    fit_histories = {tuple(h[-8:] + 1) for h in fit.histories}  # as the model reads them
    stop_histories = {tuple(h[-8:] + 1) for h in stop.histories}
    assert past.seen and set(past.seen) <= fit_histories
    assert full.seen and set(full.seen) <= stop_histories
    assert set(past.seen) - stop_histories  # not only histories the two sets share
    # by construction: no training query's basket is in what the nested model trains on
    nested = past_split(split, CONFIG.train_baskets).train
    trained_on = set(zip(nested["user_id"], nested["timestamp"], strict=True))
    train = split.train
    from_end = train.groupby("user_id")["timestamp"].rank(method="dense", ascending=False)
    queried = train[from_end <= CONFIG.train_baskets]  # the baskets training queries ask
    assert not trained_on & set(zip(queried["user_id"], queried["timestamp"], strict=True))
    assert set(fit.cutoffs.tolist()) <= set(queried["timestamp"].tolist())
    assert len(nested) + len(queried) == len(train)


def test_a_sequence_model_without_its_nested_copy_is_refused(prepared):
    spy = SpyScorer(prepared.dataset.n_items)
    with pytest.raises(ValueError, match="past_model"):
        fit_ranker(prepared.dataset, prepared.split, prepared.features, CONFIG, model=spy)


def test_pairs_are_labelled_and_queries_without_a_found_target_dropped(monkeypatch):
    proposed = {0: [1, 4, 6], 1: [2, 3], 2: [5, 7, 8]}

    def generate(queries, context, config):
        rows = np.repeat(np.arange(3), [len(proposed[r]) for r in range(3)])
        return CandidateSet(rows, np.concatenate([proposed[r] for r in range(3)]))

    def feature_matrix(queries, found, context, config):
        return ["item"], found.items[:, None].astype(np.float32)

    monkeypatch.setattr(candidates, "generate", generate)
    monkeypatch.setattr(ranker_features, "feature_matrix", feature_matrix)
    log = pd.DataFrame({"item_idx": [0], "timestamp": [0]})
    context = RankerContext(n_items=10, events=Events(log, 10, day=1))
    queries = Queries([np.array([0])] * 3, [np.array([0])] * 3, np.ones(3))
    targets = [np.array([4, 9]), np.array([9]), np.array([7, 8])]
    pairs = label_pairs(queries, targets, context, RankerConfig())
    assert pairs.groups.tolist() == [3, 3]  # query 1 found no target: dropped
    assert pairs.features[:, 0].tolist() == [1, 4, 6, 5, 7, 8]
    assert pairs.labels.tolist() == [0, 1, 0, 0, 1, 1]
    assert pairs.info["queries"] == 3 and pairs.info["queries_kept"] == 2
    assert pairs.info["positives"] == 3 and pairs.info["targets"] == 5
    assert pairs.info["candidate_recall"] == pytest.approx(3 / 5)


def test_a_context_with_another_model_shares_all_but_the_fused_structures():
    log = pd.DataFrame({"item_idx": [0], "timestamp": [0]})
    context = RankerContext(n_items=3, events=Events(log, 3, day=1))
    context.vectors = {"tfidf": np.eye(3), "fused": np.eye(3)}
    context.cache = {("content_graph", "tfidf", 5): "t", ("content_graph", "fused", 5): "f"}
    other = with_model(context, None)
    assert set(other.vectors) == {"tfidf"} and other.model is None
    assert other.cache == {("content_graph", "tfidf", 5): "t"}
    assert other.periods is context.periods
    spy = SpyScorer(3)
    assert with_model(context, spy).vectors["fused"].shape == (3, 4)
