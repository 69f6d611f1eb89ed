import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from seqrec.baselines import (
    ContentKNN,
    ItemKNN,
    Popularity,
    RepeatThenContentKNN,
    RepeatThenPopularity,
    cooccurrence_similarity,
    lexicographic,
    repeat_first,
    repeat_scores,
    user_item_matrix,
)
from seqrec.data.split import make_task
from seqrec.evaluate import evaluate, top_k


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_idx", "timestamp"]).astype(
        {"item_idx": "int64", "timestamp": "int64"}
    )


# 8 items. Item 0 is bought most overall, item 5 most in the last 3 days (days 8-10).
# Items 1 and 2 are always bought together; items 6 and 7 are never bought.
FIT = frame(
    [
        ("u1", 0, 1),
        ("u1", 1, 2),
        ("u1", 2, 2),
        ("u2", 0, 1),
        ("u2", 1, 3),
        ("u2", 2, 3),
        ("u3", 0, 2),
        ("u3", 3, 4),
        ("u4", 0, 5),
        ("u4", 4, 6),
        ("u5", 5, 8),
        ("u5", 5, 9),
        ("u6", 5, 10),
        ("u6", 3, 10),
    ]
)
N = 8


def ranking(model, histories, k=N):
    return top_k(model.score(histories), k).tolist()


def test_popularity_ranks_most_bought_first():
    model = Popularity().fit(FIT, N)
    scores = model.score([np.array([1]), np.array([], dtype=np.int64)])
    assert scores.shape == (2, N) and scores.dtype == np.float32
    assert scores[0].tolist() == scores[1].tolist()  # the same for everyone
    assert ranking(model, [np.array([1])], 2) == [[0, 5]]  # 4 buys, then 3
    assert scores[0, 6] == scores[0, 7] == 0.0  # never bought: tied at the bottom


def test_popularity_window_is_in_timestamp_units():
    model = Popularity(window_days=3).fit(FIT, N)  # days 8, 9, 10
    scores = model.score([np.array([0])])[0]
    assert scores[5] == 3 and scores[3] == 1 and scores[0] == 0
    assert ranking(model, [np.array([0])], 1) == [[5]]


def test_repeat_then_popularity_puts_history_first_by_recency():
    model = RepeatThenPopularity(window=None).fit(FIT, N)
    history = np.array([4, 3, 4, 6])  # 6 most recent, then 4, then 3
    assert ranking(model, [history], 5) == [[6, 4, 3, 0, 5]]
    by_frequency = RepeatThenPopularity(window=None, order="frequency").fit(FIT, N)
    assert ranking(by_frequency, [history], 3) == [[4, 6, 3]]  # 4 twice; then 6 (more recent)


def test_repeat_scores_are_distinct_integers_per_user():
    key = repeat_scores([np.array([2, 1, 2, 0]), np.array([], dtype=np.int64)], 4, "recency")
    assert key[0].tolist() == [4.0, 2.0, 3.0, 0.0]  # 0 latest, then 2, then 1; 3 unseen
    assert key[1].tolist() == [0.0] * 4
    with pytest.raises(ValueError):
        repeat_scores([np.array([0])], 4, "random")


def old_repeat_first(base, histories, order):
    """`repeat_first` as it was before it became the model's re-rank: the reference."""
    key = np.zeros(base.shape)
    for row, history in enumerate(histories):
        items = list(dict.fromkeys(history.tolist()))  # distinct, first occurrence order
        last = {item: pos for pos, item in enumerate(history.tolist())}
        count = {item: history.tolist().count(item) for item in items}
        if order == "recency":
            items.sort(key=lambda item: (last[item], count[item]))
        else:
            items.sort(key=lambda item: (count[item], last[item]))
        key[row, items] = np.arange(1, len(items) + 1)
    base = np.asarray(base, dtype=np.float64)
    offset = np.ceil(base.max(axis=1, keepdims=True)) + 1.0
    return np.where(key > 0, offset + key, base).astype(np.float32)


