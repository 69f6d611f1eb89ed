import numpy as np
import pandas as pd
import pytest

from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport, sort_interactions
from seqrec.data.split import SplitConfig, split_dataset


def make_dataset(rows, n_items=10, time_unit="day"):
    inter = pd.DataFrame(rows, columns=["user_id", "item_idx", "timestamp"])
    inter["item_idx"] = inter["item_idx"].astype(np.int64)
    inter["timestamp"] = inter["timestamp"].astype(np.int64)
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(n_items)]})
    return Dataset("t", items, sort_interactions(inter), ItemSchema(), LoadReport("t"), time_unit)


def random_dataset(seed=0, n_users=60, n_items=40):
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        n_events = rng.integers(1, 15)
        days = np.sort(rng.integers(0, 30, n_events))  # repeated days form baskets
        for day in days:
            rows.append((f"u{user}", int(rng.integers(n_items)), int(day)))
    return make_dataset(rows, n_items)


def test_leave_last_out_holds_out_last_two():
    ds = make_dataset([("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("b", 4, 1), ("b", 5, 2)])
    split = split_dataset(ds, SplitConfig("leave_last_out"))
    assert split.test.set_index("user_id")["item_idx"].to_dict() == {"a": 3, "b": 5}
    assert split.valid.set_index("user_id")["item_idx"].to_dict() == {"a": 2}  # b has only 2
    assert sorted(split.train["item_idx"]) == [1, 4]


def test_leave_last_basket_out_keeps_baskets_together():
    rows = [("a", 1, 1), ("a", 2, 5), ("a", 3, 5), ("a", 4, 9), ("a", 5, 9), ("a", 6, 9)]
    rows += [("b", 7, 3), ("b", 8, 3)]  # one basket only: nothing held out
    split = split_dataset(make_dataset(rows), SplitConfig("leave_last_basket_out"))
    assert sorted(split.test["item_idx"]) == [4, 5, 6]
    assert sorted(split.valid["item_idx"]) == [2, 3]
    assert sorted(split.train["item_idx"]) == [1, 7, 8]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("categorical", [False, True])
def test_leave_last_splits_match_a_per_user_count(seed, categorical):
    ds = random_dataset(seed)
    if categorical:  # as the lean H&M loader reads customer ids
        ds.interactions["user_id"] = ds.interactions["user_id"].astype("category")
    inter = ds.interactions
    by_user = inter.groupby("user_id", observed=True, sort=False)
    for method, rank in [
        ("leave_last_basket_out", by_user["timestamp"].rank(method="dense", ascending=False)),
        ("leave_last_out", by_user.cumcount(ascending=False) + 1),
    ]:
        groups = rank.groupby(inter["user_id"], observed=True).transform("max")
        split = split_dataset(ds, SplitConfig(method))
        expected_test = inter[(rank == 1) & (groups >= 2)].reset_index(drop=True)
        expected_valid = inter[(rank == 2) & (groups >= 3)].reset_index(drop=True)
        pd.testing.assert_frame_equal(split.test, expected_test)
        pd.testing.assert_frame_equal(split.valid, expected_valid)


def test_leave_last_refuses_interactions_out_of_time_order():
    ds = random_dataset(0)
    ds.interactions = ds.interactions.iloc[::-1].reset_index(drop=True)
    with pytest.raises(ValueError, match="time order"):
        split_dataset(ds, SplitConfig("leave_last_out"))


def test_temporal_split_by_date():
    rows = [("a", 1, 10), ("a", 2, 18), ("a", 3, 25), ("b", 4, 5), ("b", 5, 21)]
    ds = make_dataset(rows)
    start = str(pd.Timestamp("1970-01-01") + pd.Timedelta(days=20))[:10]
    split = split_dataset(ds, SplitConfig("temporal", test_start=start, valid_start=15))
    assert sorted(split.test["item_idx"]) == [3, 5]
    assert sorted(split.valid["item_idx"]) == [2]
    assert sorted(split.train["item_idx"]) == [1, 4]


def test_temporal_needs_a_cutoff():
    with pytest.raises(DataError, match="test_start"):
        split_dataset(make_dataset([("a", 1, 1)]), SplitConfig("temporal"))


def test_unknown_method_is_a_clear_error():
    with pytest.raises(DataError, match="split.method = 'random' is not one of"):
        split_dataset(make_dataset([("a", 1, 1)]), SplitConfig("random"))


@pytest.mark.parametrize("method", ["leave_last_out", "leave_last_basket_out", "temporal"])
def test_no_held_out_interaction_reaches_what_is_fitted(method):
    ds = random_dataset()
    config = SplitConfig(method, test_start=24 if method == "temporal" else None)
    split = split_dataset(ds, config)
    key = ["user_id", "item_idx", "timestamp"]
    as_set = lambda frame: set(map(tuple, frame[key].itertuples(index=False)))  # noqa: E731
    test_rows, valid_rows = as_set(split.test), as_set(split.valid)
    assert test_rows and valid_rows
    # the three parts partition the data
    assert len(split.train) + len(split.valid) + len(split.test) == len(ds.interactions)
    for stage in ("valid", "test"):
        task = split.task(stage)
        fit_rows = as_set(task.fit)
        assert not fit_rows & test_rows  # test never reaches anything fitted
        if stage == "valid":
            assert not fit_rows & valid_rows
        # statistics computed from the fit table (popularity, cold items) ignore held-out rows
        counts = np.bincount(task.fit["item_idx"], minlength=ds.n_items)
        expected = np.bincount(
            split.train["item_idx"]
            if stage == "valid"
            else np.concatenate([split.train["item_idx"], split.valid["item_idx"]]),
            minlength=ds.n_items,
        )
        assert np.array_equal(counts, expected)
        # histories come from the fit table only and precede every target in time
        fit_by_user = task.fit.groupby("user_id")["timestamp"].max()
        held = split.valid if stage == "valid" else split.test
        first_target = held.groupby("user_id")["timestamp"].min()
        for user in task.users:
            assert fit_by_user[user] <= first_target[user]
            if method != "temporal":
                assert fit_by_user[user] < first_target[user] or method == "leave_last_out"


def test_eval_task_histories_and_targets_line_up():
    ds = random_dataset(seed=3)
    split = split_dataset(ds, SplitConfig("leave_last_basket_out"))
    task = split.task("test")
    histories, targets = task.histories(), task.targets()
    assert len(histories) == len(targets) == len(task.users)
    fit = split.fit_interactions("test")
    test = split.test
    for user, history, target in zip(task.users, histories, targets, strict=False):
        assert list(history) == list(fit[fit.user_id == user]["item_idx"])
        assert set(target) == set(test[test.user_id == user]["item_idx"])
        assert len(target) == len(set(target))
    cold = task.cold_items()
    assert not cold[task.fit["item_idx"].unique()].any()
    sub = task.subset(np.array([1, 0]))
    assert list(sub.users) == [task.users[1], task.users[0]]
    assert list(sub.histories()[0]) == list(histories[1])


def test_a_sample_of_an_eval_task_is_seeded_and_keeps_its_rows_whole():
    task = split_dataset(random_dataset(seed=4), SplitConfig("leave_last_out")).task("test")
    sample = task.sample(5, seed=1)
    assert len(sample) == 5 and list(sample.users) == sorted(
        sample.users, key=list(task.users).index
    )
    assert list(task.sample(5, seed=1).users) == list(sample.users)  # the same users again
    rows = [list(task.users).index(user) for user in sample.users]
    for row, history, target in zip(rows, sample.histories(), sample.targets(), strict=True):
        assert list(history) == list(task.histories()[row])
        assert list(target) == list(task.targets()[row])
    assert task.sample(0, seed=1) is task and task.sample(len(task), seed=1) is task


def test_a_refit_split_moves_validation_into_train():
    split = split_dataset(random_dataset(seed=4), SplitConfig("leave_last_out"))
    refit = split.with_valid_in_train()
    assert len(refit.train) == len(split.train) + len(split.valid) and len(refit.valid) == 0
    assert refit.train.equals(split.fit_interactions("test"))
    assert refit.test is split.test
    assert refit.task("test").fit.equals(split.task("test").fit)  # test sees the same history
