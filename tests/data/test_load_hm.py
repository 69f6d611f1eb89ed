"""Loading the H&M Kaggle layout (`seqrec.data.formats.hm`)."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from load_layouts import ARTICLE_IDS, TRANSACTIONS, assert_rejected, make_hm

from seqrec.data.dataset import DataError
from seqrec.data.load import HM_CATEGORY_COLUMNS, HM_TEXT_COLUMNS, load_dataset


def test_hm_layout(tmp_path):
    ds = load_dataset(make_hm(tmp_path / "hm"))
    assert ds.report.format == "hm" and ds.time_unit == "day"
    assert list(ds.items["item_id"]) == ARTICLE_IDS  # leading zeros kept, catalogue order
    assert ds.items.columns[0] == "item_id"
    assert ds.n_items == 3 and ds.n_users == 2 and len(ds.interactions) == 5
    assert ds.report.rejected == {}

    # Never-bought article stays, with no price; price is the median transaction price.
    price = ds.items.set_index("item_id")["price"]
    assert math.isnan(price["0200000001"])
    assert price["0108775015"] == pytest.approx(0.02)
    assert price["0108775044"] == pytest.approx(0.03)

    # Images are found, as absolute paths to existing files.
    assert ds.images_found() == 3
    for path in ds.items["image_path"]:
        assert os.path.isabs(path) and os.path.isfile(path)
    assert ds.items["image_path"][0].endswith(os.path.join("010", "0108775015.jpg"))

    # Days since 1970-01-01, sorted by (user, day), file order kept inside a day.
    inter = ds.interactions
    assert list(inter.columns) == ["user_id", "item_idx", "timestamp"]
    assert inter["item_idx"].dtype == np.int64 and inter["timestamp"].dtype == np.int64
    first_day = (pd.Timestamp("2020-08-30") - pd.Timestamp("1970-01-01")).days
    a = inter[inter["user_id"] == "cust_a"]
    assert list(a["timestamp"]) == [first_day, first_day + 2, first_day + 4]
    assert list(a["item_idx"]) == [1, 0, 1]
    b = inter[inter["user_id"] == "cust_b"]
    assert list(b["item_idx"]) == [1, 0]  # same day: file order
    assert ds.stats()["time_min"] == "2020-08-30"

    assert ds.schema.text_columns == HM_TEXT_COLUMNS
    assert ds.schema.category_columns == HM_CATEGORY_COLUMNS
    assert ds.schema.image_column == "image_path" and ds.schema.title_column == "prod_name"
    assert ds.schema.numeric_columns == ["price"] and ds.schema.price_column == "price"
    assert any("customers.csv lists 3 customers" in note for note in ds.report.notes)


def test_hm_keeps_exact_duplicates_with_a_note(tmp_path):
    tx = [*TRANSACTIONS, TRANSACTIONS[0]]  # a 2-unit purchase appears as a repeated row
    ds = load_dataset(make_hm(tmp_path / "hm", transactions=tx), on_error="fail")
    assert len(ds.interactions) == 6
    assert "duplicate_row" not in ds.report.rejected
    assert any(
        note.startswith("1 rows of transactions_train.csv repeat") for note in ds.report.notes
    )


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_hm_missing_column_names_file_and_column(tmp_path, on_error):
    root = make_hm(tmp_path / "hm", drop_column="article_id")
    with pytest.raises(DataError, match=r"transactions_train\.csv has no column 'article_id'"):
        load_dataset(root, on_error=on_error)


def test_hm_missing_file(tmp_path):
    root = make_hm(tmp_path / "hm")
    (root / "transactions_train.csv").unlink()
    with pytest.raises(DataError, match="transactions_train.csv"):
        load_dataset(root, format="hm")


def test_hm_bad_dates(tmp_path):
    tx = [
        *TRANSACTIONS,
        ("2020-13-45", "cust_a", "0108775015", 0.01, 1),
        ("soon", "cust_c", "0108775015", 0.01, 1),
    ]
    ds = assert_rejected(make_hm(tmp_path / "hm", transactions=tx), "bad_timestamp", 2)
    assert len(ds.interactions) == 5 and ds.n_users == 2
    with pytest.raises(DataError, match=r"row 6 of transactions_train\.csv: t_dat='2020-13-45'"):
        load_dataset(tmp_path / "hm", on_error="fail")


def test_hm_unknown_item(tmp_path):
    tx = [*TRANSACTIONS, ("2020-09-01", "cust_a", "0999999999", 0.01, 1)]
    ds = assert_rejected(make_hm(tmp_path / "hm", transactions=tx), "unknown_item", 1)
    assert len(ds.interactions) == 5 and ds.n_items == 3
    with pytest.raises(DataError, match=r"'0999999999' is not in articles\.csv"):
        load_dataset(tmp_path / "hm", on_error="fail")


def test_hm_missing_user_or_item(tmp_path):
    tx = [*TRANSACTIONS, ("2020-09-01", None, "0108775015", 0.01, 1)]
    ds = assert_rejected(make_hm(tmp_path / "hm", transactions=tx), "missing_user_or_item", 1)
    assert len(ds.interactions) == 5


def test_hm_missing_image_keeps_item(tmp_path):
    root = make_hm(tmp_path / "hm", images=ARTICLE_IDS[:2])
    ds = assert_rejected(root, "missing_image", 1)
    assert ds.n_items == 3 and ds.images_found() == 2
    assert ds.items["image_path"][2] is None


def test_hm_duplicate_article(tmp_path):
    ids = [*ARTICLE_IDS, ARTICLE_IDS[0]]
    ds = assert_rejected(make_hm(tmp_path / "hm", article_ids=ids), "duplicate_item", 1)
    assert list(ds.items["item_id"]) == ARTICLE_IDS
    assert ds.items["prod_name"][0] == "prod_name 0"  # the first row is kept


def test_hm_text_columns(tmp_path):
    root = make_hm(tmp_path / "hm")
    ds = load_dataset(root, text_columns=["prod_name", "detail_desc"])
    assert ds.schema.text_columns == ["prod_name", "detail_desc"]
    with pytest.raises(DataError, match=r"articles\.csv has no column 'blurb'"):
        load_dataset(root, text_columns=["blurb"])


def test_hm_malformed_rows_skipped(tmp_path):
    root = make_hm(tmp_path / "hm")
    path = root / "transactions_train.csv"
    path.write_text(path.read_text() + "2020-09-04,cust_a\n2020-09-05,cust_a,0108775015,0.1,2\n")
    articles = root / "articles.csv"
    articles.write_text(articles.read_text() + "0300000001,too,few\n")
    ds = assert_rejected(root, "malformed_row", 2)
    assert ds.report.malformed_lines == {"articles.csv": [5], "transactions_train.csv": [7]}
    assert ds.n_items == 3 and len(ds.interactions) == 6


def test_hm_header_only_transactions(tmp_path):
    root = make_hm(tmp_path / "hm", transactions=[])
    with pytest.raises(DataError, match=r"transactions_train\.csv has no rows"):
        load_dataset(root)
