"""The H&M Kaggle layout: ``articles.csv``, ``transactions_train.csv``, optional
``customers.csv`` and ``images/<first 3 digits>/<article_id>.jpg``.

Timestamps are days since 1970-01-01, so a customer's purchases of one day share a timestamp and
form a basket.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport
from seqrec.data.formats.common import (
    Problems,
    RawInteractions,
    _clean_interactions,
    _clean_items,
    _datetime_to_int,
    _existing_files,
    _read_table,
    _require_columns,
    _require_file,
)
from seqrec.data.formats.lean import read_coded_csv

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

    items = _hm_articles(directory, articles_path, text_columns, problems)
    interactions = _hm_transactions(tx_path, articles_path, items, problems)
    customers_path = directory / "customers.csv"
    if customers_path.is_file():
        _require_columns(customers_path, ["customer_id"])
        customers = _read_table(
            customers_path, problems, strings=["customer_id"], columns=["customer_id"]
        )
        report.notes.append(f"{customers_path.name} lists {len(customers)} customers")

    problems.check(on_error, directory.name)
    schema = ItemSchema(
        text_columns=text_columns,
        category_columns=list(HM_CATEGORY_COLUMNS),
        numeric_columns=["price"],
        image_column="image_path",
        title_column="prod_name",
        price_column="price",
        group_column="product_code",
    )
    return Dataset(
        name=directory.resolve().name,
        items=items,
        interactions=interactions,
        schema=schema,
        report=report,
        time_unit="day",
    )


def _hm_articles(
    directory: Path, articles_path: Path, text_columns: list[str], problems: Problems
) -> pd.DataFrame:
    """The articles kept, with their image paths (None where the file is absent)."""
    strings = ["article_id", *text_columns, *HM_CATEGORY_COLUMNS]
    articles = _read_table(articles_path, problems, strings=strings)
    items = _clean_items(articles, "article_id", articles_path, problems)
    image_paths = _hm_image_paths(directory, items["item_id"])
    items["image_path"] = image_paths
    absent = image_paths.isna().to_numpy()
    problems.add("missing_image", absent, lambda i: f"no image for article {items.item_id[i]}")
    if not (directory / "images").is_dir():
        problems.report.notes.append(f"no images directory at {directory / 'images'}")
    return items


def _hm_transactions(
    tx_path: Path, articles_path: Path, items: pd.DataFrame, problems: Problems
) -> pd.DataFrame:
    """The purchases kept, in days; sets each article's ``price`` in ``items`` to the median
    price it was bought at (NaN for articles nobody bought)."""
    ids = ["t_dat", "customer_id", "article_id", "sales_channel_id"]
    tx = read_coded_csv(tx_path, problems, ids=ids, floats=["price"])[HM_TRANSACTION_COLUMNS]
    # each distinct date is parsed once; rows take their day by code (-1: an empty date)
    dates = tx["t_dat"].cat.categories
    parsed = pd.Series(pd.to_datetime(dates, format="%Y-%m-%d", errors="coerce"))
    day_of, bad_of = _datetime_to_int(parsed, "D")
    codes = tx["t_dat"].cat.codes.to_numpy()
    days = np.append(day_of, 0).astype(np.int32)[codes]  # int32: the rows are many
    bad_time = np.append(bad_of, True)[codes]
    raw = RawInteractions(tx, tx_path, ("customer_id", "article_id", "t_dat"), days, bad_time)
    del tx, days, bad_time, codes  # from here on ``raw`` holds the rows, and frees what it can
    interactions, n_repeats = _clean_interactions(
        raw,
        items["item_id"],
        problems,
        items_path=articles_path,
        drop_duplicates=False,
        carry=("price",),
    )
    del raw  # the raw rows, before the price median needs memory
    if n_repeats:
        problems.report.notes.append(
            f"{n_repeats} rows of {tx_path.name} repeat an earlier row exactly "
            "(multi-unit purchases); kept"
        )
    price = interactions.groupby("item_idx")["price"].median()
    items["price"] = price.reindex(np.arange(len(items))).to_numpy(dtype=np.float64)
    return interactions.drop(columns=["price"])
