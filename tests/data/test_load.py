"""Tests for seqrec.data.load: tiny H&M, SASRec and generic layouts written into tmp_path."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seqrec.data.dataset import DataError
from seqrec.data.load import (
    HM_CATEGORY_COLUMNS,
    HM_TEXT_COLUMNS,
    detect_format,
    load_dataset,
    parse_time,
    read_config,
)

# ----------------------------------------------------------------------------------------------
# tiny layouts

ARTICLE_IDS = ["0108775015", "0108775044", "0200000001"]  # the last one is never bought

TRANSACTIONS = [
    # t_dat, customer_id, article_id, price, sales_channel_id
    ("2020-09-01", "cust_b", "0108775044", 0.02, 2),
    ("2020-09-01", "cust_a", "0108775015", 0.01, 2),
    ("2020-09-03", "cust_a", "0108775044", 0.03, 1),
    ("2020-08-30", "cust_a", "0108775044", 0.05, 1),
    ("2020-09-01", "cust_b", "0108775015", 0.03, 2),
]


def write_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 6), (200, 30, 30)).save(path, format="JPEG")


def make_hm(
    root: Path,
    transactions=TRANSACTIONS,
    article_ids=ARTICLE_IDS,
    images=ARTICLE_IDS,
    drop_column: str | None = None,
) -> Path:
    """A Kaggle-shaped H&M directory (only the article columns the loader needs, plus a code)."""
    root.mkdir(parents=True, exist_ok=True)
    articles = pd.DataFrame({"article_id": article_ids, "product_code": "108775"})
    for column in dict.fromkeys([*HM_TEXT_COLUMNS, *HM_CATEGORY_COLUMNS]):
        articles[column] = [f"{column} {i}" for i in range(len(article_ids))]
    articles.to_csv(root / "articles.csv", index=False)
    tx = pd.DataFrame(
        transactions, columns=["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]
    )
    if drop_column:
        tx = tx.drop(columns=[drop_column])
    tx.to_csv(root / "transactions_train.csv", index=False)
    pd.DataFrame({"customer_id": ["cust_a", "cust_b", "cust_c"]}).to_csv(
        root / "customers.csv", index=False
    )
    for article_id in images:
        write_jpeg(root / "images" / article_id[:3] / f"{article_id}.jpg")
    return root


def make_sasrec(root: Path, lines: str, items: str | None = None, name: str = "data.txt") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(lines)
    if items is not None:
        (root / "items.csv").write_text(items)
    return root / name


SASREC_ITEMS = (
    "item_id,movielens_id,title,genres\n"
    "1,1198,Raiders of the Lost Ark (1981),Action|Adventure\n"
    "2,3552,Caddyshack (1980),Comedy\n"
    "3,356,Forrest Gump (1994),Comedy|Romance|War\n"
    "4,1,Toy Story (1995),Animation\n"
)

GENERIC_TOML = """
[interactions]
path = "interactions.csv"
user = "user"
item = "sku"
time = "when"

