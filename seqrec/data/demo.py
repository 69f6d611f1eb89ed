"""The embedded demo shop: a seeded synthetic fashion store that `seqrec demo` trains on.

`write_demo_shop` writes it in the generic layout (``items.csv``, ``interactions.csv``,
``images/`` and the column mapping ``seqrec.toml``) so that the demo runs through the same
loader as real data. `make_demo_shop` returns the same tables in memory, together with the
hidden attributes (``material``, ``pattern``), for tests that check a model finds a signal.
The same seed gives byte-identical files; nothing else is random. The pictures are drawn by
`seqrec.data.demo_images`.

Catalogue. Every product has five attributes, drawn independently except that the material
must suit the product type (no wool shoes):

- ``category``: the product type, one of `CATEGORIES`; a column, in the title, and the image
  silhouette.
- ``colour``: one of `COLOURS`; a column, in the title, and the image fill colour.
- ``material``: one of `MATERIALS`; ONLY in the text (title and description), no column.
- ``pattern``: one of `PATTERNS`; ONLY in the image, never in any text or column.
- a hidden popularity ``z ~ N(0, 1)``.

``price`` follows category and material (times log-normal noise), so it carries little extra
signal. ``cold_fraction`` of the products launch inside the last ``cold_window`` of the period
(cold-start items: every purchase of them lies there); of the rest, ``prelaunched_fraction``
launched during the year before the period and the others at uniform times in the period
before the cold window. Nobody buys a product before its launch time.

Shoppers. Each shopper ``u`` buys a history of ``L`` items, ``L = min_history + round(E)``
with ``E ~ Exponential(mean_history - min_history)``, clipped to ``max_history``. The items
are split into baskets of ``1 + Poisson(mean_basket - 1)`` items that share one timestamp;
basket times are uniform between a first-purchase time (uniform in the first
``first_purchase_window`` of the period) and the end of the period. The shopper has latent
tastes, one Gaussian logit per attribute value, ``N(0, taste_scale^2)`` for each of colour,
pattern (visual) and material, category (textual), which drift linearly: at fraction ``f`` of
the period each logit has moved by ``f * N(0, drift_scale^2)``. At time ``t`` the utility of an
available product (launched by ``t``, not yet bought by this shopper) is::

    taste_colour[c] + taste_pattern[p] + taste_material[m] + taste_category[k]   (at f)
    + popularity_scale * z + new_arrival_boost * [launched within new_arrival_days]
    + Gumbel noise

so the next item is drawn from the softmax of the non-noise part. Each pick, in basket order:

1. with probability ``repeat_prob``: the same product again, uniformly from the purchases of
   earlier baskets not already in this basket (a repeat purchase; skipped if there are none);
2. else with probability ``complement_prob``, if the previous product's type has a
   complement in `COMPLEMENTS` (jacket -> hat, trousers -> shoes, dress -> bag,
   t-shirt -> shorts): the highest-utility product of the complement type in the SAME colour
   as the previous product (falling back to step 3 when none is available);
3. else the highest-utility product overall.

Taste logits (std 1.5 per attribute, so ~3 in total) outweigh popularity (std 1.0), so a
content-aware model beats popularity, while the skewed popularity still makes a handful of
products best-sellers.

With the default config (seed 0): 36,590 purchases, 12.2 per shopper in 8.4 baskets; 1,953 of
the 2,000 products bought; the best-seller 189 times (mean 18); 461 purchases of the 100
cold-start products. Two purchases of one shopper share the colour 32% of the time (10% by
chance), pattern 37% (18%), material 28% (11%), type 24% (11%). After a jacket, trousers,
dress or t-shirt the next purchase is its complement 53-56% of the time (base rate 10-14%), in
the same colour 94% of the time; 7% of purchases are repeats. Predicting each shopper's last
purchase from the earlier ones, top-10 popularity hits 3.1% while a profile of the true
attribute frequencies hits 14.8% (11.7% without the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.data.demo_images import COLOURS, render_item

CATEGORIES = [
    "t-shirt", "sweater", "dress", "skirt", "trousers",
    "shorts", "jacket", "shoes", "bag", "hat",
]  # fmt: skip
CATEGORY_SHARE = [0.16, 0.10, 0.12, 0.08, 0.12, 0.07, 0.10, 0.10, 0.08, 0.07]
COMPLEMENTS = {"jacket": "hat", "trousers": "shoes", "dress": "bag", "t-shirt": "shorts"}

# COLOURS (name -> RGB) lives with the pictures, in seqrec.data.demo_images
COLOUR_SHARE = [0.16, 0.14, 0.10, 0.10, 0.09, 0.09, 0.08, 0.07, 0.08, 0.09]

PATTERNS = ["solid", "stripes", "dots", "checks", "zigzag", "diagonal"]
PATTERN_SHARE = [0.30, 0.15, 0.15, 0.14, 0.13, 0.13]

MATERIALS = {  # material -> (phrase used in the description, price multiplier)
    "cotton": ("soft organic cotton", 1.0),
    "linen": ("breathable washed linen", 1.2),
    "wool": ("warm merino wool", 1.4),
    "cashmere": ("fine brushed cashmere", 2.5),
    "denim": ("sturdy rigid denim", 1.1),
    "silk": ("fluid mulberry silk", 2.0),
    "leather": ("smooth full-grain leather", 2.2),
    "polyester": ("recycled polyester", 0.8),
    "canvas": ("heavy waxed canvas", 0.9),
    "suede": ("velvety suede", 1.9),
}
CATEGORY_INFO = {  # type -> (materials it comes in, base price, one line of detail)
    "t-shirt": (["cotton", "linen", "polyester", "silk"], 15, "Crew neck and short sleeves."),
    "sweater": (["wool", "cashmere", "cotton"], 45, "Ribbed cuffs and hem."),
    "dress": (["cotton", "linen", "silk", "polyester"], 50, "Midi length with a fitted waist."),
    "skirt": (["denim", "cotton", "linen", "silk", "leather", "wool"], 35, "A-line cut."),
    "trousers": (["denim", "cotton", "linen", "wool", "polyester"], 45, "Straight leg."),
    "shorts": (["denim", "cotton", "linen"], 25, "Mid-thigh length with belt loops."),
    "jacket": (["denim", "leather", "wool", "polyester", "suede"], 90, "Two flap pockets."),
    "shoes": (["leather", "suede", "canvas"], 70, "Cushioned insole and rubber sole."),
    "bag": (["leather", "canvas", "suede", "polyester"], 60, "Zip top and an inner pocket."),
    "hat": (["wool", "cotton", "canvas", "linen"], 20, "One size, with a soft brim."),
}
LINE_NAMES = [
    "Aria", "Nova", "Luna", "Milo", "Iris", "Otto", "Vera", "Juno",
    "Ezra", "Lyra", "Noor", "Sage", "Remy", "Cleo", "Finn", "Hana",
]  # fmt: skip
STYLE_WORDS = ["everyday", "classic", "modern", "easy", "timeless", "relaxed", "refined", "city"]
CARE = ["Machine wash at 30 degrees.", "Dry clean only.", "Hand wash cold.", "Wash inside out."]

TOML = """\
[interactions]
path = "interactions.csv"
user = "user_id"
item = "item_id"
time = "timestamp"
time_format = "unix"

