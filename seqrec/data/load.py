"""Loaders that turn files on disk into a `Dataset`.

Three layouts are read:

- ``hm``: the H&M Kaggle download (``articles.csv``, ``transactions_train.csv``, optional
  ``customers.csv`` and ``images/<first 3 digits>/<article_id>.jpg``). Timestamps are days since
  1970-01-01, so a customer's purchases of one day share a timestamp and form a basket.
- ``sasrec``: the SASRec/BERT4Rec text format, ``user item`` per line in time order, with an
  optional ``items.csv`` beside it (ML-1M: ``item_id, movielens_id, title, genres``).
- ``generic``: any CSV/Parquet pair described by a ``seqrec.toml`` that maps columns to roles.

Every loader validates its input the same way. A missing file or column is always fatal. Bad rows
are counted in ``report.rejected`` under fixed keys (``missing_user_or_item``, ``bad_timestamp``,
``unknown_item``, ``duplicate_row``, ``duplicate_item``, ``missing_image``); with
``on_error="skip"`` they are dropped (an item whose image is missing is kept, without image), with
``on_error="fail"`` a `DataError` lists every count with an example.

Everything is vectorised pandas/numpy so the full H&M data (31M transactions) loads unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport, sort_interactions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

try:
    import pyarrow  # noqa: F401

    CSV_ENGINE = "pyarrow"
except ImportError:
    CSV_ENGINE = "c"

FORMATS = ("hm", "sasrec", "generic")
ON_ERROR = ("skip", "fail")
TIME_FORMATS = ("auto", "unix", "iso", "order")

HM_TEXT_COLUMNS = [
    "prod_name",
    "product_type_name",
    "colour_group_name",
    "graphical_appearance_name",
    "section_name",
    "garment_group_name",
    "detail_desc",
]
HM_CATEGORY_COLUMNS = [
    "product_type_name",
    "product_group_name",
    "colour_group_name",
    "graphical_appearance_name",
    "department_name",
    "index_name",
    "section_name",
    "garment_group_name",
]
HM_TRANSACTION_COLUMNS = ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]

# ----------------------------------------------------------------------------------------------
# entry points


def detect_format(path: str | Path) -> str:
    """Guess the layout of ``path``: "hm", "sasrec" or "generic" (DataError when unsure)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_file():
        if path.suffix == ".toml":
            return "generic"
        if path.suffix == ".txt":
            return "sasrec"
        raise DataError(
            f"cannot tell the format of {path}: expected a directory, a .toml file (generic) "
            "or a .txt interactions file (sasrec)"
        )
    if (path / "articles.csv").is_file() and (path / "transactions_train.csv").is_file():
        return "hm"
    if (path / "seqrec.toml").is_file():
        return "generic"
    texts = sorted(p.name for p in path.glob("*.txt") if p.is_file())
    if len(texts) == 1:
        return "sasrec"
    found = f" (found {len(texts)} .txt files: {', '.join(texts)})" if texts else ""
    raise DataError(
        f"cannot tell the format of {path}: looked for articles.csv + transactions_train.csv "
        f"(hm), seqrec.toml (generic) and exactly one *.txt interactions file (sasrec){found}"
    )


def load_dataset(
    path: str | Path,
    format: str | None = None,
    on_error: str = "skip",
    text_columns: list[str] | None = None,
) -> Dataset:
    """Load a dataset in any supported layout; ``format=None`` detects it from the files."""
    if format is None:
        format = detect_format(path)
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if on_error not in ON_ERROR:
        raise DataError(f"unknown on_error {on_error!r}; choose one of {', '.join(ON_ERROR)}")
    if format == "hm":
        return load_hm(path, on_error=on_error, text_columns=text_columns)
    if format == "sasrec":
        return load_sasrec(path, on_error=on_error, text_columns=text_columns)
    return load_generic(path, on_error=on_error, text_columns=text_columns)


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
        for kind, count in sorted(self.report.rejected.items()):
            lines.append(f"  {kind}: {count} (e.g. {self.examples.get(kind, '?')})")
        raise DataError("\n".join(lines))


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
    except Exception as err:
        raise DataError(f"could not read {path}: {err}") from err


