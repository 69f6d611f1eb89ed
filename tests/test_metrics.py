import math

import numpy as np
import pytest

from seqrec.metrics import (
    average_precision,
    bootstrap_ci,
    f1,
    hit_rate,
    metrics_at_k,
    mrr,
    ndcg,
    pairwise_accuracy_auc,
    precision,
    recall,
    target_ranks,
)


def test_ranks_are_one_based_over_the_catalogue():
    scores = np.array([[0.1, 0.9, 0.5, 0.3]])
    assert target_ranks(scores, [np.array([1, 0, 2])])[0].tolist() == [1, 4, 2]


def test_ties_are_pessimistic():
    # item 2 ties with items 0 and 3: ranked after both of them
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]])
    assert target_ranks(scores, [np.array([2])])[0].tolist() == [4]
    # a constant scorer ranks every target last and earns nothing
    flat = np.zeros((1, 100))
    ranks = target_ranks(flat, [np.array([0, 7])])
    assert ranks[0].tolist() == [100, 100]
    assert hit_rate(ranks, 10)[0] == 0.0
    # two targets tied with each other share the later rank (a lower bound)
    scores = np.array([[0.9, 0.9, 0.1]])
    assert target_ranks(scores, [np.array([0, 1])])[0].tolist() == [2, 2]


def test_excluded_items_never_count_and_excluded_targets_are_dropped():
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4]])
    ranks = target_ranks(scores, [np.array([2]), np.array([0, 3])], [np.array([0, 1]), [3]])
    assert ranks[0].tolist() == [1]  # items 0 and 1 removed
    assert ranks[1].tolist() == [3]  # target 3 excluded -> dropped; 0 ranks after 2 and 1
    # an excluded item tied with a target (both -inf) does not count either
    scores = np.array([[0.5, -np.inf, 0.1]])
    assert target_ranks(scores, [np.array([1])], [np.array([0])])[0].tolist() == [2]


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError):
        target_ranks(np.array([[0.1, np.nan]]), [np.array([0])])


def test_hand_computed_metrics():
    # user 0: 3 targets at ranks 1, 3, 20; user 1: 1 target at rank 2
    ranks = [np.array([3, 1, 20]), np.array([2])]
    k = 5
    assert hit_rate(ranks, k).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(precision(ranks, k), [2 / 5, 1 / 5])
    np.testing.assert_allclose(recall(ranks, k), [2 / 3, 1.0])
    np.testing.assert_allclose(f1(ranks, k), [2 * 0.4 * (2 / 3) / (0.4 + 2 / 3), 2 * 0.2 / 1.2])
    # Kaggle AP@k: (1/1 + 2/3) / min(3, 5); user 1: (1/2) / 1
    np.testing.assert_allclose(average_precision(ranks, k), [(1 + 2 / 3) / 3, 0.5])
    # NDCG: DCG = 1/log2(2) + 1/log2(4); ideal over min(3, 5) = 3 hits
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    np.testing.assert_allclose(ndcg(ranks, k), [(1 + 0.5) / ideal, (1 / math.log2(3)) / 1])
    np.testing.assert_allclose(mrr(ranks), [1.0, 0.5])
    np.testing.assert_allclose(mrr([np.array([20])], k=5), [0.0])
    np.testing.assert_allclose(mrr([np.array([20])]), [1 / 20])


def test_map_divides_by_min_targets_k():
    # 4 targets, k = 2, both top slots hit: Kaggle AP = (1 + 1) / min(4, 2) = 1 (TREC: 0.5)
    ranks = [np.array([1, 2, 50, 60])]
    np.testing.assert_allclose(average_precision(ranks, 2), [1.0])
    np.testing.assert_allclose(ndcg(ranks, 2), [1.0])
    np.testing.assert_allclose(recall(ranks, 2), [0.5])


def test_ndcg_with_multiple_targets_and_a_miss_on_top():
    ranks = [np.array([2, 3])]
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(ndcg(ranks, 10), [dcg / ideal])


def test_k_larger_than_the_catalogue():
    scores = np.array([[0.3, 0.2, 0.1]])
    ranks = target_ranks(scores, [np.array([2])])
    out = metrics_at_k(ranks, 50)
    assert out["hr@50"][0] == 1.0 and out["recall@50"][0] == 1.0
    np.testing.assert_allclose(out["precision@50"], [1 / 50])  # TREC P@k: divides by k
    np.testing.assert_allclose(out["ndcg@50"], [1 / math.log2(4)])
    np.testing.assert_allclose(out["map@50"], [1 / 3])


def test_users_without_targets_get_nan():
    ranks = [np.array([1]), np.zeros(0, dtype=np.int64)]
    assert np.isnan(recall(ranks, 5)[1]) and np.isnan(ndcg(ranks, 5)[1])
    assert np.isnan(hit_rate(ranks, 5)[1]) and np.isnan(mrr(ranks)[1])
    assert recall(ranks, 5)[0] == 1.0


