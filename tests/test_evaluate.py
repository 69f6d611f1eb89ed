import numpy as np
import pandas as pd
import pytest

from seqrec.data.split import make_task
from seqrec.evaluate import (
    cold_items_note,
    evaluate,
    exclusion_mask,
    paired_difference,
    top_k,
)
from seqrec.metrics import target_ranks


def frame(rows):
    """Interactions table from (user, item, timestamp) tuples."""
    return pd.DataFrame(rows, columns=["user_id", "item_idx", "timestamp"]).astype(
        {"item_idx": "int64", "timestamp": "int64"}
    )


class TableScorer:
    """Fixed scores per user, looked up by the user's history."""

    def __init__(self, table: dict[tuple, list[float]]):
        self.table = table
        self.calls = 0

    def score(self, histories):
        self.calls += 1
        return np.array([self.table[tuple(h.tolist())] for h in histories], dtype=np.float32)


@pytest.fixture
def tiny():
    # 6 items; items 3, 4, 5 never occur in the fit table (cold)
    fit = frame([("a", 0, 1), ("a", 1, 2), ("b", 1, 1), ("b", 2, 2), ("c", 0, 1)])
    held = frame([("a", 2, 3), ("a", 4, 3), ("b", 0, 3), ("c", 5, 2)])
    task = make_task("test", fit, held, n_items=6)
    scorer = TableScorer(
        {
            (0, 1): [0.1, 0.2, 0.9, 0.5, 0.3, 0.0],  # a: warm 2 at rank 1, cold 4 at rank 3
            (1, 2): [0.8, 0.1, 0.9, 0.3, 0.4, 0.5],  # b: warm 0 at rank 2 (1 once 2 removed)
            (0,): [0.0, 0.1, 0.2, 0.3, 0.9, 0.5],  # c: cold 5 at rank 2
        }
    )
    return task, scorer


def test_metric_names_counts_and_cis(tiny):
    task, scorer = tiny
    result = evaluate(scorer, task, ks=(10, 12), bootstrap=200)
    for name in ["ndcg@10", "hr@10", "map@12", "recall@12", "precision@12", "f1@12", "mrr"]:
        assert name in result.metrics and name in result.ci
        assert f"cold:{name}" in result.metrics and f"warm:{name}" in result.metrics
    assert result.counts["users"] == 3 and result.counts["targets"] == 4
    assert result.counts["warm:users"] == 2 and result.counts["warm:targets"] == 2
    assert result.counts["cold:users"] == 2 and result.counts["cold:targets"] == 2
    assert result.counts["dropped_targets"] == 0
    low, high = result.ci["mrr"]
    assert low <= result.metrics["mrr"] <= high
    assert result.ranks.tolist() == [1, 3, 2, 2]  # task order: a (2, 4), b (0), c (5)


def test_cold_item_counts_and_the_warning_when_cold_means_target(tiny):
    task, scorer = tiny
    counts = evaluate(scorer, task, ks=(1,), bootstrap=0).counts
    # items 3, 4, 5 have no fit interaction; 4 and 5 are targets
    assert counts["cold:items"] == 3 and counts["cold:target_items"] == 2
    note = cold_items_note(counts, min_items=3)
    assert note is not None and note.startswith("2 of the 3 cold items (67%)")
    assert cold_items_note(counts) is None  # fewer than 10 cold items: too few to tell
    assert cold_items_note({"cold:items": 30, "cold:target_items": 14}) is None
    assert cold_items_note({"cold:items": 30, "cold:target_items": 15}) is not None
    assert cold_items_note({"cold:items": 0, "cold:target_items": 0}) is None
    assert cold_items_note({}) is None


