"""Loaders that turn files on disk into a `Dataset`.

Three layouts are read:

- ``hm``: the H&M Kaggle download (``articles.csv``, ``transactions_train.csv``, optional
  ``customers.csv`` and ``images/<first 3 digits>/<article_id>.jpg``). Timestamps are days since
  1970-01-01, so a customer's purchases of one day share a timestamp and form a basket.
- ``sasrec``: the SASRec/BERT4Rec text format, ``user item`` per line in time order, with an
  optional ``items.csv`` beside it (ML-1M: ``item_id, movielens_id, title, genres``).
- ``generic``: any CSV/Parquet pair described by a ``seqrec.toml`` that maps columns to roles.

Every loader validates its input the same way. A missing file or column is always fatal. Bad rows
are counted in ``report.rejected`` under fixed keys (``malformed_row``, ``missing_user_or_item``,
``bad_timestamp``, ``unknown_item``, ``duplicate_row``, ``duplicate_item``, ``missing_image``);
with ``on_error="skip"`` they are dropped (an item whose image is missing is kept, without image),
with ``on_error="fail"`` a `DataError` lists every count with an example. A malformed row (a CSV or
text line with the wrong number of fields) is skipped while reading; its line number is kept in
``report.malformed_lines``. A file without rows, an id or time column of a type that cannot be one
(lists, structs; booleans as time) and a file where no interaction is left are always errors.

Everything is vectorised pandas/numpy so the full H&M data (31M transactions) loads unchanged;
its transactions file is streamed into integer codes per id (`seqrec.data.formats.lean`), so
that a 64-character customer id costs four bytes a row (`benchmarks/results/scale_load.md`).
Each layout has its module in `seqrec.data.formats`; what they share is in its ``common``.
"""

from __future__ import annotations

from pathlib import Path

from seqrec.data.dataset import DataError, Dataset
from seqrec.data.formats.common import parse_time
from seqrec.data.formats.generic import (
    TIME_FORMATS,
    GenericConfig,
    InteractionsConfig,
    ItemsConfig,
    load_generic,
    read_config,
)
from seqrec.data.formats.hm import (
    HM_CATEGORY_COLUMNS,
    HM_TEXT_COLUMNS,
    HM_TRANSACTION_COLUMNS,
    load_hm,
)
from seqrec.data.formats.sasrec import load_sasrec

__all__ = [
    "FORMATS",
    "HM_CATEGORY_COLUMNS",
    "HM_TEXT_COLUMNS",
    "HM_TRANSACTION_COLUMNS",
    "ON_ERROR",
    "TIME_FORMATS",
    "GenericConfig",
    "InteractionsConfig",
    "ItemsConfig",
    "detect_format",
    "load_dataset",
    "load_generic",
    "load_hm",
    "load_sasrec",
    "parse_time",
    "read_config",
]

FORMATS = ("hm", "sasrec", "generic")
ON_ERROR = ("skip", "fail")

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
