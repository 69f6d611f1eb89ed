"""Hold out each user's last interaction(s) for validation and test, with no leakage.

Three methods (`SplitConfig.method`):

- ``leave_last_out``: a user's last interaction is the test target, the one before it the
  validation target (SASRec/BERT4Rec protocol). Needs 2+ interactions for a test target and
  3+ for a validation target.
- ``leave_last_basket_out``: a basket is every interaction of a user that shares the user's
  timestamp (one H&M purchase day). The last basket is the test target set, the basket before it
  the validation target set.
- ``temporal``: a global cutoff. Interactions at or after ``test_start`` are test targets,
  those in ``[valid_start, test_start)`` validation targets.

Two evaluation stages read a split, and each says what may be fitted on:

- stage ``valid``: fit on ``train``; histories are ``train``; targets are ``valid``.
- stage ``test``: fit on ``train`` + ``valid``; histories include the validation interactions;
  targets are ``test``. Models are trained on ``train`` only and pick their epoch on ``valid``.

`EvalTask.fit` is the only table a baseline or statistic may be computed from; test rows never
reach it (tests/data/test_split.py checks this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqrec.constraints import check_config, checked, choice
from seqrec.data.dataset import DataError, Dataset, sort_interactions, user_codes

METHODS = ("leave_last_out", "leave_last_basket_out", "temporal")


def _date_problem(value: str | int) -> str | None:
    if isinstance(value, str):
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError):
            return "is not a date (e.g. 2020-09-01) or a raw timestamp"
    return None


@dataclass
class SplitConfig:
    method: str = choice("leave_last_out", *METHODS)
    # temporal only: a date ("2020-09-01") or a raw timestamp
    test_start: str | int | None = checked(None, _date_problem)
    # temporal only; default: as long before as test lasts
    valid_start: str | int | None = checked(None, _date_problem)

    def problems(self) -> list[tuple[str, str]]:
        if self.method == "temporal" and self.test_start is None:
            return [("test_start", "is needed by the temporal split (a date or timestamp)")]
        return []


@dataclass
class EvalTask:
    """Who is evaluated at one stage, with what history, against which targets."""

    stage: str
    users: np.ndarray  # [U] user ids
    history_indptr: np.ndarray  # [U + 1] CSR offsets into history_items
    history_items: np.ndarray  # [sum of history lengths] item indices in time order
    target_indptr: np.ndarray  # [U + 1] CSR offsets into target_items
    target_items: np.ndarray  # unique target item indices per user
    fit: pd.DataFrame  # interactions anything evaluated on this task may be fitted on
    n_items: int
    history_times: np.ndarray | None = None  # [sum of history lengths] timestamps of history_items
    # [U] when each user asks: the first timestamp of their held-out targets (a shop knows the
    # date of a visit); time-aware rankers read only events strictly before it
    cutoffs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def histories(self) -> list[np.ndarray]:
        return np.split(self.history_items, self.history_indptr[1:-1])

    def targets(self) -> list[np.ndarray]:
        return np.split(self.target_items, self.target_indptr[1:-1])

    def times(self) -> list[np.ndarray]:
        """The timestamps of each user's history items (empty arrays when unknown)."""
        if self.history_times is None:
            return [np.zeros(0, dtype=np.int64) for _ in range(len(self))]
        return np.split(self.history_times, self.history_indptr[1:-1])

    def cold_items(self) -> np.ndarray:
        """[N] bool: True for items with no interaction in the fit table."""
        seen = np.zeros(self.n_items, dtype=bool)
        seen[self.fit["item_idx"].to_numpy()] = True
        return ~seen

    def sample(self, users: int, seed: int) -> EvalTask:
        """A seeded sample of ``users`` of the task's users (kept in order); the task itself
        when it has no more than that, or ``users`` is 0."""
        if users == 0 or len(self) <= users:
            return self
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), users, replace=False)))

    def subset(self, rows: np.ndarray) -> EvalTask:
        """The task restricted to the given user rows (for samples and batches)."""
        histories, targets, times = self.histories(), self.targets(), self.times()
        return EvalTask(
            stage=self.stage,
            users=self.users[rows],
            history_indptr=_indptr([len(histories[r]) for r in rows]),
            history_items=_concat([histories[r] for r in rows]),
            target_indptr=_indptr([len(targets[r]) for r in rows]),
            target_items=_concat([targets[r] for r in rows]),
            fit=self.fit,
            n_items=self.n_items,
            history_times=None if self.history_times is None else _concat([times[r] for r in rows]),
            cutoffs=None if self.cutoffs is None else self.cutoffs[rows],
        )


@dataclass
class Split:
    method: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_items: int

    def fit_interactions(self, stage: str) -> pd.DataFrame:
        if stage == "valid":
            return self.train
        if stage == "test":
            return sort_interactions(pd.concat([self.train, self.valid], ignore_index=True))
        raise ValueError(f"unknown stage {stage!r}; use 'valid' or 'test'")

    def with_valid_in_train(self) -> Split:
        """What a refit trains on: the validation interactions join ``train``; none are left."""
        return Split(
            self.method, self.fit_interactions("test"), self.valid.iloc[:0], self.test, self.n_items
        )

    def task(self, stage: str) -> EvalTask:
        fit = self.fit_interactions(stage)
        held_out = self.valid if stage == "valid" else self.test
        return make_task(stage, fit, held_out, self.n_items)


