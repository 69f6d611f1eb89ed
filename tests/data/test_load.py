"""What every layout shares (`seqrec.data.load`): time parsing, format detection, arguments,
and the real data's figures. Each layout has its own file: test_load_hm.py, test_load_sasrec.py,
test_load_generic.py."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from load_layouts import make_hm, make_sasrec

from seqrec.data.dataset import DataError
from seqrec.data.load import detect_format, load_dataset, parse_time


def test_parse_time_formats():
    values = pd.Series(["2024-01-01", "2024-01-01T00:00:10Z", None, "junk"])
    stamps, bad = parse_time(values, "auto")
    assert list(bad) == [False, False, True, True]
    assert stamps[1] - stamps[0] == 10
    stamps, bad = parse_time(pd.Series(["1700000000", "12.7"]), "auto")
    assert list(stamps) == [1700000000, 12] and not bad.any()
    stamps, bad = parse_time(pd.Series(["3", "x"]), "order")
    assert stamps[0] == 3 and list(bad) == [False, True]


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
