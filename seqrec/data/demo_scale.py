"""A synthetic shop in the H&M Kaggle layout, at any size up to and beyond H&M's own.

`write_hm_shop` writes ``articles.csv``, ``customers.csv`` and ``transactions_train.csv`` with
the download's columns (and, unless ``images=False``, ``images/<first 3 digits>/<id>.jpg``), so
that loading, training and serving can be measured at the size of the real download
(`HM_SIZE`) without it. Everything is drawn with numpy over whole arrays and written in chunks
by pyarrow's CSV writer; the same config gives byte-identical files.

What it resembles (and what it does not): article ids are ``<7-digit product code><3-digit
variant>`` (several colours of one product share its code), customer ids and postal codes are
64 hex characters, purchase dates span ``days`` days from ``start`` and the file is in date
order, as H&M's is. Article popularity follows a Zipf law (exponent ``item_skew``), customer
activity a log-normal one (``user_sigma``), purchases come in same-day baskets of ``1 +
Poisson(mean_basket - 1)`` articles, and ``repeat_prob`` of them repeat an earlier purchase of
the same customer (same day: a multi-unit purchase; later: a re-purchase). Tastes are not
modelled: the shop is for measuring costs, not quality (`seqrec.data.demo` plants signals).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

HM_SIZE = {"users": 1_371_980, "items": 105_542, "purchases": 31_788_324}

TYPES = [  # (product type, product group, garment group)
    ("Dress", "Garment Full body", "Dresses Ladies"),
    ("Trousers", "Garment Lower body", "Trousers"),
    ("Sweater", "Garment Upper body", "Knitwear"),
    ("T-shirt", "Garment Upper body", "Jersey Basic"),
    ("Blouse", "Garment Upper body", "Blouses"),
    ("Top", "Garment Upper body", "Jersey Fancy"),
    ("Skirt", "Garment Lower body", "Skirts"),
    ("Shorts", "Garment Lower body", "Shorts"),
    ("Jacket", "Garment Upper body", "Outdoor"),
    ("Bra", "Underwear", "Under-, Nightwear"),
    ("Socks", "Socks & Tights", "Socks and Tights"),
    ("Bag", "Accessories", "Accessories"),
    ("Hat/beanie", "Accessories", "Accessories"),
    ("Sneakers", "Shoes", "Shoes"),
    ("Swimsuit", "Swimwear", "Swimwear"),
]
APPEARANCES = ["Solid", "All over pattern", "Melange", "Denim", "Stripe", "Lace", "Check"]
COLOURS = [  # (colour group, perceived value, perceived master)
    ("Black", "Dark", "Black"),
    ("White", "Light", "White"),
    ("Dark Blue", "Dark", "Blue"),
    ("Light Beige", "Dusty Light", "Beige"),
    ("Light Pink", "Dusty Light", "Pink"),
    ("Grey", "Medium", "Grey"),
    ("Red", "Bright", "Red"),
    ("Dark Green", "Dark", "Green"),
    ("Yellow", "Bright", "Yellow"),
    ("Light Blue", "Light", "Blue"),
]
INDEXES = [  # (index name, index group, section)
    ("Ladieswear", "Ladieswear", "Womens Everyday Collection"),
    ("Divided", "Divided", "Divided Collection"),
    ("Menswear", "Menswear", "Men Underwear"),
    ("Children Sizes 92-140", "Baby/Children", "Kids Girl"),
    ("Sport", "Sport", "Ladies H&M Sport"),
]
DEPARTMENTS = ["Jersey", "Knitwear", "Trouser", "Dress", "Blouse", "Swimwear", "Shoes", "Bags"]
NAMES = ["Alba", "Brisk", "Cora", "Dune", "Ember", "Fjord", "Gala", "Haze", "Isla", "Juno"]
STYLES = ["relaxed", "fitted", "oversized", "cropped", "classic", "soft"]


@dataclass
class ScaleConfig:
    """Sizes and shape of the synthetic H&M-layout shop (defaults: the download's sizes)."""

    n_users: int = HM_SIZE["users"]
    n_items: int = HM_SIZE["items"]
    n_purchases: int = HM_SIZE["purchases"]
    seed: int = 0
    start: str = "2018-09-20"
    days: int = 734  # two years, as in the download
    item_skew: float = 1.0  # Zipf exponent of article popularity
    user_sigma: float = 1.0  # log-normal spread of customer activity
    mean_basket: float = 2.5  # articles per purchase day
    repeat_prob: float = 0.15  # share of purchases repeating an earlier one of the customer
    chunk_rows: int = 1_000_000  # rows per CSV write
    images: bool = True
    image_size: tuple[int, int] = (64, 96)  # (width, height) in pixels


def write_hm_shop(out_dir: Path, config: ScaleConfig = ScaleConfig()) -> Path:
    """Write the shop in the H&M layout under ``out_dir`` (overwriting its files); return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, 11])
    articles = _articles(config.n_items, rng)
    table = pa.Table.from_pandas(articles, preserve_index=False)
    _write_csv(table, out_dir / "articles.csv", quote=True)
    customer_ids = _hex_ids(config.n_users, rng)
    _write_customers(out_dir / "customers.csv", customer_ids, rng, config.chunk_rows)
    base_price = np.exp(rng.normal(np.log(0.025), 0.6, config.n_items)).clip(0.001, 0.6)
    days, users, items = _purchases(config, rng)
    _write_transactions(
        out_dir / "transactions_train.csv",
        (days, users, items),
        (customer_ids, pa.array(articles["article_id"]), base_price),
        config,
        rng,
    )
    if config.images:
        _write_images(out_dir / "images", articles, config)
    return out_dir


# -----------------------------------------------------------------------------
# articles and customers


def _articles(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` articles with H&M's columns; 1-5 colour variants per product code."""
    variants = 1 + np.minimum(rng.poisson(1.3, n), 4)  # more products than needed, cut below
    product = np.repeat(np.arange(n), variants)[:n]  # [n] product number of each article
    variant = np.arange(n) - np.searchsorted(product, product) + 1
    n_products = int(product[-1]) + 1 if n else 0
    codes = 100_000 + np.sort(rng.choice(max(900_000, 2 * n_products), n_products, replace=False))
    code = codes[product]
    article_id = pd.Series(code * 1000 + variant).astype("str").str.zfill(10)

    kind = rng.integers(len(TYPES), size=n_products)[product]
    index = rng.integers(len(INDEXES), size=n_products)[product]
    department = rng.integers(len(DEPARTMENTS), size=n_products)[product]
    name = rng.integers(len(NAMES), size=n_products)[product]
    style = rng.integers(len(STYLES), size=n_products)[product]
    colour = rng.integers(len(COLOURS), size=n)
    look = rng.integers(len(APPEARANCES), size=n)

    def pick(table: list, codes: np.ndarray, field: int | None = None) -> np.ndarray:
        values = [row if field is None else row[field] for row in table]
        return np.asarray(values, dtype=object)[codes]

    type_name, colour_name = pick(TYPES, kind, 0), pick(COLOURS, colour, 0)
    look_name = pick(APPEARANCES, look)
    desc = pd.Series(pick(STYLES, style)).str.capitalize() + " " + pd.Series(type_name).str.lower()
    desc += " in " + pd.Series(colour_name).str.lower() + ", " + pd.Series(look_name).str.lower()
    return pd.DataFrame(
        {
            "article_id": article_id,
            "product_code": code,
            "prod_name": pd.Series(pick(NAMES, name)) + " " + pd.Series(type_name).str.lower(),
            "product_type_no": 250 + kind,
            "product_type_name": type_name,
            "product_group_name": pick(TYPES, kind, 1),
            "graphical_appearance_no": 1_010_001 + look,
            "graphical_appearance_name": look_name,
            "colour_group_code": 1 + colour,
            "colour_group_name": colour_name,
            "perceived_colour_value_id": 1 + colour,
            "perceived_colour_value_name": pick(COLOURS, colour, 1),
            "perceived_colour_master_id": 1 + colour,
            "perceived_colour_master_name": pick(COLOURS, colour, 2),
            "department_no": 1_000 + department,
            "department_name": pick(DEPARTMENTS, department),
            "index_code": np.asarray(list("ABFGS"), dtype=object)[index],
            "index_name": pick(INDEXES, index, 0),
            "index_group_no": 1 + index,
            "index_group_name": pick(INDEXES, index, 1),
            "section_no": 10 + index,
            "section_name": pick(INDEXES, index, 2),
            "garment_group_no": 1_001 + kind,
            "garment_group_name": pick(TYPES, kind, 2),
            "detail_desc": desc + ".",
        }
    )


def _hex_ids(n: int, rng: np.random.Generator) -> pa.StringArray:
    """``n`` distinct-in-practice 64-character hex strings, built without Python objects."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = rng.integers(16, size=(n, 64), dtype=np.uint8)
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    data = digits[nibbles].tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _write_customers(path: Path, ids: pa.StringArray, rng: np.random.Generator, chunk: int) -> None:
    n = len(ids)
    postcodes = _hex_ids(max(1, n // 5), rng)
    news = rng.random(n) < 0.35
    columns = {
        "customer_id": ids,
        "FN": pa.array(np.where(news, 1.0, np.nan), from_pandas=True),
        "Active": pa.array(np.where(news, 1.0, np.nan), from_pandas=True),
        "club_member_status": pa.array(np.where(rng.random(n) < 0.93, "ACTIVE", "PRE-CREATE")),
        "fashion_news_frequency": pa.array(np.where(news, "Regularly", "NONE")),
        "age": pa.array(rng.integers(16, 90, n).astype(np.float64)),
        "postal_code": postcodes.take(pa.array(rng.integers(len(postcodes), size=n))),
    }
    _write_csv(pa.table(columns), path, chunk)


# -----------------------------------------------------------------------------
# purchases


def _purchases(
    config: ScaleConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(day [P] int16, customer [P] int32, article [P] int32) in date order."""
    n_users, total = config.n_users, config.n_purchases
    activity = rng.lognormal(0.0, config.user_sigma, n_users)
    counts = rng.multinomial(total, activity / activity.sum())  # [U] purchases per customer
    users = np.repeat(np.arange(n_users, dtype=np.int32), counts)  # [P], grouped by customer
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(total) - np.repeat(starts, counts)  # [P] rank inside the customer

    # same-day baskets: position // basket size, one uniform day per basket
    size = 1 + rng.poisson(config.mean_basket - 1, n_users)
    n_baskets = -(-counts // size)
    basket = np.repeat(np.cumsum(n_baskets) - n_baskets, counts) + position // size[users]
    days = rng.integers(config.days, size=int(n_baskets.sum()), dtype=np.int16)[basket]

    rank = rng.permutation(config.n_items) + 1.0  # Zipf popularity, ranks in random order
    cdf = np.cumsum(rank**-config.item_skew)
    items = np.searchsorted(cdf, rng.random(total) * cdf[-1]).astype(np.int32)

    order = np.lexsort((days, users))  # by customer, then day
    days, items = days[order], items[order]
    _repeat_earlier(items, position, rng, config.repeat_prob)
    by_day = np.argsort(days, kind="stable")
    return days[by_day], users[by_day], items[by_day]


def _repeat_earlier(
    items: np.ndarray, position: np.ndarray, rng: np.random.Generator, prob: float
) -> None:
    """Let ``prob`` of the rows (not a customer's first) repeat a uniformly drawn earlier row of
    the same customer; rows are grouped by customer with ``position`` their rank inside it."""
    rows = np.arange(len(items))
    source = rows.copy()
    repeat = (rng.random(len(items)) < prob) & (position > 0)
    back = 1 + (rng.random(int(repeat.sum())) * position[repeat]).astype(np.int64)
    source[repeat] -= back
    while True:  # follow chains of repeats to the original purchase
        deeper = source[source]
        if np.array_equal(deeper, source):
            break
        source = deeper
    items[:] = items[source]


def _write_transactions(
    path: Path,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    ids: tuple[pa.StringArray, pa.StringArray, np.ndarray],
    config: ScaleConfig,
    rng: np.random.Generator,
) -> None:
    """Purchases in date order, one CSV batch per ``config.chunk_rows`` rows."""
    days, users, items = rows
    customer_ids, article_ids, base_price = ids
    first_day = (pd.Timestamp(config.start) - pd.Timestamp("1970-01-01")).days
    online = rng.random(len(customer_ids)) < 0.7  # [U] a customer's usual sales channel
    schema = pa.schema(
        [
            ("t_dat", pa.date32()),
            ("customer_id", pa.string()),
            ("article_id", pa.string()),
            ("price", pa.float64()),
            ("sales_channel_id", pa.int8()),
        ]
    )
    with _csv_writer(path, schema) as writer:
        for lo in range(0, len(days), config.chunk_rows):
            part = slice(lo, lo + config.chunk_rows)
            # a fifth of the (day, article) pairs are on sale, so same-day repeats stay exact
            sale = np.where((days[part] + 31 * items[part].astype(np.int64)) % 5 == 0, 0.7, 1.0)
            channel = np.where(online[users[part]], 2, 1).astype(np.int8)
            columns = [
                pa.array(days[part].astype(np.int32) + first_day).cast(pa.date32()),
                customer_ids.take(pa.array(users[part])),
                article_ids.take(pa.array(items[part])),
                pa.array(base_price[items[part]] * sale),
                pa.array(channel),
            ]
            writer.write_batch(pa.record_batch(columns, schema=schema))


def _write_csv(table: pa.Table, path: Path, chunk: int = 1_000_000, quote: bool = False) -> None:
    """Write a table in chunks; strings quoted only with ``quote`` (values holding commas)."""
    with _csv_writer(path, table.schema, quote) as writer:
        for batch in table.to_batches(max_chunksize=chunk):
            writer.write_batch(batch)


def _csv_writer(path: Path, schema: pa.Schema, quote: bool = False) -> pa_csv.CSVWriter:
    """A CSV writer whose header line is not quoted, as in H&M's files."""
    sink = pa.OSFile(str(path), "wb")
    sink.write((",".join(schema.names) + "\n").encode())
    style = "needed" if quote else "none"
    options = pa_csv.WriteOptions(include_header=False, quoting_style=style)
    return pa_csv.CSVWriter(sink, schema, write_options=options)


# -----------------------------------------------------------------------------
# pictures


def _write_images(folder: Path, articles: pd.DataFrame, config: ScaleConfig) -> None:
    """One JPEG per article, ``<folder>/<first 3 digits>/<id>.jpg``: a demo-shop silhouette
    (by product group) in the article's colour, with a pattern by its graphical appearance."""
    from seqrec.data.demo import PATTERNS
    from seqrec.data.demo_images import COLOURS as RGB
    from seqrec.data.demo_images import render_item

    shapes = ["t-shirt", "trousers", "dress", "bag", "shoes", "hat", "shorts", "sweater"]
    groups = {group: i for i, group in enumerate(sorted({t[1] for t in TYPES}))}
    render_rng = np.random.default_rng([config.seed, 12])
    colours = list(RGB)
    for row in articles.itertuples():
        shape = shapes[groups[row.product_group_name] % len(shapes)]
        colour = colours[(row.colour_group_code - 1) % len(colours)]
        pattern = PATTERNS[(row.graphical_appearance_no - 1_010_001) % len(PATTERNS)]
        image = render_item(shape, colour, pattern, config.image_size, render_rng)
        target = folder / row.article_id[:3] / f"{row.article_id}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(target, format="JPEG", quality=85)
