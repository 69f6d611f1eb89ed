"""Events against a brute-force reference: every answer reads only events before the cutoff."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from seqrec.ranker.events import Events, day_length

N_ITEMS = 5


@st.composite
def logs(draw):
    """A small log (item, timestamp, user), a day length (None: order-only) and cutoffs."""
    size = draw(st.integers(0, 30))
    items = draw(st.lists(st.integers(0, N_ITEMS - 1), min_size=size, max_size=size))
    times = draw(st.lists(st.integers(0, 40), min_size=size, max_size=size))
    users = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
    day = draw(st.sampled_from([None, 1, 3]))
    cutoffs = draw(st.lists(st.integers(-5, 60), min_size=1, max_size=6))
    frame = pd.DataFrame({"item_idx": items, "timestamp": times, "user_id": users})
    return frame, day, np.array(cutoffs)


def visible(frame: pd.DataFrame, cutoff: int, day, days=None) -> pd.DataFrame:
    """The events a cutoff reads: before it (all of them without a shared clock)."""
    if day is None:
        return frame
    times = frame["timestamp"]
    keep = times < cutoff
    if days is not None:
        keep &= times >= cutoff - days * day
    return frame[keep]


WINDOWS = st.sampled_from([None, 1, 2, 7])


@settings(max_examples=150, deadline=None)
@given(logs(), WINDOWS, st.lists(WINDOWS, max_size=4))
def test_counts_and_times_match_brute_force(log, days, others):
    frame, day, cutoffs = log
    events = Events(frame, N_ITEMS, day)
    items = np.arange(N_ITEMS).repeat(len(cutoffs))
    pair_cutoffs = np.tile(cutoffs, N_ITEMS)
    # several windows at once, in any order: each search starts from the one before it
    every, counts, *more = events.counts(items, pair_cutoffs, (None, days, *others))
    np.testing.assert_array_equal(counts, events.count(items, pair_cutoffs, days))
    for other, other_counts in zip(others, more, strict=True):
        np.testing.assert_array_equal(other_counts, events.count(items, pair_cutoffs, other))
    last = events.last_time(items, pair_cutoffs)
    first = events.first_time(items, pair_cutoffs)
    for c, (item, cutoff) in enumerate(zip(items, pair_cutoffs, strict=True)):
        seen = visible(frame, cutoff, day)
        sold = seen.loc[seen["item_idx"] == item, "timestamp"]
        in_window = visible(frame, cutoff, day, days)
        assert counts[c] == (in_window["item_idx"] == item).sum()
        assert every[c] == len(sold)
        expected_last = sold.max() if len(sold) else np.nan
        np.testing.assert_equal(last[c], expected_last)
        # first sale: the item's first sale ever, when it was before the cutoff
        all_sales = frame.loc[frame["item_idx"] == item, "timestamp"]
        expected_first = all_sales.min() if len(sold) else np.nan
        np.testing.assert_equal(first[c], expected_first)


@settings(max_examples=150, deadline=None)
@given(logs(), st.sampled_from([None, 1, 2, 7]))
def test_window_table_and_log_before_match_brute_force(log, days):
    frame, day, cutoffs = log
    events = Events(frame, N_ITEMS, day)
    for cutoff in cutoffs:
        in_window = visible(frame, cutoff, day, days)
        expected = np.bincount(in_window["item_idx"], minlength=N_ITEMS)
        np.testing.assert_array_equal(events.window_table(int(cutoff), days), expected)
        users, items, times = events.log_before(int(cutoff))
        seen = visible(frame, cutoff, day)
        assert sorted(zip(items, times, strict=True)) == sorted(
            zip(seen["item_idx"], seen["timestamp"], strict=True)
        )
        assert np.all(np.diff(times) >= 0)  # time order
        assert len(users) == len(seen)


def test_window_of_a_cutoff_after_the_log_end_is_empty():
    """A cutoff long after the log's last event counts nothing in a short window (the window
    used to be anchored at the log's end)."""
    frame = pd.DataFrame({"item_idx": [0, 0, 1], "timestamp": [10, 12, 12], "user_id": [1, 2, 3]})
    events = Events(frame, 2, day=1)
    np.testing.assert_array_equal(events.count(np.array([0, 1]), np.array([100, 100]), 7), [0, 0])
    np.testing.assert_array_equal(events.window_table(100, 7), [0, 0])
    np.testing.assert_array_equal(events.count(np.array([0]), np.array([100])), [2])


def test_day_length_of_time_units():
    assert day_length("day") == 1
    assert day_length("second") == 86400
    assert day_length("order") is None