[items]
path = "items.csv"
id = "sku"
text = ["title", "description"]
category = ["category"]
numeric = ["price"]
image = "image"
images_dir = "images"
title = "title"
price = "price"
"""


def make_generic(
    root: Path,
    interactions: str | None = None,
    items: str | None = None,
    toml: str = GENERIC_TOML,
    images: tuple[str, ...] = ("a.jpg", "b.jpg"),
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "seqrec.toml").write_text(toml)
    if interactions is None:
        interactions = (
            "user,sku,when\nu1,A,2024-01-02T10:00:00\nu1,B,2024-01-01T09:00:00\nu2,B,2024-01-03\n"
        )
    if items is None:
        items = (
            "sku,title,description,category,price,image\n"
            "A,Red shirt,A red shirt,tops,10.5,a.jpg\n"
            "B,Blue jeans,Blue denim jeans,bottoms,40,b.jpg\n"
            "C,Green hat,,hats,ask us,c.jpg\n"
        )
    (root / "interactions.csv").write_text(interactions)
    (root / "items.csv").write_text(items)
    for name in images:
        write_jpeg(root / "images" / name)
    return root


def assert_rejected(path, kind: str, count: int, fmt: str | None = None, **kwargs):
    """Skip mode counts ``kind``; fail mode raises naming it with the same count."""
    dataset = load_dataset(path, format=fmt, on_error="skip", **kwargs)
    assert dataset.report.rejected.get(kind) == count, dataset.report.rejected
    with pytest.raises(DataError, match=rf"{kind}: {count} \(e\.g\. "):
        load_dataset(path, format=fmt, on_error="fail", **kwargs)
    return dataset


# ----------------------------------------------------------------------------------------------
# hm


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


# ----------------------------------------------------------------------------------------------
# sasrec


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


# ----------------------------------------------------------------------------------------------
# generic


def test_generic_csv(tmp_path):
    root = make_generic(tmp_path / "shop")
    assert detect_format(root) == "generic"
    assert detect_format(root / "seqrec.toml") == "generic"
    ds = load_dataset(root)
    assert ds.report.format == "generic" and ds.time_unit == "second" and ds.name == "shop"
    assert list(ds.items["item_id"]) == ["A", "B", "C"] and ds.items.columns[0] == "item_id"
    assert ds.schema.text_columns == ["title", "description"]
    assert ds.schema.category_columns == ["category"] and ds.schema.numeric_columns == ["price"]
    assert ds.schema.image_column == "image_path" and ds.schema.price_column == "price"
    assert ds.items["price"][0] == 10.5 and math.isnan(ds.items["price"][2])
    assert any("'price' are not numbers" in note for note in ds.report.notes)
    assert ds.images_found() == 2 and os.path.isfile(ds.items["image_path"][0])
    assert ds.items["image"][0] == "a.jpg"  # raw column kept
    assert ds.report.rejected == {"missing_image": 1}  # c.jpg is absent; item C kept

    u1 = ds.interactions[ds.interactions["user_id"] == "u1"]
    assert list(u1["item_idx"]) == [1, 0]  # sorted by time, not file order
    assert u1["timestamp"].iloc[0] == int(pd.Timestamp("2024-01-01T09:00:00").timestamp())


def test_generic_without_items_and_time(tmp_path):
    toml = '[interactions]\npath = "interactions.csv"\nuser = "user"\nitem = "sku"\n'
    root = make_generic(tmp_path / "shop", toml=toml)
    ds = load_dataset(root / "seqrec.toml")
    assert ds.time_unit == "order" and list(ds.items["item_id"]) == ["A", "B"]
    u1 = ds.interactions[ds.interactions["user_id"] == "u1"]
    assert list(u1["item_idx"]) == [0, 1]  # file order


def test_generic_parquet_unix_time(tmp_path):
    root = tmp_path / "pq"
    root.mkdir()
    frame = pd.DataFrame({"user_id": [7, 7, 8], "item_id": [3, 1, 3], "ts": [200, 100, 50]})
    frame.to_parquet(root / "events.parquet")
    toml = '[interactions]\npath = "events.parquet"\ntime = "ts"\ntime_format = "unix"\n'
    (root / "seqrec.toml").write_text(toml)
    ds = load_dataset(root)
    assert list(ds.items["item_id"]) == ["1", "3"]
    assert list(ds.interactions["user_id"]) == ["7", "7", "8"]
    assert list(ds.interactions["timestamp"]) == [100, 200, 50]


def test_generic_bad_rows(tmp_path):
    interactions = (
        "user,sku,when\n"
        "u1,A,2024-01-02\n"
        "u1,A,2024-01-02\n"  # duplicate_row
        "u1,Z,2024-01-03\n"  # unknown_item
        "u2,B,not a date\n"  # bad_timestamp
        ",B,2024-01-03\n"  # missing_user_or_item
        "u2,B,2024-01-04\n"
    )
    root = make_generic(tmp_path / "shop", interactions=interactions)
    ds = assert_rejected(root, "duplicate_row", 1)
    assert ds.report.rejected == {
        "duplicate_row": 1,
        "unknown_item": 1,
        "bad_timestamp": 1,
        "missing_user_or_item": 1,
        "missing_image": 1,
    }
    assert len(ds.interactions) == 2
    with pytest.raises(DataError) as err:
        load_dataset(root, on_error="fail")
    message = str(err.value)
    for expected in [
        "bad_timestamp: 1",
        "when='not a date'",
        "unknown_item: 1",
        "sku='Z' is not in items.csv",
        "missing_image: 1",
        "c.jpg",
    ]:
        assert expected in message


def test_generic_duplicate_item(tmp_path):
    items = "sku,title,description,category,price,image\nA,x,,t,1,a.jpg\nA,y,,t,2,b.jpg\n"
    items += "B,z,,t,3,b.jpg\n"
    ds = assert_rejected(make_generic(tmp_path / "shop", items=items), "duplicate_item", 1)
    assert list(ds.items["title"]) == ["x", "z"]


def test_generic_unknown_key_and_wrong_type(tmp_path):
    root = make_generic(tmp_path / "shop", toml=GENERIC_TOML.replace("title = ", "titel = "))
    with pytest.raises(DataError, match=r"unknown key items\.titel"):
        load_dataset(root)
    root = make_generic(tmp_path / "shop2", toml=GENERIC_TOML + "[extra]\nx = 1\n")
    with pytest.raises(DataError, match="unknown key 'extra'"):
        read_config(root)
    bad = GENERIC_TOML.replace('category = ["category"]', 'category = "category"')
    root = make_generic(tmp_path / "shop3", toml=bad)
    with pytest.raises(DataError, match=r"items\.category must be a list of strings"):
        load_dataset(root)
    bad = GENERIC_TOML.replace('time = "when"', 'time = "when"\ntime_format = "weekly"')
    with pytest.raises(DataError, match="time_format"):
        read_config(make_generic(tmp_path / "shop4", toml=bad))


def test_generic_missing_column_and_file(tmp_path):
    root = make_generic(tmp_path / "shop", toml=GENERIC_TOML.replace('user = "user"', 'user = "u"'))
    with pytest.raises(DataError, match=r"interactions\.csv has no column 'u' \(columns: "):
        load_dataset(root)
    root = make_generic(tmp_path / "shop2")
    (root / "items.csv").unlink()
    with pytest.raises(DataError, match="items.csv"):
        load_dataset(root)


def test_parse_time_formats():
    values = pd.Series(["2024-01-01", "2024-01-01T00:00:10Z", None, "junk"])
    stamps, bad = parse_time(values, "auto")
    assert list(bad) == [False, False, True, True]
    assert stamps[1] - stamps[0] == 10
    stamps, bad = parse_time(pd.Series(["1700000000", "12.7"]), "auto")
    assert list(stamps) == [1700000000, 12] and not bad.any()
    stamps, bad = parse_time(pd.Series(["3", "x"]), "order")
    assert stamps[0] == 3 and list(bad) == [False, True]


# ----------------------------------------------------------------------------------------------
# detection and arguments


def test_detect_format(tmp_path):
    assert detect_format(make_hm(tmp_path / "hm")) == "hm"
    txt = make_sasrec(tmp_path / "seq", "1 1\n")
    assert detect_format(txt) == "sasrec"
    (tmp_path / "seq" / "other.txt").write_text("1 1\n")
    with pytest.raises(DataError, match="found 2 .txt files"):
        detect_format(tmp_path / "seq")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="articles.csv.*seqrec.toml.*txt"):
        detect_format(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        detect_format(tmp_path / "nowhere")


def test_bad_arguments(tmp_path):
    root = make_hm(tmp_path / "hm")
    with pytest.raises(DataError, match="unknown format 'csv'"):
        load_dataset(root, format="csv")
    with pytest.raises(DataError, match="unknown on_error 'ignore'"):
        load_dataset(root, on_error="ignore")


# ----------------------------------------------------------------------------------------------
# real data


def test_real_data_figures(shared_data):
    start = time.perf_counter()
    hm = load_dataset(shared_data / "hm", on_error="fail")
    stats = hm.stats()
    assert (stats["interactions"], stats["users"], stats["items"], stats["images"]) == (
        31_662,
        1_364,
        17_033,
        17_033,
    )
    assert hm.items["item_id"][0] == "0108775015"
    assert any(note.startswith("2894 rows") for note in hm.report.notes)

    ml = load_dataset(shared_data / "ml-1m", on_error="fail")
    stats = ml.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (6_040, 3_416, 999_611)
    assert ml.schema.text_columns == ["title", "genres_text"]
    assert time.perf_counter() - start < 10


# ----------------------------------------------------------------------------------------------
# malformed rows: counted and skipped with their line numbers, or stopped on under "fail"


def test_generic_malformed_rows_skipped_with_line_numbers(tmp_path):
    interactions = (
        "user,sku,when\n"
        "u1,A,2024-01-02\n"
        "u1,B,2024-01-03,surplus\n"  # line 3: four fields
        "u2\n"  # line 4: one field
        "u2,B,2024-01-04\n"
    )
    items = (
        "sku,title,description,category,price,image\n"
        "A,Red shirt,A red shirt,tops,10.5,a.jpg\n"
        "B,Blue jeans,Blue denim jeans,bottoms,40,b.jpg,oops\n"  # line 3 of items.csv
        "C,Green hat,,hats,3,c.jpg\n"
    )
    root = make_generic(tmp_path / "shop", interactions=interactions, items=items)
    ds = assert_rejected(root, "malformed_row", 3)
    assert ds.report.malformed_lines == {"items.csv": [3], "interactions.csv": [3, 4]}
    assert list(ds.items["item_id"]) == ["A", "C"]
    assert len(ds.interactions) == 1  # u2's B row is an unknown item now that B was skipped
    assert ds.stats()["malformed_lines"] == {"items.csv": [3], "interactions.csv": [3, 4]}
    with pytest.raises(DataError, match=r"malformed_row: 3 \(e\.g\. line 3 of items\.csv"):
        load_dataset(root, on_error="fail")


def test_generic_parquet_and_csv_interactions_without_items_skip_malformed(tmp_path):
    toml = '[interactions]\npath = "interactions.csv"\nuser = "user"\nitem = "sku"\n'
    interactions = "user,sku\nu1,A\nu1,B,C\nu2,B\n"
    ds = load_dataset(make_generic(tmp_path / "shop", interactions=interactions, toml=toml))
    assert ds.report.rejected == {"malformed_row": 1}
    assert ds.report.malformed_lines == {"interactions.csv": [3]}
    assert list(ds.items["item_id"]) == ["A", "B"] and len(ds.interactions) == 2


def test_hm_malformed_rows_skipped(tmp_path):
    root = make_hm(tmp_path / "hm")
    path = root / "transactions_train.csv"
    path.write_text(path.read_text() + "2020-09-04,cust_a\n2020-09-05,cust_a,0108775015,0.1,2\n")
    articles = root / "articles.csv"
    articles.write_text(articles.read_text() + "0300000001,too,few\n")
    ds = assert_rejected(root, "malformed_row", 2)
    assert ds.report.malformed_lines == {"articles.csv": [5], "transactions_train.csv": [7]}
    assert ds.n_items == 3 and len(ds.interactions) == 6


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


def test_cli_data_stats_shows_malformed_lines(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    interactions = "user,sku,when\nu1,A,2024-01-02\nu1,B,2024-01-03,x\nu2,B,2024-01-04\n"
    root = make_generic(tmp_path / "shop", interactions=interactions)
    out = tmp_path / "stats.json"
    result = CliRunner().invoke(app, ["data", "stats", str(root), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "rejected_malformed_row" in result.output
    assert "interactions.csv: 3" in result.output
    assert json.loads(out.read_text())["malformed_lines"] == {"interactions.csv": [3]}
    result = CliRunner().invoke(app, ["data", "stats", str(root), "--on-error", "fail"])
    assert result.exit_code == 2 and "line 3 of interactions.csv" in result.output


# ----------------------------------------------------------------------------------------------
# column types that cannot be ids or times


def write_parquet_shop(root: Path, columns: dict, time_format: str | None = "unix") -> Path:
    """A generic layout of one Parquet interactions file with columns user, item, ts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    base = {"user": ["u1", "u1", "u2"], "item": ["a", "b", "a"], "ts": [1, 2, 3]}
    pq.write_table(pa.table(base | columns), root / "events.parquet")
    toml = '[interactions]\npath = "events.parquet"\nuser = "user"\nitem = "item"\n'
    if time_format:
        toml += f'time = "ts"\ntime_format = "{time_format}"\n'
    (root / "seqrec.toml").write_text(toml)
    return root


