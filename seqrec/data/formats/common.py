"""What the three loaders share: counting rejected rows, reading files, ids and timestamps.

`Problems` counts rejected rows into a `LoadReport` and keeps one example of each kind. CSV files
are read by `_read_table` (pyarrow's reader, which skips rows with the wrong number of fields and
says where they are); `_clean_items` and `_clean_interactions` apply the checks every layout
shares (see `seqrec.data.load`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from seqrec.data.dataset import MAX_LINES_KEPT, DataError, LoadReport
from seqrec.data.formats.codes import item_rows, repeat_candidates, sorted_table

# ----------------------------------------------------------------------------------------------
# rejected rows


@dataclass
class Problems:
    """Counts rejected rows into a `LoadReport` and keeps one example per kind for messages.

    Examples name data rows from 1, not counting a CSV's header line.
    """

    report: LoadReport
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, mask: np.ndarray, example: Callable[[int], str]) -> int:
        """Count the True rows of ``mask``; ``example(i)`` describes row position ``i``."""
        count = int(mask.sum())
        if count:
            self.report.add(kind, count)
            self.examples.setdefault(kind, example(int(np.flatnonzero(mask)[0])))
        return count

    def listing(self) -> list[str]:
        """One line per kind of problem seen: its count and an example."""
        return [
            f"  {kind}: {count} (e.g. {self.examples.get(kind, '?')})"
            for kind, count in sorted(self.report.rejected.items())
        ]

    def check(self, on_error: str, name: str) -> None:
        """Under on_error="fail", raise one DataError listing every kind of problem seen; under
        "skip", note that items counted as ``missing_image`` were kept (without image)."""
        missing = self.report.rejected.get("missing_image")
        if on_error != "fail" and missing:
            example = self.examples["missing_image"]
            self.report.notes.append(
                f"{missing:,} items have no image file (e.g. {example}); they stay in the "
                "catalogue, encoded without an image"
            )
        if on_error != "fail" or not self.report.rejected:
            return
        lines = [f"{name}: the input has problems (on_error='fail'; use 'skip' to drop them):"]
        raise DataError("\n".join(lines + self.listing()))


@dataclass
class Malformed:
    """Rows of one file skipped while reading it for a wrong number of fields."""

    name: str
    count: int = 0
    lines: list[int] = field(default_factory=list)  # the first MAX_LINES_KEPT
    example: str = ""

    def add(self, line: int | None, why: str) -> None:
        self.count += 1
        if line is not None and len(self.lines) < MAX_LINES_KEPT:
            self.lines.append(int(line))
        if not self.example:
            where = self.name if line is None else f"line {line} of {self.name}"
            self.example = f"{where}: {why}"

    def report(self, problems: Problems) -> None:
        if self.count:
            problems.report.add_malformed(self.name, self.lines, self.count)
            problems.examples.setdefault("malformed_row", self.example)


# ----------------------------------------------------------------------------------------------
# file helpers


def _require_file(path: Path, what: str = "file") -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def _columns_of(path: Path) -> list[str]:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: expected a header line naming its columns") from None
    except Exception as err:
        raise DataError(f"could not read {path}: {err}") from err


def _require_columns(path: Path, needed: list[str]) -> None:
    columns = _columns_of(path)
    missing = [c for c in dict.fromkeys(needed) if c not in columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        word = "column" if len(missing) == 1 else "columns"
        raise DataError(f"{path} has no {word} {names} (columns: {', '.join(columns)})")


def _read_table(
    path: Path,
    problems: Problems,
    strings: list[str] | tuple[str, ...] = (),
    floats: list[str] | tuple[str, ...] = (),
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV or Parquet file that must have rows; CSV ``strings`` / ``floats`` columns are
    read as str / float64, the others by type inference.

    CSV rows with the wrong number of fields are skipped and counted as ``malformed_row``.
    """
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path, columns=columns)
        else:
            frame = _read_csv(path, problems, strings, floats, columns)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"could not read {path}: {err}") from err
    if not len(frame):
        _no_rows(path, problems)
    return frame


def _read_csv(path: Path, problems: Problems, strings, floats, columns) -> pd.DataFrame:
    """pyarrow's CSV reader on one thread, so that each malformed row comes with its line number
    (the header is line 1; quoted newlines inside a value do not count)."""
    bad = Malformed(path.name)

    def skip(row: pa_csv.InvalidRow) -> str:
        bad.add(row.number, f"{row.actual_columns} fields instead of {row.expected_columns}")
        return "skip"

    types = {c: pa.string() for c in strings} | {c: pa.float64() for c in floats}
    table = pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(use_threads=False),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
        convert_options=pa_csv.ConvertOptions(
            column_types=types, strings_can_be_null=True, include_columns=columns
        ),
    )
    bad.report(problems)
    return table.rename_columns(_numbered_repeats(table.column_names)).to_pandas()


