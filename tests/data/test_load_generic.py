"""Loading CSV/Parquet files described by a seqrec.toml (`seqrec.data.formats.generic`)."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest
from load_layouts import GENERIC_TOML, assert_rejected, make_generic, write_parquet_shop

from seqrec.data.dataset import DataError
from seqrec.data.load import detect_format, load_dataset, read_config


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
    with pytest.raises(DataError, match="unknown key extra"):
        read_config(root)
    bad = GENERIC_TOML.replace('category = ["category"]', 'category = "category"')
    root = make_generic(tmp_path / "shop3", toml=bad)
    with pytest.raises(DataError, match=r"items\.category must be a list"):
        load_dataset(root)
    bad = GENERIC_TOML.replace('time = "when"', 'time = "when"\ntime_format = "weekly"')
    with pytest.raises(DataError, match="time_format"):
        read_config(make_generic(tmp_path / "shop4", toml=bad))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('text = ["title", "description"]', "text = 3", r"items\.text must be a list, got 3"),
        ('text = ["title", "description"]', 'text = ["title", 4]', r"items\.text\[1\] must be str"),
        ('user = "user"', "user = true", r"interactions\.user must be str, got True"),
        ('path = "items.csv"', 'path = " "', r"items\.path = ' ' must not be empty"),
        ('path = "items.csv"\n', "", r"items\.path is required"),
        ("[interactions]", "[events]", r"unknown key events"),
        (
            'time = "when"',
            'time = "when"\ntime_format = "weekly"',
            r"interactions\.time_format = 'weekly' is not one of: auto, unix, iso, order",
        ),
    ],
)
def test_a_bad_seqrec_toml_names_the_file_and_the_key(tmp_path, old, new, message):
    root = make_generic(tmp_path / "shop", toml=GENERIC_TOML.replace(old, new, 1))
    with pytest.raises(DataError, match=r"shop/seqrec\.toml: " + message):
        load_dataset(root)


def test_group_names_the_product_column(tmp_path):
    items = (
        "sku,title,description,category,price,image,product\n"
        "A,Red shirt,A red shirt,tops,10.5,a.jpg,0042\n"
        "B,Blue shirt,A blue shirt,tops,10.5,b.jpg,0042\n"
        "C,Green hat,,hats,3,c.jpg,0077\n"
    )
    toml = GENERIC_TOML + 'group = "product"\n'
    ds = load_dataset(make_generic(tmp_path / "shop", items=items, toml=toml))
    assert ds.schema.group_column == "product"
    assert list(ds.items["product"]) == ["0042", "0042", "0077"]  # read as text, zeros kept
    assert load_dataset(make_generic(tmp_path / "plain")).schema.group_column is None


def test_a_group_column_the_items_file_lacks_is_named(tmp_path):
    root = make_generic(tmp_path / "shop", toml=GENERIC_TOML + 'group = "product_code"\n')
    with pytest.raises(DataError, match=r"items\.csv has no column 'product_code'"):
        load_dataset(root)


def test_generic_missing_column_and_file(tmp_path):
    root = make_generic(tmp_path / "shop", toml=GENERIC_TOML.replace('user = "user"', 'user = "u"'))
    with pytest.raises(DataError, match=r"interactions\.csv has no column 'u' \(columns: "):
        load_dataset(root)
    root = make_generic(tmp_path / "shop2")
    (root / "items.csv").unlink()
    with pytest.raises(DataError, match="items.csv"):
        load_dataset(root)


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


def test_one_row_loads(tmp_path):
    root = make_generic(tmp_path / "shop", interactions="user,sku,when\nu1,A,2024-01-02\n")
    ds = load_dataset(root)
    assert len(ds.interactions) == 1 and ds.n_users == 1 and ds.n_items == 3


def test_a_repeated_csv_column_name_reads_its_first_column(tmp_path):
    items = "sku,title,description,category,price,image,title\nA,Red,x,t,1,a.jpg,Other\n"
    items += "B,Blue,y,t,2,b.jpg,Other\n"
    ds = load_dataset(make_generic(tmp_path / "shop", items=items))
    assert list(ds.items["title"]) == ["Red", "Blue"] and "title.1" in ds.items.columns