@pytest.mark.parametrize("time_format", ["unix", "auto", "iso", "order"])
def test_boolean_time_column_is_refused(tmp_path, time_format):
    root = write_parquet_shop(tmp_path / "pq", {"ts": [True, False, True]}, time_format)
    with pytest.raises(DataError, match=r"events\.parquet: time column 'ts' holds bool"):
        load_dataset(root)


@pytest.mark.parametrize("time_format", ["unix", "auto", "iso", "order"])
@pytest.mark.parametrize(
    "values, kind", [([[1], [2, 3], [4]], "list"), ([{"s": 1}, {"s": 2}, {"s": 3}], "struct")]
)
def test_list_and_struct_time_columns_are_refused(tmp_path, time_format, values, kind):
    root = write_parquet_shop(tmp_path / "pq", {"ts": values}, time_format)
    with pytest.raises(DataError, match=rf"time column 'ts' holds {kind}"):
        load_dataset(root)


@pytest.mark.parametrize("column", ["user", "item"])
@pytest.mark.parametrize(
    "values, kind", [([["x"], ["y"], ["x"]], "list"), ([{"s": 1}, {"s": 2}, {"s": 1}], "struct")]
)
def test_list_and_struct_id_columns_are_refused(tmp_path, column, values, kind):
    root = write_parquet_shop(tmp_path / "pq", {column: values}, time_format=None)
    with pytest.raises(DataError, match=rf"{column} column '{column}' holds {kind}"):
        load_dataset(root)