def _numbered_repeats(names: list[str]) -> list[str]:
    """Column names with repeats numbered as pandas does: a, a.1, a.2 (the first one is used)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        out.append(f"{name}.{seen[name]}" if name in seen else name)
        seen[name] = seen.get(name, 0) + 1
    return out


def _no_rows(
    path: Path, problems: Problems, need: str = "a header line and at least one row"
) -> None:
    """The DataError for a file without (well-formed) rows."""
    skipped = problems.report.malformed_lines.get(path.name)
    why = (
        f" (its rows at lines {_lines(skipped)} have the wrong number of fields)" if skipped else ""
    )
    raise DataError(f"{path} has no rows{why}: it needs {need}")


def _lines(lines: list[int], shown: int = 5) -> str:
    more = ", ..." if len(lines) > shown else ""
    return ", ".join(map(str, lines[:shown])) + more


def _is_blank(values: pd.Series) -> np.ndarray:
    """True where an id is missing or empty."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # by code: one check per distinct value
        empty = _is_blank(pd.Series(values.cat.categories)).astype(bool)
        return np.append(empty, True)[values.cat.codes.to_numpy()]
    blank = values.isna().to_numpy().copy()
    if pd.api.types.is_string_dtype(values.dtype):
        blank |= (values.astype("str").str.len() == 0).to_numpy(dtype=bool, na_value=True)
    return blank


def _value_kind(values: pd.Series) -> str | None:
    """The kind of values of a column that cannot be ids or times: "bool", "list" or "struct"
    (Parquet list, map and struct columns read as Python objects); None for any other."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return "bool"
    if values.dtype != object:
        return None
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred == "boolean":
        return "bool"
    if inferred not in ("mixed", "unknown-array"):
        return None
    kinds = {type(value) for value in values if value is not None}
    if any(issubclass(kind, (list, tuple, np.ndarray)) for kind in kinds):
        return "list"
    return "struct" if any(issubclass(kind, dict) for kind in kinds) else None


def _refuse_odd_column(values: pd.Series, path: Path, role: str, column: str, odd: tuple) -> None:
    """DataError when column ``column`` (the ``role`` column) holds values of an ``odd`` kind."""
    kind = _value_kind(values)
    if kind in odd:
        need = "numbers, dates or date strings" if role == "time" else "strings or integers"
        raise DataError(
            f"{path.name}: {role} column {column!r} holds {kind} values (dtype {values.dtype}); "
            f"a {role} column needs {need}"
        )


def _as_id_strings(values: pd.Series) -> pd.Series:
    """Ids as str; missing stays missing (ints in Parquet become '12', not '12.0')."""
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.dropna()
        if (np.abs(whole) < 2**53).all() and (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    out = values.astype("str")
    out[values.isna().to_numpy()] = np.nan
    return out


def _existing_files(paths: pd.Series) -> np.ndarray:
    """True where the file exists; lists each parent directory once instead of one stat per file."""
    exists = np.zeros(len(paths), dtype=bool)
    known = paths.notna().to_numpy()
    if not known.any():
        return exists
    present: set[str] = set()
    folders = paths[known].astype("str").str.rpartition(os.sep)[0]
    for folder in pd.unique(folders):
        try:
            with os.scandir(folder or ".") as entries:
                present.update(os.path.join(folder, e.name) for e in entries if e.is_file())
        except OSError:
            continue
    exists[known] = paths[known].isin(present).to_numpy()
    return exists


def _order_ids(ids: pd.Series) -> pd.Series:
    """Unique ids in numeric order when they are all integers, else in order of first appearance."""
    unique = pd.Series(pd.unique(ids), dtype=object)
    if len(unique) and unique.str.fullmatch(r"\d+").all():
        order = np.argsort(unique.astype(np.int64).to_numpy(), kind="stable")
        unique = unique.iloc[order]
    return unique.reset_index(drop=True).astype("str")


# ----------------------------------------------------------------------------------------------
# timestamps


def _datetime_to_int(values: pd.Series, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """datetime64 series -> (int64 count of ``unit`` since 1970-01-01, bad mask)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = values.isna().to_numpy()
    out = values.to_numpy().astype(f"datetime64[{unit}]").astype(np.int64)
    out[bad] = 0
    return out, bad


def _numbers_to_int(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.abs(numbers) < 2.0**62)  # also NaN and infinities: not an int64 time
    out = np.floor(np.where(bad, 0.0, numbers)).astype(np.int64)
    return out, bad


def _parse_dates(values: pd.Series, strict_iso: bool) -> pd.Series:
    """Strings -> UTC datetimes, NaT where unparseable. "auto" tries ISO 8601 then pandas' guess."""
    iso = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    if strict_iso or iso.notna().sum() == values.notna().sum():
        return iso
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
        guessed = pd.to_datetime(values, errors="coerce", utc=True)
    return guessed if guessed.notna().sum() > iso.notna().sum() else iso