[items]
path = "items.csv"
id = "item_id"
text = ["title", "description"]
category = ["category", "colour"]
numeric = ["price"]
image = "image"
images_dir = "."
title = "title"
price = "price"
"""

DAY = 86_400


@dataclass
class DemoConfig:
    seed: int = 0
    n_items: int = 2000
    n_users: int = 3000
    image_size: tuple[int, int] = (64, 96)  # (width, height) in pixels
    start_time: int = 1_704_067_200  # 2024-01-01 00:00 UTC, unix seconds
    period_days: int = 180
    first_purchase_window: float = 0.7  # shoppers start buying in the first 70% of the period
    mean_history: float = 12.0  # purchases per shopper
    min_history: int = 5
    max_history: int = 40
    mean_basket: float = 1.5  # items per basket (same timestamp)
    cold_fraction: float = 0.05  # share of products launched inside the cold window
    cold_window: float = 0.1  # the last 10% of the period
    prelaunched_fraction: float = 0.7  # share of the rest launched before the period starts
    taste_scale: float = 1.5  # std of a shopper's logit per attribute value
    drift_scale: float = 0.5  # std of the taste change over the whole period
    popularity_scale: float = 1.0  # std of the item popularity logit
    new_arrival_boost: float = 1.0  # logit bonus in the first new_arrival_days after launch
    new_arrival_days: int = 14
    repeat_prob: float = 0.08
    complement_prob: float = 0.5

    @property
    def period_seconds(self) -> int:
        return self.period_days * DAY

    @property
    def cold_start_time(self) -> int:
        """Unix time from which cold-start products launch (the start of the cold window)."""
        return self.start_time + int(round((1 - self.cold_window) * self.period_seconds))


def make_demo_shop(config: DemoConfig = DemoConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shop in memory: (items with the hidden attributes, interactions).

    ``items`` holds the items.csv columns plus the ground truth ``material``, ``pattern``,
    ``cold`` (bool) and ``popularity`` (the logit ``z``); ``interactions`` holds the
    interactions.csv columns, sorted by user then time (basket order kept).
    """
    items = _make_items(config, np.random.default_rng([config.seed, 1]))
    interactions = _simulate(items, config, np.random.default_rng([config.seed, 2]))
    return items, interactions