def _require_columns(path: Path, needed: list[str]) -> None:
    columns = _columns_of(path)
    missing = [c for c in dict.fromkeys(needed) if c not in columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        word = "column" if len(missing) == 1 else "columns"
        raise DataError(f"{path} has no {word} {names} (columns: {', '.join(columns)})")


def _read_table(path: Path, dtype=None, fast: bool = False) -> pd.DataFrame:
    """Read a CSV or Parquet file. ``fast`` uses the pyarrow CSV engine (no newlines in values)."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        engine = CSV_ENGINE if fast else "c"
        return pd.read_csv(path, dtype=dtype, engine=engine)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"could not read {path}: {err}") from err


def _is_blank(values: pd.Series) -> np.ndarray:
    """True where an id is missing or empty."""
    blank = values.isna().to_numpy().copy()
    if pd.api.types.is_string_dtype(values.dtype):
        blank |= (values.astype("str").str.len() == 0).to_numpy(dtype=bool, na_value=True)
    return blank


def _as_id_strings(values: pd.Series) -> pd.Series:
    """Ids as str; missing stays missing (ints in Parquet become '12', not '12.0')."""
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
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
    bad = ~np.isfinite(numbers)
    out = np.floor(np.where(bad, 0.0, numbers)).astype(np.int64)
    return out, bad


def _parse_dates(values: pd.Series, strict_iso: bool) -> pd.Series:
    """Strings -> UTC datetimes, NaT where unparseable. "auto" tries ISO 8601 then pandas' guess."""
    iso = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    if strict_iso or iso.notna().sum() == values.notna().sum():
        return iso
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


def _clean_interactions(
    frame: pd.DataFrame,
    path: Path,
    columns: tuple[str, str, str | None],
    timestamps: np.ndarray,
    bad_time: np.ndarray,
    item_ids: pd.Series,
    problems: Problems,
    items_path: Path | None,
    drop_duplicates: bool,
    carry: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, int]:
    """Validate raw interaction rows and map them onto item indices.

    ``columns`` names the (user, item, time) columns of ``frame``. Each row is counted under the
    first problem it has, in this order: missing_user_or_item, bad_timestamp, unknown_item (only
    when ``items_path`` is set), duplicate_row (an exact repeat of all columns of ``frame``; only
    counted and dropped when ``drop_duplicates``). Returns the sorted interactions, with the
    ``carry`` columns of ``frame`` appended, and the number of exact repeats seen.
    """
    user_column, item_column, time_column = columns
    users, items = frame[user_column], frame[item_column]

    def describe(column: str | None, why: str = ""):
        if column is None:
            return lambda i: f"row {i + 1} of {path.name}{why}"
        return lambda i: f"row {i + 1} of {path.name}: {column}={frame[column].iloc[i]!r}{why}"

    keep = ~(_is_blank(users) | _is_blank(items))
    problems.add("missing_user_or_item", ~keep, describe(None, " has an empty id"))
    problems.add("bad_timestamp", bad_time & keep, describe(time_column))
    keep &= ~bad_time

    item_idx = pd.Index(item_ids).get_indexer(items)
    unknown = (item_idx < 0) & keep
    if items_path is not None:
        problems.add(
            "unknown_item", unknown, describe(item_column, f" is not in {items_path.name}")
        )
    keep &= ~unknown

    repeats = frame.duplicated().to_numpy() & keep
    if drop_duplicates:
        problems.add("duplicate_row", repeats, describe(None, " repeats an earlier row"))
        keep &= ~repeats

    interactions = pd.DataFrame(
        {
            "user_id": users[keep].astype("str").reset_index(drop=True),
            "item_idx": item_idx[keep].astype(np.int64),
            "timestamp": timestamps[keep].astype(np.int64),
        }
    )
    for column in carry:
        interactions[column] = frame[column].to_numpy()[keep]
    return sort_interactions(interactions), int(repeats.sum())


def _check_text_columns(items: pd.DataFrame, columns: list[str], path: Path | str) -> None:
    missing = [c for c in columns if c not in items.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise DataError(
            f"{path} has no text column {names} (columns: {', '.join(map(str, items.columns))})"
        )


# ----------------------------------------------------------------------------------------------
# hm


def _hm_image_paths(directory: Path, article_ids: pd.Series) -> pd.Series:
    """Absolute image paths ``images/<first 3 digits>/<id>.jpg``; None where the file is absent."""
    images = (directory / "images").resolve()
    expected = str(images) + os.sep + article_ids.str[:3] + os.sep + article_ids + ".jpg"
    expected = expected.astype(object)
    found = _existing_files(expected)
    return pd.Series(np.where(found, expected.to_numpy(), None), dtype=object)


def load_hm(
    path: str | Path, on_error: str = "skip", text_columns: list[str] | None = None
) -> Dataset:
    """Read the H&M Kaggle layout (a directory) into a Dataset with day timestamps."""
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"the hm format needs a directory, got {directory}")
    report = LoadReport(format="hm")
    problems = Problems(report)
    text_columns = list(text_columns) if text_columns else list(HM_TEXT_COLUMNS)

    articles_path = _require_file(directory / "articles.csv")
    tx_path = _require_file(directory / "transactions_train.csv")
    _require_columns(
        articles_path, ["article_id", "prod_name", *text_columns, *HM_CATEGORY_COLUMNS]
    )
    _require_columns(tx_path, HM_TRANSACTION_COLUMNS)

    dtype = {"article_id": str} | {c: str for c in [*text_columns, *HM_CATEGORY_COLUMNS]}
    articles = _read_table(articles_path, dtype=dtype)
    items = _clean_items(articles, "article_id", articles_path, problems)
    image_paths = _hm_image_paths(directory, items["item_id"])
    items["image_path"] = image_paths
    absent = image_paths.isna().to_numpy()
    problems.add("missing_image", absent, lambda i: f"no image for article {items.item_id[i]}")
    if not (directory / "images").is_dir():
        report.notes.append(f"no images directory at {directory / 'images'}")

    dtype = {
        "t_dat": str,
        "customer_id": str,
        "article_id": str,
        "price": "float64",
        "sales_channel_id": str,
    }
    tx = _read_table(tx_path, dtype=dtype, fast=True)[HM_TRANSACTION_COLUMNS]
    dates = pd.to_datetime(tx["t_dat"], format="%Y-%m-%d", errors="coerce")
    days, bad_time = _datetime_to_int(dates, "D")
    interactions, n_repeats = _clean_interactions(
        tx,
        tx_path,
        ("customer_id", "article_id", "t_dat"),
        days,
        bad_time,
        items["item_id"],
        problems,
        items_path=articles_path,
        drop_duplicates=False,
        carry=("price",),
    )
    if n_repeats:
        report.notes.append(
            f"{n_repeats} rows of {tx_path.name} repeat an earlier row exactly "
            "(multi-unit purchases); kept"
        )

    # Median price over the purchases kept; NaN for articles nobody bought.
    price = interactions.groupby("item_idx")["price"].median()
    items["price"] = price.reindex(np.arange(len(items))).to_numpy(dtype=np.float64)
    interactions = interactions.drop(columns=["price"])

    customers_path = directory / "customers.csv"
    if customers_path.is_file():
        _require_columns(customers_path, ["customer_id"])
        customers = pd.read_csv(customers_path, usecols=["customer_id"], dtype=str)
        report.notes.append(f"{customers_path.name} lists {len(customers)} customers")

    problems.check(on_error, directory.name)
    schema = ItemSchema(
        text_columns=text_columns,
        category_columns=list(HM_CATEGORY_COLUMNS),
        numeric_columns=["price"],
        image_column="image_path",
        title_column="prod_name",
        price_column="price",
    )
    return Dataset(
        name=directory.resolve().name,
        items=items,
        interactions=interactions,
        schema=schema,
        report=report,
        time_unit="day",
    )


# ----------------------------------------------------------------------------------------------
# sasrec


def _sasrec_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path} does not exist")
    texts = sorted(p for p in path.glob("*.txt") if p.is_file())
    if len(texts) != 1:
        raise DataError(
            f"the sasrec format needs exactly one *.txt interactions file in {path}, "
            f"found {len(texts)}"
        )
    return texts[0]


