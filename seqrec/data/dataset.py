"""The in-memory dataset every other step reads.

A `Dataset` is two tables plus a description of the item columns:

- ``items``: one row per catalogue item, in item-index order (row ``i`` is item index ``i``).
  Always has ``item_id`` (str). Other columns are named by the `ItemSchema`: text fields,
  categorical fields, numeric fields (such as price) and an image path column. Items that
  nobody interacted with stay in the catalogue: they are recommendable from their content.
- ``interactions``: one row per event with ``user_id`` (a pandas categorical of str whose
  categories are the distinct ids in sorted order, so a row costs an integer code, not a
  string), ``item_idx`` (int64, a row of ``items``) and ``timestamp`` (int64). Timestamps
  only need to order a user's events; events sharing a user's timestamp form one basket (an
  H&M purchase day, say). Rows are sorted by (user_id, timestamp) and keep file order inside
  a basket.

Loaders (`seqrec.data.load`) build it from the H&M Kaggle layout, the SASRec text format or a
generic CSV/Parquet layout; `seqrec.data.demo` writes a synthetic shop in the generic layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Bad user input (missing file or column, rejected rows under --on-error fail).

    The CLI prints its message without a traceback.
    """


@dataclass
class ItemSchema:
    """Which item columns carry which kind of content."""

    text_columns: list[str] = field(default_factory=list)
    category_columns: list[str] = field(default_factory=list)
    numeric_columns: list[str] = field(default_factory=list)
    image_column: str | None = None  # absolute image paths; NaN/None where no image is known
    title_column: str | None = None  # a short display name, for tables and the demo shop page
    price_column: str | None = None
    # items sharing a value are variants of one product (H&M: product_code, one per colour)
    group_column: str | None = None


MAX_LINES_KEPT = 100  # line numbers of malformed rows kept per file (all are counted)


@dataclass
class LoadReport:
    """What a loader saw and what it rejected. Every count is a number of rows (or files).

    ``malformed_lines``: file name -> line numbers (the header is line 1) of its first rows
    that have the wrong number of fields, counted under ``rejected["malformed_row"]``.
    """

    format: str
    rejected: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    malformed_lines: dict[str, list[int]] = field(default_factory=dict)

    def add(self, kind: str, count: int) -> None:
        if count:
            self.rejected[kind] = self.rejected.get(kind, 0) + int(count)

    def add_malformed(self, name: str, lines: list[int], count: int) -> None:
        """Count ``count`` rows of file ``name`` skipped for a wrong number of fields; ``lines``:
        the line numbers of the first ones."""
        self.add("malformed_row", count)
        kept = self.malformed_lines.setdefault(name, [])
        kept.extend(lines[: MAX_LINES_KEPT - len(kept)])


@dataclass
class Dataset:
    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    schema: ItemSchema
    report: LoadReport
    time_unit: str = "order"  # "order" (SASRec line order), "day" or "second"

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy()

    def item_index(self) -> dict[str, int]:
        """item_id -> item index (row of ``items``)."""
        return {item_id: idx for idx, item_id in enumerate(self.items["item_id"])}

    def images_found(self) -> int:
        column = self.schema.image_column
        if column is None or column not in self.items:
            return 0
        return int(self.items[column].notna().sum())

    def stats(self) -> dict[str, object]:
        """Flat summary used by `seqrec data stats` (keys stay stable for scripts)."""
        inter = self.interactions
        out: dict[str, object] = {
            "format": self.report.format,
            "users": self.n_users,
            "items": self.n_items,
            "items_with_interactions": int(inter["item_idx"].nunique()),
            "interactions": len(inter),
            "images": self.images_found(),
        }
        if len(inter):
            first, last = int(inter["timestamp"].min()), int(inter["timestamp"].max())
            out["time_min"], out["time_max"] = (
                _format_time(first, self.time_unit),
                _format_time(last, self.time_unit),
            )
        for kind, count in sorted(self.report.rejected.items()):
            out[f"rejected_{kind}"] = count
        if self.report.malformed_lines:
            out["malformed_lines"] = {k: list(v) for k, v in self.report.malformed_lines.items()}
        return out


def _format_time(value: int, unit: str) -> str | int:
    """A timestamp as a date (day), a date and time (second) or as is; as is when out of range."""
    try:
        if unit == "day":
            return str(pd.Timestamp("1970-01-01") + pd.Timedelta(days=value))[:10]
        if unit == "second":
            return str(pd.Timestamp(value, unit="s"))
    except (OverflowError, ValueError):  # pandas' OutOfBoundsDatetime is a ValueError
        pass
    return value


def sort_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Sort by (user, timestamp) keeping file order inside ties; reset the index."""
    users = _sorted_codes(interactions["user_id"])  # ints sort far faster than strings
    order = sorted_order(users, interactions["timestamp"].to_numpy())
    return interactions.iloc[order].reset_index(drop=True)


def sorted_order(users: np.ndarray, times: np.ndarray) -> np.ndarray:
    """[R] the row order that sorts by (user code, time), keeping row order inside ties."""
    n = len(times)
    if not n:
        return np.zeros(0, dtype=np.int64)
    low, span = int(times.min()), int(times.max()) - int(times.min()) + 1
    if (int(users.max()) - min(int(users.min()), 0) + 1) * span >= 2**62 // n:
        return np.lexsort((np.arange(n), times, users))
    key = users.astype(np.int64)  # one distinct int64 key per row: (user, time, row)
    key -= min(int(users.min()), 0)
    key *= span
    key += times
    key -= low
    key *= n
    step = 1 << 20  # adding the row numbers a slice at a time needs no [R] temporary
    for start in range(0, n, step):
        key[start : start + step] += np.arange(start, min(start + step, n))
    key.sort()
    return np.remainder(key, n, out=key)


def user_codes(users: pd.Series) -> np.ndarray:
    """[R] integer codes, equal where the ids are (a categorical's own codes: no id strings
    are made)."""
    if isinstance(users.dtype, pd.CategoricalDtype):
        return users.cat.codes.to_numpy()
    return pd.factorize(users)[0]


def _sorted_codes(users: pd.Series) -> np.ndarray:
    """[R] integer codes that sort as the ids do (a categorical's own when its categories are
    sorted)."""
    if not isinstance(users.dtype, pd.CategoricalDtype):
        return pd.factorize(users, sort=True)[0]
    codes = users.cat.codes.to_numpy()
    categories = users.cat.categories
    if categories.is_monotonic_increasing:
        return codes
    rank = np.empty(len(categories) + 1, dtype=np.int64)  # a category's place in sorted order
    rank[np.argsort(categories.to_numpy(), kind="stable")] = np.arange(len(categories))
    rank[-1] = -1  # missing sorts first
    return rank[codes]