def write_demo_shop(out_dir: Path, config: DemoConfig = DemoConfig()) -> Path:
    """Write the demo shop in the generic layout under ``out_dir``; return ``out_dir``.

    Writes ``items.csv``, ``interactions.csv``, ``images/<item_id>.png`` and ``seqrec.toml``
    (overwriting them; other files in ``out_dir`` are left alone).
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    items, interactions = make_demo_shop(config)
    render_rng = np.random.default_rng([config.seed, 3])
    for row in items.itertuples():
        image = render_item(row.category, row.colour, row.pattern, config.image_size, render_rng)
        image.save(out_dir / row.image, format="PNG", compress_level=6)
    public = ["item_id", "title", "description", "category", "colour", "price", "image"]
    items[public + ["launch_time"]].to_csv(
        out_dir / "items.csv", index=False, float_format="%.2f", lineterminator="\n"
    )
    interactions.to_csv(out_dir / "interactions.csv", index=False, lineterminator="\n")
    (out_dir / "seqrec.toml").write_text(TOML, encoding="utf-8")
    return out_dir


# -----------------------------------------------------------------------------
# catalogue


def _make_items(config: DemoConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = config.n_items
    category = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_SHARE)
    colour = rng.choice(len(COLOURS), size=n, p=COLOUR_SHARE)
    pattern = rng.choice(len(PATTERNS), size=n, p=PATTERN_SHARE)
    material_pick = rng.random(n)
    popularity = rng.normal(size=n)
    price_noise = rng.lognormal(0.0, 0.2, size=n)
    line = rng.integers(len(LINE_NAMES), size=n)
    style = rng.integers(len(STYLE_WORDS), size=n)
    care = rng.integers(len(CARE), size=n)

    # launch times: a few cold-start products in the cold window, the rest earlier
    period = config.period_seconds
    cold_from = config.cold_start_time - config.start_time
    n_cold = int(round(config.cold_fraction * n))
    cold = np.zeros(n, dtype=bool)
    cold[rng.choice(n, size=n_cold, replace=False)] = True
    prelaunched = rng.random(n) < config.prelaunched_fraction
    launch = np.where(
        prelaunched,
        rng.integers(-365 * DAY, 0, size=n),
        rng.integers(0, cold_from, size=n),
    )
    launch[cold] = rng.integers(cold_from, period - DAY, size=n_cold)

    names_colour, names_material = list(COLOURS), list(MATERIALS)
    rows = []
    for i in range(n):
        kind = CATEGORIES[category[i]]
        allowed, base_price, detail = CATEGORY_INFO[kind]
        material = allowed[int(material_pick[i] * len(allowed))]
        phrase, multiplier = MATERIALS[material]
        colour_name = names_colour[colour[i]]
        item_id = f"P{i + 1:05d}"
        rows.append(
            {
                "item_id": item_id,
                "title": f"{LINE_NAMES[line[i]]} {colour_name} {material} {kind}",
                "description": (
                    f"{STYLE_WORDS[style[i]].capitalize()} {colour_name} {kind} in {phrase}. "
                    f"{detail} {CARE[care[i]]}"
                ),
                "category": kind,
                "colour": colour_name,
                "price": max(4.99, round(base_price * multiplier * price_noise[i]) - 0.01),
                "image": f"images/{item_id}.png",
                "launch_time": int(config.start_time + launch[i]),
                "material": material,
                "pattern": PATTERNS[pattern[i]],
                "cold": bool(cold[i]),
                "popularity": float(popularity[i]),
            }
        )
    items = pd.DataFrame(rows)
    assert set(items["material"]) <= set(names_material)
    return items


# -----------------------------------------------------------------------------
# shoppers


def _codes(values: pd.Series, names: list[str]) -> np.ndarray:
    return pd.Categorical(values, categories=names).codes.astype(np.int64)


@dataclass
class _Catalogue:
    """What the shoppers' choices read of the items, as arrays over the N products."""

    attrs: list[tuple[np.ndarray, int]]  # (codes [N], number of values) per tasted attribute
    colour: np.ndarray  # [N] colour code
    category: np.ndarray  # [N] category code
    complement: np.ndarray  # [categories] complement category code, -1 for none
    by_type_colour: dict[tuple[int, int], np.ndarray]  # (category, colour) -> item rows
    launch: np.ndarray  # [N] launch time, seconds from the start of the period
    popularity: np.ndarray  # [N] popularity logit, scaled


