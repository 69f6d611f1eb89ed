"""Property tests for `load_dataset` on small generated generic layouts (CSV and Parquet).

Whatever the files hold (no rows, one row, odd column types, unicode or missing ids, malformed
CSV rows), loading either gives a consistent Dataset or raises `DataError` with a message: never
another exception.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from seqrec.data.dataset import DataError
from seqrec.data.load import TIME_FORMATS, load_dataset

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTERACTION_KINDS = ("malformed_row", "missing_user_or_item", "bad_timestamp", "unknown_item")

short_text = st.text(max_size=4)
# one column's values, all of one kind or mixed
VALUES = {
    "str": short_text,
    "id": st.sampled_from(["a", "b", "é", "北京", "0", "007", " a"]),
    "int": st.integers(-3, 3),
    "float": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "bool": st.booleans(),
    "list": st.lists(st.integers(0, 3), max_size=2),
    "iso": st.dates().map(lambda d: d.isoformat()),
    "unix": st.integers(0, 2_000_000_000),
}
VALUES["mixed"] = st.one_of(VALUES["id"], VALUES["int"], VALUES["float"], st.none())


@st.composite
def column(draw, n: int, kinds: tuple[str, ...]) -> list:
    """``n`` values of one drawn kind, some of them missing."""
    values = VALUES[draw(st.sampled_from(kinds))]
    return draw(st.lists(st.one_of(values, st.none()) | values, min_size=n, max_size=n))


@st.composite
def interactions(draw, csv_file: bool) -> tuple[pd.DataFrame, str | None]:
    """An interactions table (user, item, maybe ts) and its time_format (None: no time)."""
    n = draw(st.integers(0, 8))
    id_kinds = ("id", "str", "int", "float", "bool", "mixed") + (() if csv_file else ("list",))
    time_kinds = ("unix", "iso", "str", "float", "bool", "mixed", "int")
    frame = pd.DataFrame(
        {"user": draw(column(n, id_kinds)), "item": draw(column(n, id_kinds))}, dtype=object
    )
    time_format = draw(st.sampled_from((None, *TIME_FORMATS)))
    if time_format is not None:
        kinds = time_kinds + (() if csv_file else ("list",))
        frame["ts"] = pd.Series(draw(column(n, kinds)), dtype=object)
    return frame, time_format


def write_toml(root: Path, name: str, time_format: str | None, items: bool) -> None:
    toml = f'[interactions]\npath = "{name}"\nuser = "user"\nitem = "item"\n'
    if time_format is not None:
        toml += f'time = "ts"\ntime_format = "{time_format}"\n'
    if items:
        toml += '[items]\npath = "items.csv"\nid = "item_id"\ntext = ["title"]\n'
    (root / "seqrec.toml").write_text(toml, encoding="utf-8")


def write_csv(path: Path, frame: pd.DataFrame, malformed: list[tuple[int, list[str]]]) -> int:
    """The frame as CSV with malformed rows (a wrong number of fields) inserted; rows written."""
    rows = [["" if v is None else str(v) for v in row] for row in frame.itertuples(index=False)]
    for position, fields in malformed:
        rows.insert(min(position, len(rows)), fields)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(frame.columns)
        writer.writerows(rows)
    return len(rows)


def check_loaded(root: Path, rows: int) -> None:
    """Load ``root``: a consistent Dataset or a DataError with a message, nothing else."""
    try:
        dataset = load_dataset(root, format="generic", on_error="skip")
    except DataError as error:
        assert str(error).strip()
        event("DataError: " + " ".join(str(error).split()[1:4]))  # --hypothesis-show-statistics
        return
    event("loaded")
    rejected = dataset.report.rejected
    inter = dataset.interactions
    counted = sum(rejected.get(kind, 0) for kind in INTERACTION_KINDS)
    assert len(inter) + counted + rejected.get("duplicate_row", 0) == rows, rejected
    assert len(inter) > 0
    items = dataset.items["item_id"]
    assert items.is_unique and items.notna().all() and (items.str.len() > 0).all()
    assert inter["item_idx"].between(0, len(items) - 1).all()
    assert inter["user_id"].notna().all() and (inter["user_id"].str.len() > 0).all()
    assert inter["timestamp"].dtype == np.int64
    json.dumps(dataset.stats())  # stats work and are plain JSON
    if dataset.report.malformed_lines:
        lines = dataset.report.malformed_lines["interactions.csv"]
        assert len(lines) == rejected["malformed_row"] and all(2 <= n <= rows + 1 for n in lines)
    try:
        strict = load_dataset(root, format="generic", on_error="fail")
    except DataError as error:
        assert rejected and str(error).strip()
    else:
        assert not rejected and len(strict.interactions) == len(inter)


malformed_rows = st.lists(
    st.tuples(
        st.integers(0, 8),
        st.one_of(
            st.lists(st.sampled_from(["x", "1", "é"]), min_size=1, max_size=1),
            st.lists(st.sampled_from(["x", "1", ""]), min_size=4, max_size=5),
        ),
    ),
    max_size=3,
)


@SETTINGS
@given(table=interactions(csv_file=True), malformed=malformed_rows, items_file=st.booleans())
def test_csv_layouts_load_or_refuse_with_a_message(table, malformed, items_file):
    frame, time_format = table
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_toml(root, "interactions.csv", time_format, items_file)
        if items_file:
            pd.DataFrame({"item_id": ["a", "b", "é", "0", "1"], "title": "t"}).to_csv(
                root / "items.csv", index=False
            )
        rows = write_csv(root / "interactions.csv", frame, malformed)
        check_loaded(root, rows)


@SETTINGS
@given(table=interactions(csv_file=False))
def test_parquet_layouts_load_or_refuse_with_a_message(table):
    frame, time_format = table
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_toml(root, "events.parquet", time_format, items=False)
        try:
            frame.to_parquet(root / "events.parquet")
        except (TypeError, ValueError, ImportError):  # Parquet cannot hold a mixed column
            reject()
        check_loaded(root, len(frame))


@pytest.mark.parametrize("text", ["", "user,item\n", "user,item\n\n\n"])
def test_files_without_rows_are_refused(tmp_path, text):
    write_toml(tmp_path, "interactions.csv", None, items=False)
    (tmp_path / "interactions.csv").write_text(text)
    with pytest.raises(DataError, match="interactions.csv (is empty|has no rows)"):
        load_dataset(tmp_path)