def split_dataset(dataset: Dataset, config: SplitConfig) -> Split:
    check_config(config, "split")
    inter = dataset.interactions
    if config.method == "temporal":
        test_mask, valid_mask = _temporal(dataset, config)
    else:
        by_basket = config.method == "leave_last_basket_out"
        test_mask, valid_mask = _leave_last(inter, by_basket=by_basket)
    train_mask = ~(test_mask | valid_mask)
    return Split(
        method=config.method,
        train=inter[train_mask].reset_index(drop=True),
        valid=inter[valid_mask].reset_index(drop=True),
        test=inter[test_mask].reset_index(drop=True),
        n_items=dataset.n_items,
    )


def _leave_last(inter: pd.DataFrame, by_basket: bool) -> tuple[np.ndarray, np.ndarray]:
    """(test, valid) row masks: each user's last basket (the rows of their latest timestamp)
    or last interaction, and the one before it, for users with enough of them. Rows are
    grouped by user in time order (`sort_interactions`), so baskets are runs of equal times."""
    users = user_codes(inter["user_id"])  # [R]
    times = inter["timestamp"].to_numpy()
    first_of_user = np.ones(len(users), dtype=bool)  # [R]
    first_of_user[1:] = users[1:] != users[:-1]
    if not np.all(first_of_user[1:] | (times[1:] >= times[:-1])):
        raise ValueError("interactions must be grouped by user in time order")
    new_group = first_of_user.copy() if by_basket else np.ones(len(users), dtype=bool)
    if by_basket:
        new_group[1:] |= times[1:] != times[:-1]
    number = np.cumsum(new_group)  # [R] global basket (or interaction) number
    starts = np.flatnonzero(first_of_user)  # [U]
    user_row = np.cumsum(first_of_user) - 1  # [R] the row's user
    last = number[np.append(starts[1:], len(users)) - 1]  # [U] each user's last number
    rank_from_end = (last[user_row] - number + 1).astype(np.int64)  # 1 = the last one
    n_groups = (last - number[starts] + 1)[user_row]  # [R] the user's baskets (interactions)
    test = (rank_from_end == 1) & (n_groups >= 2)
    valid = (rank_from_end == 2) & (n_groups >= 3)
    return test, valid


def _to_timestamp(value: str | int, unit: str) -> int:
    if isinstance(value, int):
        return value
    try:
        when = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise DataError(f"cannot read split date {value!r}: {error}") from None
    if unit == "day":
        return int((when - pd.Timestamp("1970-01-01")).days)
    if unit == "second":
        return int(when.timestamp())
    raise DataError("a temporal split by date needs timestamps; this dataset only has an order")


def _temporal(dataset: Dataset, config: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    times = dataset.interactions["timestamp"].to_numpy()
    assert config.test_start is not None  # SplitConfig.problems: temporal needs test_start
    test_start = _to_timestamp(config.test_start, dataset.time_unit)
    if config.valid_start is None:
        valid_start = test_start - (int(times.max()) + 1 - test_start)
    else:
        valid_start = _to_timestamp(config.valid_start, dataset.time_unit)
    if not valid_start <= test_start:
        raise DataError(f"valid_start ({config.valid_start}) must come before test_start")
    return times >= test_start, (times >= valid_start) & (times < test_start)


def make_task(stage: str, fit: pd.DataFrame, held_out: pd.DataFrame, n_items: int) -> EvalTask:
    """Users with at least one held-out target and at least one history interaction."""
    history_users = set(fit["user_id"].unique())
    held = held_out[held_out["user_id"].isin(history_users)]
    held = held.drop_duplicates(["user_id", "item_idx"])
    users = np.sort(held["user_id"].unique())
    fit_rows = fit[fit["user_id"].isin(set(users))]
    # both tables are grouped by user in sorted order, so CSR offsets come from group sizes
    fit_rows = sort_interactions(fit_rows)
    held = held.sort_values("user_id", kind="stable")
    history_sizes = fit_rows.groupby("user_id", sort=True).size().reindex(users).to_numpy()
    target_sizes = held.groupby("user_id", sort=True).size().reindex(users).to_numpy()
    cutoffs = held.groupby("user_id", sort=True)["timestamp"].min().reindex(users).to_numpy()
    return EvalTask(
        stage=stage,
        users=users,
        history_indptr=_indptr(history_sizes),
        history_items=fit_rows["item_idx"].to_numpy(dtype=np.int64),
        target_indptr=_indptr(target_sizes),
        target_items=held["item_idx"].to_numpy(dtype=np.int64),
        fit=fit,
        n_items=n_items,
        history_times=fit_rows["timestamp"].to_numpy(dtype=np.int64),
        cutoffs=cutoffs.astype(np.int64),
    )


def _indptr(sizes) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))]).astype(np.int64)


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)