@pytest.mark.parametrize("order", ["recency", "frequency"])
def test_repeat_first_ranks_as_before_on_random_histories(order):
    rng = np.random.default_rng(5)
    histories = [rng.integers(0, 12, rng.integers(0, 25)) for _ in range(60)]  # many repeats
    base = rng.integers(0, 4, (60, 12)).astype(np.float32)  # many ties among the rest
    got = repeat_first(base, histories, order)
    expected = old_repeat_first(base, histories, order)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(top_k(got, 12), top_k(expected, 12))
    # the same ties: evaluation ranks tied targets pessimistically
    same = got[:, :, None] == got[:, None, :]
    np.testing.assert_array_equal(same, expected[:, :, None] == expected[:, None, :])


def test_item_knn_recommends_cooccurring_items():
    model = ItemKNN(tie_break=()).fit(FIT, N)
    scores = model.score([np.array([1])])[0]
    assert scores[2] == pytest.approx(1.0)  # 1 and 2 are always bought by the same users
    assert scores[1] == 0.0  # no self-similarity by default
    assert scores[0] > 0 and scores[4] == 0.0  # 0 co-bought with 1 by u1, u2; 4 never
    assert ranking(model, [np.array([1])], 2) == [[2, 0]]
    with_self = ItemKNN(keep_self=True, tie_break=()).fit(FIT, N)
    assert with_self.score([np.array([1])])[0, 1] == pytest.approx(1.0)


def test_item_knn_similarity_is_cosine_of_user_columns():
    matrix = user_item_matrix(FIT, N)  # [6 users, 8 items] binary
    sim = cooccurrence_similarity(matrix).toarray()
    dense = matrix.toarray()
    norms = np.linalg.norm(dense, axis=0)
    i, j = 0, 3  # co-bought by u3 only: 1 / sqrt(4 * 2)
    assert sim[i, j] == pytest.approx(dense[:, i] @ dense[:, j] / (norms[i] * norms[j]))
    assert sim[i, j] == pytest.approx(1 / np.sqrt(8))
    assert np.allclose(sim, sim.T) and np.all(np.diag(sim) == 0)
    counts = cooccurrence_similarity(matrix, kind="count").toarray()
    assert counts[1, 2] == 2.0


def test_item_knn_popularity_tie_break_keeps_the_order_of_sums():
    raw = ItemKNN(tie_break=()).fit(FIT, N)
    tied = ItemKNN().fit(FIT, N)
    history = [np.array([3])]  # co-bought with 0 (by u3) and 5 (by u6); 1, 2, 4 score 0
    raw_scores, tied_scores = raw.score(history)[0], tied.score(history)[0]
    # every strict order of the sums is kept
    strict = raw_scores[:, None] > raw_scores[None, :]  # [N, N]
    assert np.all((tied_scores[:, None] > tied_scores[None, :])[strict])
    # ties among the sums are broken by popularity: 1 and 2 (2 buys) > 4 (1 buy) > 6, 7
    assert raw_scores[1] == raw_scores[4] == raw_scores[6] == 0.0
    assert tied_scores[1] == tied_scores[2] > tied_scores[4] > tied_scores[6]
    assert tied_scores[6] == tied_scores[7]  # equal on every key: still tied


def test_lexicographic_dense_ranks():
    primary = np.array([[1.0, 2.0, 2.0, 0.0, 2.0]])
    secondary = np.array([9.0, 1.0, 3.0, 0.0, 1.0])
    out = lexicographic([primary, secondary])
    assert out.dtype == np.float32
    assert out[0].tolist() == [2.0, 3.0, 4.0, 1.0, 3.0]


def test_lexicographic_of_one_dimensional_keys():
    out = lexicographic([np.array([1.0, 2.0, 2.0, 0.0, 2.0]), np.array([9.0, 1.0, 3.0, 0.0, 1.0])])
    assert out.shape == (5,)
    assert out.tolist() == [2.0, 3.0, 4.0, 1.0, 3.0]


def content_vectors():
    # items 6 and 7 are never bought (cold); 6 shares item 1's content, 7 shares nothing
    vectors = np.zeros((N, 4))
    vectors[:, 3] = 1.0
    vectors[1] = [1.0, 0.0, 0.0, 0.0]
    vectors[6] = [0.9, 0.1, 0.0, 0.0]
    vectors[7] = [0.0, 1.0, 0.0, 0.0]
    vectors[2] = [0.0, 0.0, 1.0, 0.0]
    return vectors


