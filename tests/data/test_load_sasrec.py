"""Loading the SASRec/BERT4Rec text layout (`seqrec.data.formats.sasrec`)."""

from __future__ import annotations

import pytest
from load_layouts import SASREC_ITEMS, assert_rejected, make_sasrec

from seqrec.data.dataset import DataError
from seqrec.data.load import detect_format, load_dataset


def test_sasrec_with_items(tmp_path):
    txt = make_sasrec(tmp_path / "ml", "1 3\n1 1\n2 2\n1\t2\n2 9\n", SASREC_ITEMS)
    ds = load_dataset(txt)
    assert ds.report.format == "sasrec" and ds.time_unit == "order" and ds.name == "data"
    # items.csv order, then ids only seen in the interactions (9), all as str.
    assert list(ds.items["item_id"]) == ["1", "2", "3", "4", "9"]
    assert ds.items["genres"][0] == "Action|Adventure"
    assert ds.items["genres_text"][0] == "Action Adventure"
    assert ds.schema.text_columns == ["title", "genres_text"]
    assert ds.schema.title_column == "title" and ds.schema.category_columns == []
    assert any("1 item ids of data.txt are not in items.csv" in n for n in ds.report.notes)

    inter = ds.interactions
    one = inter[inter["user_id"] == "1"]
    assert list(one["item_idx"]) == [2, 0, 1]  # line order
    assert list(one["timestamp"]) == [0, 1, 2]
    two = inter[inter["user_id"] == "2"]
    assert list(two["item_idx"]) == [1, 4] and list(two["timestamp"]) == [0, 1]


def test_sasrec_without_items_directory(tmp_path):
    make_sasrec(tmp_path / "seq", "5 10\n5 2\n7 10\n")
    assert detect_format(tmp_path / "seq") == "sasrec"
    ds = load_dataset(tmp_path / "seq")
    assert list(ds.items["item_id"]) == ["2", "10"]  # ids seen, in numeric order
    assert ds.schema.text_columns == [] and ds.n_users == 2
    with pytest.raises(DataError, match="no items.csv"):
        load_dataset(tmp_path / "seq", text_columns=["title"])


def test_sasrec_duplicate_and_missing(tmp_path):
    txt = make_sasrec(tmp_path / "seq", "1 1\n1 2\n1 1\n1 1\n2\n2 2\n")
    ds = assert_rejected(txt, "duplicate_row", 2)
    assert ds.report.rejected["missing_user_or_item"] == 1
    assert list(ds.interactions["timestamp"]) == [0, 1, 0]  # renumbered after drops


def test_sasrec_malformed_line(tmp_path):
    txt = make_sasrec(tmp_path / "seq", "1 1\n1 2 3\n2 2\n")
    ds = assert_rejected(txt, "malformed_row", 1)
    assert ds.report.malformed_lines == {"data.txt": [2]}
    assert len(ds.interactions) == 2
    with pytest.raises(DataError, match=r"line 2 of data\.txt"):
        load_dataset(txt, on_error="fail")


def test_sasrec_items_csv_malformed_line(tmp_path):
    items = SASREC_ITEMS + "5,2,Heat (1995),Action,extra\n"
    ds = load_dataset(make_sasrec(tmp_path / "ml", "1 3\n1 1\n", items))
    assert ds.report.malformed_lines == {"items.csv": [6]}
    assert list(ds.items["item_id"]) == ["1", "2", "3", "4"]


@pytest.mark.parametrize("text", ["", "\n"], ids=["empty", "blank line"])
def test_sasrec_without_lines(tmp_path, text):
    with pytest.raises(DataError, match=r"data\.txt has no rows"):
        load_dataset(make_sasrec(tmp_path / "seq", text))
