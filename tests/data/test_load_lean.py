"""Lean loading of large interaction files: ids as integer codes, read block by block."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqrec.data.dataset import sort_interactions
from seqrec.data.demo_scale import ScaleConfig, write_hm_shop
from seqrec.data.formats import lean
from seqrec.data.load import load_dataset

SHOP = ScaleConfig(n_users=300, n_items=90, n_purchases=2_500, images=False, seed=3)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small H&M-layout shop whose purchases file has two malformed lines (5 and 2000)."""
    root = write_hm_shop(tmp_path_factory.mktemp("hm_lean"), SHOP)
    path = root / "transactions_train.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(4, "2019-01-01,abc\n")  # line 5: 2 fields
    lines.insert(1999, "2019-01-01,a,b,0.1,1,extra\n")  # line 2000: 6 fields
    path.write_text("".join(lines))
    return root


def _table(ds) -> pd.DataFrame:
    inter = ds.interactions
    return inter.assign(user_id=inter["user_id"].astype(str).to_numpy(dtype=object))


def test_many_blocks_and_merges_read_as_one(shop, monkeypatch):
    whole = load_dataset(shop)
    monkeypatch.setattr(lean, "BLOCK_BYTES", 4096)  # a few dozen rows per block
    monkeypatch.setattr(lean, "MERGE_AT", 7)  # merge the codes every block or two
    pieces = load_dataset(shop)
    pd.testing.assert_frame_equal(_table(pieces), _table(whole))
    pd.testing.assert_frame_equal(pieces.items, whole.items)
    assert pieces.report.rejected == whole.report.rejected
    assert pieces.report.malformed_lines == {"transactions_train.csv": [5, 2000]}
    assert whole.report.malformed_lines == {"transactions_train.csv": [5, 2000]}
    assert len(whole.interactions) == SHOP.n_purchases


def test_user_ids_are_sorted_categorical_codes(shop):
    users = load_dataset(shop).interactions["user_id"]
    assert isinstance(users.dtype, pd.CategoricalDtype)
    categories = users.cat.categories
    assert categories.is_monotonic_increasing and categories.is_unique
    assert len(categories) == users.nunique()  # only users with a purchase
    assert (users.cat.codes.to_numpy()[1:] >= users.cat.codes.to_numpy()[:-1]).all()
    raw = pd.read_csv(shop / "transactions_train.csv", dtype=str, on_bad_lines="skip")
    assert set(categories) == set(raw.dropna(subset=["price"])["customer_id"])


def test_sort_orders_categories_by_their_text():
    users = pd.Categorical(["b", "a", "c", "a", "b"], categories=["c", "b", "a"])
    frame = pd.DataFrame({"user_id": users, "item_idx": np.arange(5), "timestamp": [5, 9, 1, 2, 3]})
    out = sort_interactions(frame)
    assert list(out["user_id"]) == ["a", "a", "b", "b", "c"]
    assert list(out["item_idx"]) == [3, 1, 4, 0, 2]


def test_sort_keeps_file_order_inside_a_basket():
    frame = pd.DataFrame(
        {"user_id": ["u", "u", "u", "v"], "item_idx": [7, 3, 5, 1], "timestamp": [2, 1, 2, 1]}
    )
    out = sort_interactions(frame)
    assert list(out["item_idx"]) == [3, 7, 5, 1]