def test_content_knn_ranks_a_similar_cold_item_above_a_dissimilar_one():
    model = ContentKNN(content_vectors(), last_n=1).fit(FIT, N)
    scores = model.score([np.array([2, 1])])[0]  # the last item is 1
    assert scores[6] > scores[7] and scores[6] > scores[2]
    assert ranking(model, [np.array([2, 1])], 2) == [[1, 6]]
    # sparse input gives the same scores
    sparse = ContentKNN(sp.csr_matrix(content_vectors()), last_n=1).fit(FIT, N)
    np.testing.assert_allclose(sparse.score([np.array([2, 1])])[0], scores, rtol=1e-6)
    with pytest.raises(ValueError):
        ContentKNN(content_vectors()[:5]).fit(FIT, N)


def test_content_knn_sums_over_the_last_n_items():
    model = ContentKNN(content_vectors(), last_n=2).fit(FIT, N)
    scores = model.score([np.array([1, 2])])[0]
    assert scores[1] == pytest.approx(1.0) and scores[2] == pytest.approx(1.0)
    only_last = ContentKNN(content_vectors(), last_n=1).fit(FIT, N)
    assert only_last.score([np.array([1, 2])])[0, 1] == pytest.approx(0.0)


def test_repeat_then_content_knn():
    model = RepeatThenContentKNN(content_vectors(), last_n=1).fit(FIT, N)
    order = ranking(model, [np.array([2, 1])], 4)[0]
    assert order[:3] == [1, 2, 6]  # repeats by recency, then the content neighbour of 1


def all_baselines():
    vectors = content_vectors()
    return [
        Popularity(),
        Popularity(window_days=3),
        RepeatThenPopularity(window=3),
        ItemKNN(),
        ItemKNN(last_n=2, keep_self=True, neighbours=2, tie_break=("recency", "popularity")),
        ContentKNN(vectors, last_n=2),
        RepeatThenContentKNN(vectors, last_n=2),
    ]


def test_no_baseline_uses_anything_outside_the_fit_table():
    # the same fit table with two different sets of held-out baskets: identical scores
    held_a = frame([("u1", 6, 11), ("u2", 3, 11), ("u5", 7, 11)])
    held_b = frame([("u1", 7, 11), ("u2", 4, 11), ("u5", 0, 11)])
    task_a, task_b = make_task("test", FIT, held_a, N), make_task("test", FIT, held_b, N)
    assert not np.array_equal(task_a.target_items, task_b.target_items)
    for model_a, model_b in zip(all_baselines(), all_baselines(), strict=True):
        scores_a = model_a.fit(task_a.fit, N).score(task_a.histories())
        scores_b = model_b.fit(task_b.fit, N).score(task_b.histories())
        assert scores_a.shape == (3, N) and scores_a.dtype == np.float32
        np.testing.assert_array_equal(scores_a, scores_b, err_msg=type(model_a).__name__)
        np.testing.assert_array_equal(scores_a, model_a.score(task_a.histories()))  # deterministic


def test_fitting_on_more_rows_changes_scores():
    # the check above would pass for a model ignoring its data: popularity does react
    extra = pd.concat([FIT, frame([("u9", 7, 11)] * 9)], ignore_index=True)
    base = Popularity().fit(FIT, N).score([np.array([0])])
    more = Popularity().fit(extra, N).score([np.array([0])])
    assert base[0, 7] == 0 and more[0, 7] == 9


def test_baselines_on_a_slice_of_hm(shared_data):
    from seqrec.data.load import load_dataset
    from seqrec.data.split import SplitConfig, split_dataset

    dataset = load_dataset(shared_data / "hm")
    split = split_dataset(dataset, SplitConfig("leave_last_basket_out"))
    task = split.task("test").subset(np.arange(150))
    test_rows = split.test
    fit_keys = set(zip(task.fit["user_id"], task.fit["timestamp"], strict=True))
    assert not fit_keys & set(zip(test_rows["user_id"], test_rows["timestamp"], strict=True))
    popular = evaluate(Popularity().fit(task.fit, task.n_items), task, ks=(12,), bootstrap=0)
    repeat = evaluate(
        RepeatThenPopularity(28).fit(task.fit, task.n_items), task, ks=(12,), bootstrap=0
    )
    assert repeat.metrics["hr@12"] > popular.metrics["hr@12"]
    assert repeat.metrics["cold:recall@12"] == 0.0  # repeats and popularity never reach cold