def _catalogue(items: pd.DataFrame, config: DemoConfig) -> _Catalogue:
    attrs = [  # colour, pattern, material, category
        (_codes(items["colour"], list(COLOURS)), len(COLOURS)),
        (_codes(items["pattern"], PATTERNS), len(PATTERNS)),
        (_codes(items["material"], list(MATERIALS)), len(MATERIALS)),
        (_codes(items["category"], CATEGORIES), len(CATEGORIES)),
    ]
    colour, category = attrs[0][0], attrs[3][0]
    complement = np.array(
        [CATEGORIES.index(COMPLEMENTS[k]) if k in COMPLEMENTS else -1 for k in CATEGORIES]
    )
    by_type_colour = {
        (k, c): np.flatnonzero((category == k) & (colour == c))
        for k in range(len(CATEGORIES))
        for c in range(len(COLOURS))
    }
    launch = items["launch_time"].to_numpy() - config.start_time
    popularity = config.popularity_scale * items["popularity"].to_numpy()
    return _Catalogue(attrs, colour, category, complement, by_type_colour, launch, popularity)


def _simulate(items: pd.DataFrame, config: DemoConfig, rng: np.random.Generator) -> pd.DataFrame:
    catalogue = _catalogue(items, config)
    users, item_rows, times = [], [], []
    for u in range(config.n_users):
        basket, t = _baskets(config, rng)
        utility = _utilities(catalogue, config, t, rng)
        r = rng.random(len(t))
        pick_earlier = rng.random(len(t))
        bought = _picks(catalogue, config, utility, basket, r, pick_earlier)
        users.append(np.full(len(t), u))
        item_rows.append(np.array(bought))
        times.append(t)

    user_idx = np.concatenate(users)
    return pd.DataFrame(
        {
            "user_id": np.array([f"U{u + 1:05d}" for u in range(config.n_users)])[user_idx],
            "item_id": items["item_id"].to_numpy()[np.concatenate(item_rows)],
            "timestamp": (config.start_time + np.concatenate(times)).astype(np.int64),
        }
    )