def load_sasrec(
    path: str | Path, on_error: str = "skip", text_columns: list[str] | None = None
) -> Dataset:
    """Read ``user item`` lines (time order = line order) and an optional ``items.csv`` beside."""
    txt_path = _sasrec_file(Path(path))
    report = LoadReport(format="sasrec")
    problems = Problems(report)
    try:
        raw = pd.read_csv(
            txt_path,
            sep=r"\s+",
            header=None,
            names=["user", "item"],
            dtype=str,
            skip_blank_lines=True,
        )
    except Exception as err:
        raise DataError(f"could not read {txt_path} as 'user item' lines: {err}") from err

    items_path = txt_path.parent / "items.csv"
    if items_path.is_file():
        _require_columns(items_path, ["item_id"])
        items = _clean_items(
            _read_table(items_path, dtype={"item_id": str}), "item_id", items_path, problems
        )
        if "genres" in items.columns:
            items["genres_text"] = items["genres"].str.replace("|", " ", regex=False)
        default_text = [c for c in ("title", "genres_text") if c in items.columns]
    else:
        if text_columns:
            raise DataError(f"text columns given but there is no items.csv beside {txt_path}")
        items = pd.DataFrame({"item_id": pd.Series([], dtype="str")})
        default_text = []

    # Catalogue = items.csv ids plus any id seen in the interactions.
    seen = raw["item"][~_is_blank(raw["item"])]
    extra = seen[~seen.isin(set(items["item_id"]))]
    if len(extra):
        extra_ids = _order_ids(extra)
        if items_path.is_file():
            report.notes.append(
                f"{len(extra_ids)} item ids of {txt_path.name} are not in {items_path.name}; "
                "added without content"
            )
        extra_items = pd.DataFrame({"item_id": extra_ids.to_numpy()})
        items = pd.concat([items, extra_items], ignore_index=True) if len(items) else extra_items
    items["item_id"] = items["item_id"].astype("str")

    text_columns = list(text_columns) if text_columns else default_text
    _check_text_columns(items, text_columns, items_path)

    line = np.arange(len(raw), dtype=np.int64)
    interactions, _ = _clean_interactions(
        raw,
        txt_path,
        ("user", "item", None),
        line,
        np.zeros(len(raw), dtype=bool),
        items["item_id"],
        problems,
        items_path=None,
        drop_duplicates=True,
    )
    # Timestamp = position of the line among the user's (kept) lines: 0, 1, 2...
    position = interactions.groupby("user_id", sort=False).cumcount()
    interactions["timestamp"] = position.to_numpy(dtype=np.int64)

    problems.check(on_error, txt_path.name)
    schema = ItemSchema(
        text_columns=text_columns,
        title_column="title" if "title" in items.columns else None,
    )
    return Dataset(
        name=txt_path.stem,
        items=items,
        interactions=interactions,
        schema=schema,
        report=report,
        time_unit="order",
    )