def test_boolean_time_in_csv_is_refused(tmp_path):
    toml = GENERIC_TOML.replace('time = "when"', 'time = "when"\ntime_format = "unix"')
    interactions = "user,sku,when\nu1,A,true\nu1,B,false\nu2,B,true\n"
    root = make_generic(tmp_path / "shop", interactions=interactions, toml=toml)
    with pytest.raises(DataError, match=r"interactions\.csv: time column 'when' holds bool"):
        load_dataset(root)


# ----------------------------------------------------------------------------------------------
# empty files and files without rows


@pytest.mark.parametrize("text", ["", "user,sku,when\n"], ids=["empty", "header only"])
def test_generic_interactions_without_rows(tmp_path, text):
    root = make_generic(tmp_path / "shop", interactions=text)
    with pytest.raises(DataError, match=r"interactions\.csv (is empty|has no rows)"):
        load_dataset(root)


def test_generic_items_without_rows(tmp_path):
    root = make_generic(tmp_path / "shop", items="sku,title,description,category,price,image\n")
    with pytest.raises(DataError, match=r"items\.csv has no rows"):
        load_dataset(root)


def test_every_row_rejected_is_one_message(tmp_path):
    interactions = "user,sku,when\nu1,Z,2024-01-02\n,A,2024-01-03\n"
    root = make_generic(tmp_path / "shop", interactions=interactions)
    with pytest.raises(DataError, match=r"no interaction of interactions\.csv is left"):
        load_dataset(root)


@pytest.mark.parametrize("text", ["", "\n"], ids=["empty", "blank line"])
def test_sasrec_without_lines(tmp_path, text):
    with pytest.raises(DataError, match=r"data\.txt has no rows"):
        load_dataset(make_sasrec(tmp_path / "seq", text))


def test_hm_header_only_transactions(tmp_path):
    root = make_hm(tmp_path / "hm", transactions=[])
    with pytest.raises(DataError, match=r"transactions_train\.csv has no rows"):
        load_dataset(root)


def test_one_row_loads(tmp_path):
    root = make_generic(tmp_path / "shop", interactions="user,sku,when\nu1,A,2024-01-02\n")
    ds = load_dataset(root)
    assert len(ds.interactions) == 1 and ds.n_users == 1 and ds.n_items == 3


def test_a_repeated_csv_column_name_reads_its_first_column(tmp_path):
    items = "sku,title,description,category,price,image,title\nA,Red,x,t,1,a.jpg,Other\n"
    items += "B,Blue,y,t,2,b.jpg,Other\n"
    ds = load_dataset(make_generic(tmp_path / "shop", items=items))
    assert list(ds.items["title"]) == ["Red", "Blue"] and "title.1" in ds.items.columns