def parse_time(values: pd.Series, time_format: str) -> tuple[np.ndarray, np.ndarray]:
    """A time column -> (int64 timestamps, bad mask); seconds for unix/iso/auto, as-is for order.

    "auto": datetime columns and date strings are parsed by pandas, integers are unix seconds.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _datetime_to_int(values, "s")
    if time_format in ("unix", "order"):
        return _numbers_to_int(values)
    if time_format == "auto":
        if pd.api.types.is_numeric_dtype(values.dtype):
            return _numbers_to_int(values)
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() == values.notna().sum() and values.notna().any():
            return _numbers_to_int(numbers)
    return _datetime_to_int(_parse_dates(values.astype("str"), time_format == "iso"), "s")


# ----------------------------------------------------------------------------------------------
# shared cleaning


def _clean_items(
    frame: pd.DataFrame, id_column: str, path: Path, problems: Problems
) -> pd.DataFrame:
    """Drop items with an empty or repeated id (keep the first); ``item_id`` becomes column 0."""
    if id_column != "item_id" and "item_id" in frame.columns:
        raise DataError(
            f"{path} has a column 'item_id' that is not the id column {id_column!r}; rename it"
        )
    _refuse_odd_column(frame[id_column], path, "item", id_column, ("list", "struct"))
    ids = _as_id_strings(frame[id_column])

    def example(i: int) -> str:
        return f"row {i + 1} of {path.name}: {id_column}={ids.iloc[i]!r}"

    blank = _is_blank(ids)
    problems.add("missing_user_or_item", blank, example)
    repeated = ids.duplicated().to_numpy() & ~blank
    problems.add("duplicate_item", repeated, example)
    keep = ~(blank | repeated)
    items = frame.loc[keep].drop(columns=[id_column])
    items.insert(0, "item_id", ids[keep].to_numpy())
    return items.reset_index(drop=True)


@dataclass
class RawInteractions:
    """Interaction rows as read from one file, before any check."""

    frame: pd.DataFrame
    path: Path
    columns: tuple[str, str, str | None]  # the (user, item, time) columns of ``frame``
    timestamps: np.ndarray  # [R] int64 per row (meaningless where ``bad_time``)
    bad_time: np.ndarray  # [R] bool: a time that could not be read


def _clean_interactions(
    raw: RawInteractions,
    item_ids: pd.Series,
    problems: Problems,
    items_path: Path | None,
    drop_duplicates: bool,
    carry: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, int]:
    """Validate raw interaction rows and map them onto item indices.

    Each row is counted under the first problem it has, in this order: missing_user_or_item,
    bad_timestamp, unknown_item (only when ``items_path`` is set), duplicate_row (an exact
    repeat of all columns of ``raw.frame``; only counted and dropped when ``drop_duplicates``).
    Returns the sorted interactions, with the ``carry`` columns of ``raw.frame`` appended, and
    the number of exact repeats seen. ``raw.frame`` keeps only the user and ``carry`` columns,
    so that a caller who passed its only reference frees the others.
    """
    frame, path, bad_time = raw.frame, raw.path, raw.bad_time
    user_column, item_column, time_column = raw.columns
    users, items = frame[user_column], frame[item_column]

    def describe(column: str | None, why: str = ""):
        if column is None:
            return lambda i: f"row {i + 1} of {path.name}{why}"
        return lambda i: f"row {i + 1} of {path.name}: {column}={raw.frame[column].iloc[i]!r}{why}"

    keep = ~(_is_blank(users) | _is_blank(items))
    problems.add("missing_user_or_item", ~keep, describe(None, " has an empty id"))
    problems.add("bad_timestamp", bad_time & keep, describe(time_column))
    keep &= ~bad_time

    item_idx = item_rows(items, item_ids)
    unknown = (item_idx < 0) & keep
    if items_path is not None:
        problems.add(
            "unknown_item", unknown, describe(item_column, f" is not in {items_path.name}")
        )
    keep &= ~unknown

    repeats = _exact_repeats(frame) & keep
    if drop_duplicates:
        problems.add("duplicate_row", repeats, describe(None, " repeats an earlier row"))
        keep &= ~repeats
    if not keep.any():
        lines = [f"no interaction of {path.name} is left once its bad rows are dropped:"]
        raise DataError("\n".join(lines + problems.listing()))
    raw.frame = frame[[user_column, *carry]]  # what the table needs; the rest can be freed
    del frame, users, items
    table = sorted_table(raw.frame, raw.timestamps, keep, item_idx)
    return table, int(repeats.sum())


def _exact_repeats(frame: pd.DataFrame) -> np.ndarray:
    """True where a row repeats an earlier one in every column (list or struct values compared
    by their text, as they cannot be hashed). Only rows whose id codes repeat are compared."""
    candidates = repeat_candidates(frame)
    if candidates is not None:
        repeats = np.zeros(len(frame), dtype=bool)
        repeats[candidates] = _exact_repeats_of(frame[candidates])
        return repeats
    return _exact_repeats_of(frame)


def _exact_repeats_of(frame: pd.DataFrame) -> np.ndarray:
    odd = [c for c in frame.columns if _value_kind(frame[c]) in ("list", "struct")]
    if odd:
        frame = frame.assign(**{c: frame[c].astype("str") for c in odd})
    return frame.duplicated().to_numpy()


def _check_text_columns(items: pd.DataFrame, columns: list[str], path: Path | str) -> None:
    missing = [c for c in columns if c not in items.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise DataError(
            f"{path} has no text column {names} (columns: {', '.join(map(str, items.columns))})"
        )