def _baskets(config: DemoConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One shopper's purchases: (basket number [L], time [L] in seconds from the start)."""
    period = config.period_seconds
    length = config.min_history + int(
        round(rng.exponential(config.mean_history - config.min_history))
    )
    length = min(length, config.max_history)
    sizes: list[int] = []
    while sum(sizes) < length:
        sizes.append(1 + int(rng.poisson(config.mean_basket - 1)))
    sizes[-1] -= sum(sizes) - length
    first = rng.uniform(0, config.first_purchase_window * period)
    basket_times = np.sort(rng.integers(int(first), period, size=len(sizes)))
    basket = np.repeat(np.arange(len(sizes)), sizes)
    return basket, basket_times[basket]


def _utilities(
    catalogue: _Catalogue, config: DemoConfig, t: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """[L, N] a new shopper's utility of every product at each purchase time ``t`` [L], with
    Gumbel noise; -inf for products not launched yet."""
    n_items = len(catalogue.launch)
    period = config.period_seconds
    taste = np.zeros(n_items)
    drift = np.zeros(n_items)
    for codes, n_values in catalogue.attrs:
        taste += rng.normal(0, config.taste_scale, n_values)[codes]
        drift += rng.normal(0, config.drift_scale, n_values)[codes]
    age = t[:, None] - catalogue.launch[None, :]
    utility = taste + catalogue.popularity + (t / period)[:, None] * drift
    utility += config.new_arrival_boost * (age < config.new_arrival_days * DAY)
    utility[age < 0] = -np.inf  # not launched yet
    utility -= np.log(-np.log(rng.random(utility.shape)))  # Gumbel noise
    return utility


def _picks(
    catalogue: _Catalogue,
    config: DemoConfig,
    utility: np.ndarray,
    basket: np.ndarray,
    r: np.ndarray,
    pick_earlier: np.ndarray,
) -> list[int]:
    """The products a shopper buys in order (see the module docstring): a repeat, the
    complement of the previous product, or the best available one. ``utility`` [L, N] is
    changed in place (bought products drop out); ``r`` and ``pick_earlier`` [L] are uniform
    draws deciding the kind of each pick and which earlier purchase a repeat is."""
    bought: list[int] = []
    for j in range(len(basket)):
        row = utility[j]
        row[bought] = -np.inf
        start = int(np.searchsorted(basket, basket[j]))  # this basket's first pick
        earlier = [b for b in bought[:start] if b not in bought[start:]]
        choice = -1
        if earlier and r[j] < config.repeat_prob:
            choice = earlier[int(pick_earlier[j] * len(earlier))]
        elif j > 0 and r[j] < config.repeat_prob + config.complement_prob:
            choice = _complement(catalogue, row, bought[-1])
        if choice < 0:
            choice = int(np.argmax(row))
        bought.append(choice)
    return bought


def _complement(catalogue: _Catalogue, row: np.ndarray, previous: int) -> int:
    """The best available product of ``previous``'s complement type in its colour (by the
    utilities ``row`` [N]), or -1 when there is none."""
    target = catalogue.complement[catalogue.category[previous]]
    if target < 0:
        return -1
    candidates = catalogue.by_type_colour[(int(target), int(catalogue.colour[previous]))]
    if len(candidates) and np.isfinite(row[candidates]).any():
        return int(candidates[np.argmax(row[candidates])])
    return -1
