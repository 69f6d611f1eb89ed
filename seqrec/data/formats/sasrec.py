"""The SASRec/BERT4Rec text format: ``user item`` per line in time order, with an optional
``items.csv`` beside it (ML-1M: ``item_id, movielens_id, title, genres``)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport
from seqrec.data.formats.common import (
    Malformed,
    Problems,
    RawInteractions,
    _check_text_columns,
    _clean_interactions,
    _clean_items,
    _is_blank,
    _no_rows,
    _order_ids,
    _read_table,
    _require_columns,
)


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


def _read_user_item_lines(path: Path, problems: Problems) -> pd.DataFrame:
    """``user item`` lines split on any whitespace. Lines with more fields are skipped as
    malformed: pandas' C reader (the fast one for this) reports each in a warning."""
    bad = Malformed(path.name)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            raw = pd.read_csv(
                path,
                sep=r"\s+",
                header=None,
                names=["user", "item"],
                dtype=str,
                skip_blank_lines=True,
                on_bad_lines="warn",
            )
    except pd.errors.EmptyDataError:
        _no_rows(path, problems, "at least one 'user item' line")
    except Exception as err:
        raise DataError(f"could not read {path} as 'user item' lines: {err}") from err
    for warning in caught:
        if not issubclass(warning.category, pd.errors.ParserWarning):
            warnings.warn(warning.message, warning.category, stacklevel=2)
            continue
        found = re.findall(r"line (\d+): expected \d+ fields, saw (\d+)", str(warning.message))
        for line, count in found:
            bad.add(int(line), f"{count} fields instead of 2")
        if not found:
            bad.add(None, str(warning.message).strip())
    bad.report(problems)
    if not len(raw):
        _no_rows(path, problems, "at least one 'user item' line")
    return raw


def load_sasrec(
    path: str | Path, on_error: str = "skip", text_columns: list[str] | None = None
) -> Dataset:
    """Read ``user item`` lines (time order = line order) and an optional ``items.csv`` beside."""
    txt_path = _sasrec_file(Path(path))
    report = LoadReport(format="sasrec")
    problems = Problems(report)
    raw = _read_user_item_lines(txt_path, problems)

    items_path = txt_path.parent / "items.csv"
    items, default_text = _sasrec_items(txt_path, items_path, raw, text_columns, problems)
    text_columns = list(text_columns) if text_columns else default_text
    _check_text_columns(items, text_columns, items_path)

    line = np.arange(len(raw), dtype=np.int64)
    interactions, _ = _clean_interactions(
        RawInteractions(raw, txt_path, ("user", "item", None), line, np.zeros(len(raw), bool)),
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


def _sasrec_items(
    txt_path: Path,
    items_path: Path,
    raw: pd.DataFrame,
    text_columns: list[str] | None,
    problems: Problems,
) -> tuple[pd.DataFrame, list[str]]:
    """The catalogue (the items of ``items_path`` if it exists, then every other item id of
    ``raw`` in order, without content) and its default text columns."""
    if items_path.is_file():
        _require_columns(items_path, ["item_id"])
        items = _clean_items(
            _read_table(items_path, problems, strings=["item_id"]), "item_id", items_path, problems
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
            problems.report.notes.append(
                f"{len(extra_ids)} item ids of {txt_path.name} are not in {items_path.name}; "
                "added without content"
            )
        extra_items = pd.DataFrame({"item_id": extra_ids.to_numpy()})
        items = pd.concat([items, extra_items], ignore_index=True) if len(items) else extra_items
    items["item_id"] = items["item_id"].astype("str")
    return items, default_text
