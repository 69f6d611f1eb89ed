"""The tiny H&M, SASRec and generic layouts the loader tests write into tmp_path (imported by
``tests/data/test_load*.py``; ``tests/data`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from seqrec.data.dataset import DataError
from seqrec.data.load import HM_CATEGORY_COLUMNS, HM_TEXT_COLUMNS, load_dataset

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