# ----------------------------------------------------------------------------------------------
# generic


@dataclass
class InteractionsConfig:
    """[interactions] of seqrec.toml."""

    path: str = ""
    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None  # None = file order
    time_format: str = "auto"  # "auto", "unix", "iso" or "order"


@dataclass
class ItemsConfig:
    """[items] of seqrec.toml."""

    path: str = ""
    id: str = "item_id"
    text: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    image: str | None = None  # column of image paths, relative to images_dir or absolute
    images_dir: str | None = None  # relative to the TOML's folder
    title: str | None = None
    price: str | None = None


@dataclass
class GenericConfig:
    """A parsed seqrec.toml; paths are resolved against ``root`` (the TOML's folder)."""

    root: Path
    interactions: InteractionsConfig
    items: ItemsConfig | None = None


def _config_section(table: object, cls: type, section: str, toml_path: Path):
    """Build a config dataclass from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(table, dict):
        raise DataError(f"{toml_path}: [{section}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise DataError(
                f"{toml_path}: unknown key {section}.{key} (known keys: {', '.join(known)})"
            )
        default = getattr(cls(), key)
        if isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            want = "a list of strings"
        else:
            ok = isinstance(value, str)
            want = "a string"
        if not ok:
            raise DataError(
                f"{toml_path}: key {section}.{key} must be {want}, got {type(value).__name__}"
            )
        values[key] = value
    if not values.get("path"):
        raise DataError(f"{toml_path}: key {section}.path is required")
    return cls(**values)


def read_config(path: str | Path) -> GenericConfig:
    """Parse a seqrec.toml (or the seqrec.toml inside a directory)."""
    toml_path = Path(path)
    if toml_path.is_dir():
        toml_path = toml_path / "seqrec.toml"
    _require_file(toml_path, "config")
    try:
        with open(toml_path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise DataError(f"{toml_path} is not valid TOML: {err}") from err
    unknown = [key for key in raw if key not in ("interactions", "items")]
    if unknown:
        raise DataError(
            f"{toml_path}: unknown key {unknown[0]!r} (known tables: interactions, items)"
        )
    if "interactions" not in raw:
        raise DataError(f"{toml_path}: the [interactions] table is required")
    inter = _config_section(raw["interactions"], InteractionsConfig, "interactions", toml_path)
    if inter.time_format not in TIME_FORMATS:
        raise DataError(
            f"{toml_path}: key interactions.time_format must be one of {', '.join(TIME_FORMATS)}, "
            f"got {inter.time_format!r}"
        )
    items = None
    if "items" in raw:
        items = _config_section(raw["items"], ItemsConfig, "items", toml_path)
    return GenericConfig(root=toml_path.parent.resolve(), interactions=inter, items=items)


def _load_generic_items(
    config: ItemsConfig, root: Path, text_columns: list[str] | None, problems: Problems
) -> tuple[pd.DataFrame, ItemSchema, Path]:
    items_path = _require_file(root / config.path, "items file")
    text = list(text_columns) if text_columns else list(config.text)
    roles = [*text, *config.category, *config.numeric]
    roles += [c for c in (config.image, config.title, config.price) if c]
    _require_columns(items_path, [config.id, *roles])
    dtype = {config.id: str} | {c: str for c in [*text, *config.category]}
    items = _clean_items(_read_table(items_path, dtype=dtype), config.id, items_path, problems)

    for column in dict.fromkeys([*config.numeric, *([config.price] if config.price else [])]):
        numbers = pd.to_numeric(items[column], errors="coerce")
        lost = int((numbers.isna() & items[column].notna()).sum())
        if lost:
            problems.report.notes.append(
                f"{lost} values of {items_path.name} column {column!r} are not numbers; "
                "read as missing"
            )
        items[column] = numbers.astype(np.float64)

    image_column = None
    if config.image:
        base = (root / config.images_dir) if config.images_dir else root
        listed = items[config.image].astype("str")
        relative = ~listed.str.startswith(os.sep).fillna(True).to_numpy(dtype=bool)
        full = listed.where(~relative, str(base.resolve()) + os.sep + listed)
        full = full.where(~_is_blank(items[config.image]), None)
        found = _existing_files(full)
        absent = full.notna().to_numpy() & ~found
        problems.add(
            "missing_image", absent, lambda i: f"{items_path.name}: no file {full.iloc[i]}"
        )
        items["image_path"] = pd.Series(np.where(found, full.to_numpy(), None), dtype=object)
        image_column = "image_path"

    schema = ItemSchema(
        text_columns=text,
        category_columns=list(config.category),
        numeric_columns=list(config.numeric),
        image_column=image_column,
        title_column=config.title,
        price_column=config.price,
    )
    return items, schema, items_path


def load_generic(
    path: str | Path, on_error: str = "skip", text_columns: list[str] | None = None
) -> Dataset:
    """Read the CSV/Parquet files described by a seqrec.toml (the file or its directory)."""
    config = read_config(path)
    report = LoadReport(format="generic")
    problems = Problems(report)

    items_path = None
    if config.items is not None:
        items, schema, items_path = _load_generic_items(
            config.items, config.root, text_columns, problems
        )
    elif text_columns:
        raise DataError(f"text columns given but {path} has no [items] table")

    spec = config.interactions
    inter_path = _require_file(config.root / spec.path, "interactions file")
    needed = [spec.user, spec.item, *([spec.time] if spec.time else [])]
    _require_columns(inter_path, needed)
    dtype = {spec.user: str, spec.item: str}
    if spec.time and spec.time_format in ("auto", "iso"):
        dtype[spec.time] = str
    frame = _read_table(inter_path, dtype=dtype, fast=True)
    frame[spec.user] = _as_id_strings(frame[spec.user])
    frame[spec.item] = _as_id_strings(frame[spec.item])
    if spec.time:
        timestamps, bad_time = parse_time(frame[spec.time], spec.time_format)
        time_unit = "order" if spec.time_format == "order" else "second"
    else:
        timestamps, bad_time = np.arange(len(frame), dtype=np.int64), np.zeros(len(frame), bool)
        time_unit = "order"

    if config.items is None:
        seen = frame[spec.item][~_is_blank(frame[spec.item])]
        items = pd.DataFrame({"item_id": _order_ids(seen).to_numpy()})
        schema = ItemSchema()

    interactions, _ = _clean_interactions(
        frame,
        inter_path,
        (spec.user, spec.item, spec.time),
        timestamps,
        bad_time,
        items["item_id"],
        problems,
        items_path=items_path,
        drop_duplicates=True,
    )

    problems.check(on_error, config.root.name)
    return Dataset(
        name=config.root.name,
        items=items,
        interactions=interactions,
        schema=schema,
        report=report,
        time_unit=time_unit,
    )
