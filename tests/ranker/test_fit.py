import dataclasses

import numpy as np
import pandas as pd
import pytest

from seqrec.evaluate import evaluate
from seqrec.experiment import prepare
from seqrec.ranker import candidates
from seqrec.ranker import features as ranker_features
from seqrec.ranker.candidates import CandidateSet
from seqrec.ranker.config import LightGBMConfig, RankerConfig
from seqrec.ranker.context import RankerContext
from seqrec.ranker.events import Events
from seqrec.ranker.fit import fit_ranker, label_pairs, ranker_context, training_sets
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


def test_with_a_sequence_model_the_validation_shoppers_are_split(prepared):
    task = prepared.split.task("valid")
    (fit, fit_targets), (stop, stop_targets), source = training_sets(
        prepared.split, CONFIG, has_model=True
    )
    assert source == "validation shoppers"
    assert len(fit) + len(stop) == len(task)
    assert len(stop) == round(0.2 * len(task))
    # each validation shopper once, with the task's history, cutoff and targets
    asked = sorted(
        (int(c), tuple(h), tuple(t))
        for part, targets in ((fit, fit_targets), (stop, stop_targets))
        for c, h, t in zip(part.cutoffs, part.histories, targets, strict=True)
    )
    expected = sorted(
        (int(c), tuple(h), tuple(t))
        for c, h, t in zip(task.cutoffs, task.histories(), task.targets(), strict=True)
    )
    assert asked == expected


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