def test_agrees_with_ir_measures_on_random_data():
    ir_measures = pytest.importorskip("ir_measures")
    rng = np.random.default_rng(0)
    n_users, n_items, k = 40, 60, 10
    scores = rng.random((n_users, n_items))  # continuous: no ties
    targets = [rng.choice(n_items, size=rng.integers(1, 8), replace=False) for _ in range(n_users)]
    ranks = target_ranks(scores, targets)
    qrels = [
        ir_measures.Qrel(str(u), str(i), 1) for u in range(n_users) for i in targets[u].tolist()
    ]
    run = [
        ir_measures.ScoredDoc(str(u), str(i), float(scores[u, i]))
        for u in range(n_users)
        for i in range(n_items)
    ]
    measures = [
        ir_measures.nDCG @ k,
        ir_measures.P @ k,
        ir_measures.R @ k,
        ir_measures.AP @ k,
        ir_measures.RR,
    ]
    theirs = {m: {} for m in measures}
    for row in ir_measures.iter_calc(measures, qrels, run):
        theirs[row.measure][int(row.query_id)] = row.value
    ours = {
        measures[0]: ndcg(ranks, k),
        measures[1]: precision(ranks, k),
        measures[2]: recall(ranks, k),
        measures[4]: mrr(ranks),
    }
    for measure, values in ours.items():
        expected = np.array([theirs[measure][u] for u in range(n_users)])
        np.testing.assert_allclose(values, expected, atol=1e-6, err_msg=str(measure))
    # TREC AP@k divides by |targets|, Kaggle MAP@k by min(|targets|, k): they agree here because
    # every user has at most 7 targets < k; rescale to check the numerator everywhere
    n = np.array([len(t) for t in targets])
    trec_ap = np.array([theirs[measures[3]][u] for u in range(n_users)])
    np.testing.assert_allclose(average_precision(ranks, k), trec_ap * n / np.minimum(n, k))
    np.testing.assert_allclose(average_precision(ranks, k), trec_ap, atol=1e-6)
    # with k = 3 < |targets| for some users the definitions differ, by exactly that factor
    trec_ap3 = {
        int(r.query_id): r.value for r in ir_measures.iter_calc([ir_measures.AP @ 3], qrels, run)
    }
    trec_ap3 = np.array([trec_ap3[u] for u in range(n_users)])
    np.testing.assert_allclose(average_precision(ranks, 3), trec_ap3 * n / np.minimum(n, 3))


def test_pairwise_accuracy_auc():
    pos = np.array([3.0, 2.0, 0.0])
    neg = np.array([[1.0, 2.0], [1.0, 1.0], [1.0, -1.0]])
    accuracy, auc = pairwise_accuracy_auc(pos, neg)
    # pairs per positive: (3>1, 3>2), (2>1, 2>1), (0<1, 0>-1) -> 5 of 6 strictly greater
    assert accuracy == pytest.approx(5 / 6)
    # AUC over all 3 x 6 pairs with ties as 1/2, checked against a brute-force count
    all_neg = neg.ravel()
    wins = (pos[:, None] > all_neg).sum() + 0.5 * (pos[:, None] == all_neg).sum()
    assert auc == pytest.approx(wins / (3 * 6))
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels = np.r_[np.ones(3), np.zeros(6)]
    assert auc == pytest.approx(sklearn_metrics.roc_auc_score(labels, np.r_[pos, all_neg]))
    # one negative per positive as a flat array
    assert pairwise_accuracy_auc(np.array([1.0, 0.0]), np.array([0.0, 1.0]))[0] == 0.5


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(1)
    small = rng.random(50)
    large = rng.random(5000)
    low_s, high_s = bootstrap_ci(small, n_boot=500, seed=0)
    low_l, high_l = bootstrap_ci(large, n_boot=500, seed=0)
    assert low_s < small.mean() < high_s
    assert low_l < large.mean() < high_l
    assert (high_l - low_l) < (high_s - low_s) / 5  # ~ 1 / sqrt(100)
    # deterministic for a seed; paired [U, M] form gives one interval per column
    assert bootstrap_ci(small, n_boot=500, seed=0) == (low_s, high_s)
    low, high = bootstrap_ci(np.stack([small, 2 * small], axis=1), n_boot=500, seed=0)
    np.testing.assert_allclose(low, [low_s, 2 * low_s])
    np.testing.assert_allclose(high, [high_s, 2 * high_s])
    # binary per-user values (hit rates): the interval stays inside [0, 1]
    hits = (rng.random(200) < 0.1).astype(float)
    low, high = bootstrap_ci(hits, n_boot=500, seed=0)
    assert 0.0 <= low < hits.mean() < high <= 1.0