def test_cold_and_warm_breakdown(tiny):
    task, scorer = tiny
    result = evaluate(scorer, task, ks=(1, 2, 3), bootstrap=0)
    m = result.metrics
    # all targets, k=1: a hits 1 of 2, b misses (rank 2), c misses
    assert m["recall@1"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert m["hr@1"] == pytest.approx(1 / 3)
    # warm: a's item 2 (rank 1) and b's item 0 (rank 2)
    assert m["warm:recall@1"] == pytest.approx(0.5)
    assert m["warm:recall@2"] == pytest.approx(1.0)
    assert result.user_rows["warm"].tolist() == [0, 1]
    # cold: a's item 4 at rank 3 over the full catalogue, c's item 5 at rank 2
    assert m["cold:recall@2"] == pytest.approx(0.5)
    assert m["cold:recall@3"] == pytest.approx(1.0)
    assert m["cold:mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert result.user_rows["cold"].tolist() == [0, 2]
    assert len(result.per_user["cold:ndcg@3"]) == 2


def test_remove_seen_excludes_history(tiny):
    task, scorer = tiny
    kept = evaluate(scorer, task, ks=(1,), bootstrap=0)
    removed = evaluate(scorer, task, ks=(1,), remove_seen=True, bootstrap=0)
    assert kept.per_user["recall@1"].tolist() == [0.5, 0.0, 0.0]
    assert removed.per_user["recall@1"].tolist() == [0.5, 1.0, 0.0]  # b's item 2 removed


def test_targets_in_the_history_are_dropped_when_seen_items_are_removed():
    fit = frame([("a", 0, 1), ("b", 1, 1)])
    held = frame([("a", 0, 2), ("b", 1, 2), ("b", 2, 2)])  # a and b re-buy a history item
    task = make_task("test", fit, held, n_items=3)
    scorer = TableScorer({(0,): [0.9, 0.5, 0.1], (1,): [0.1, 0.9, 0.5]})
    kept = evaluate(scorer, task, ks=(1,), bootstrap=0)
    assert kept.counts["users"] == 2 and kept.metrics["hr@1"] == 1.0
    removed = evaluate(scorer, task, ks=(1,), remove_seen=True, bootstrap=0)
    assert removed.counts["dropped_targets"] == 2
    assert removed.counts["users"] == 1  # a has no target left
    assert removed.per_user["recall@1"].tolist() == [1.0]  # b's item 2 is now first


def test_batch_size_does_not_change_results():
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 40
    rows = [
        (f"u{u:02d}", int(i), t) for u in range(n_users) for t, i in enumerate(rng.choice(40, 3))
    ]
    held = [(f"u{u:02d}", int(i), 9) for u in range(n_users) for i in rng.choice(40, 2)]
    task = make_task("test", frame(rows), frame(held), n_items)
    table = {}
    for h in task.histories():
        table[tuple(h.tolist())] = rng.random(n_items).tolist()
    scorer = TableScorer(table)
    one = evaluate(scorer, task, batch_size=1, bootstrap=0)
    assert scorer.calls == n_users
    many = evaluate(scorer, task, batch_size=7, bootstrap=0)
    assert one.metrics == pytest.approx(many.metrics, nan_ok=True)


def test_scorer_shape_is_checked(tiny):
    task, _ = tiny

    class Bad:
        def score(self, histories):
            return np.zeros((len(histories), 5), dtype=np.float32)

    with pytest.raises(ValueError, match="expected"):
        evaluate(Bad(), task)


def test_top_k_order_ties_and_exclusion():
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0]])
    assert top_k(scores, 3).tolist() == [[1, 0, 2], [4, 3, 2]]  # ties: lower index first
    assert top_k(scores, 3, exclude=[np.array([1, 0]), np.array([4])]).tolist() == [
        [2, 4, 3],
        [3, 2, 1],
    ]
    assert top_k(scores, 10).shape == (2, 5)  # k capped at N
    assert top_k(scores, 0).shape == (2, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_top_k_equals_a_full_sort_with_ties_and_exclusions(dtype):
    """Sorting only the items at or above the k-th best score gives the full sort's list."""
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 6, (40, 30)).astype(dtype)  # many ties
    scores[0] = 2  # a row of one value
    exclude = [rng.choice(30, rng.integers(0, 30), replace=False) for _ in range(40)]
    mask = exclusion_mask(exclude, 30)
    for k in (1, 5, 29, 30):
        for excluded in (None, exclude):
            values = scores.astype(np.float64)
            if excluded is not None:
                values = np.where(mask, -np.inf, values)
            full = np.lexsort((np.broadcast_to(np.arange(30), values.shape), -values), axis=1)
            np.testing.assert_array_equal(top_k(scores, k, excluded), full[:, :k])


def test_top_k_is_the_ranking_evaluate_uses():
    rng = np.random.default_rng(3)
    scores = rng.random((20, 50))
    exclude = [rng.choice(50, 5, replace=False) for _ in range(20)]
    targets = [np.setdiff1d(rng.choice(50, 3, replace=False), e) for e in exclude]
    ranks = target_ranks(scores, targets, exclude)
    ranked = top_k(scores, 45, exclude)  # every non-excluded item
    for row in range(20):
        position = {item: pos + 1 for pos, item in enumerate(ranked[row].tolist())}
        assert [position[t] for t in targets[row].tolist()] == ranks[row].tolist()


def test_paired_difference_is_the_mean_of_per_user_differences(tiny):
    task, scorer = tiny
    other = TableScorer(
        {
            (0, 1): [0.9, 0.8, 0.1, 0.5, 0.3, 0.0],  # a: warm 2 falls to rank 5, cold 4 rank 4
            (1, 2): [0.9, 0.1, 0.8, 0.3, 0.4, 0.5],  # b: warm 0 now at rank 1
            (0,): [0.0, 0.1, 0.2, 0.3, 0.9, 0.5],  # c: unchanged
        }
    )
    first = evaluate(scorer, task, ks=(3,), bootstrap=0)
    second = evaluate(other, task, ks=(3,), bootstrap=0)
    mean, low, high = paired_difference(first, second, "recall@3", bootstrap=500)
    # recall@3 per user: first a 1.0, b 1.0, c 1.0; second a 0.0, b 1.0, c 1.0
    assert mean == pytest.approx(1 / 3)
    assert mean == pytest.approx(first.metrics["recall@3"] - second.metrics["recall@3"])
    assert 0.0 <= low <= mean <= high <= 1.0
    # cold group: users a (item 4) and c (item 5); a's cold item is at rank 3, then 4
    cold_mean, _, _ = paired_difference(first, second, "cold:recall@3", bootstrap=0)
    assert cold_mean == pytest.approx((1.0 - 0.0 + 0.0) / 2)
    assert paired_difference(first, first, "ndcg@3", bootstrap=200) == (0.0, 0.0, 0.0)
