"""The demo shop: files and columns, determinism, and the planted signals it promises."""

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seqrec.data.demo import (
    COMPLEMENTS,
    MATERIALS,
    PATTERNS,
    TOML,
    DemoConfig,
    make_demo_shop,
    write_demo_shop,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SMALL = DemoConfig(n_items=400, n_users=600)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return write_demo_shop(tmp_path_factory.mktemp("shop"), SMALL)


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    items, interactions = make_demo_shop(SMALL)
    rows = {item_id: i for i, item_id in enumerate(items["item_id"])}
    return items, interactions.assign(row=interactions["item_id"].map(rows))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_files_and_columns(shop):
    config = tomllib.loads((shop / "seqrec.toml").read_text())
    assert (shop / "seqrec.toml").read_text() == TOML
    assert config["items"]["images_dir"] == "."
    items = pd.read_csv(shop / config["items"]["path"])
    interactions = pd.read_csv(shop / config["interactions"]["path"])
    assert list(items.columns) == [
        "item_id", "title", "description", "category", "colour", "price", "image", "launch_time"
    ]  # fmt: skip
    assert list(interactions.columns) == ["user_id", "item_id", "timestamp"]
    assert len(items) == SMALL.n_items and items["item_id"].is_unique
    assert items["item_id"].str.fullmatch(r"P\d{5}").all()
    assert interactions["user_id"].nunique() == SMALL.n_users
    assert interactions["item_id"].isin(items["item_id"]).all()
    assert interactions["timestamp"].dtype == np.int64
    start, end = SMALL.start_time, SMALL.start_time + SMALL.period_seconds
    assert interactions["timestamp"].between(start, end).all()
    assert (items["price"] > 0).all()
    for column in config["items"]["text"] + config["items"]["category"]:
        assert items[column].notna().all()
    # rows come sorted by user, then time
    ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    assert ordered.index.equals(interactions.index)
    assert sorted(p.name for p in (shop / "images").iterdir()) == sorted(
        Path(p).name for p in items["image"]
    )


def test_same_seed_same_bytes_other_seed_differs(shop, tmp_path):
    again = write_demo_shop(tmp_path / "again", SMALL)
    assert digest(again) == digest(shop)
    other = digest(
        write_demo_shop(tmp_path / "other", DemoConfig(n_items=400, n_users=600, seed=1))
    )
    first = digest(shop)
    for name in ["items.csv", "interactions.csv", "images/P00001.png"]:
        assert other[name] != first[name]


def test_every_image_opens_at_the_configured_size(shop):
    items = pd.read_csv(shop / "items.csv")
    for relative in items["image"]:
        with Image.open(shop / relative) as image:
            image.load()
            assert image.size == SMALL.image_size and image.mode == "RGB"


def test_pattern_is_in_the_image(shop, tables):
    # background, garment colour and outline; a pattern adds exactly one more colour
    items, _ = tables
    for row in items.itertuples():
        with Image.open(shop / row.image) as image:
            n_colours = len(image.getcolors())
        assert n_colours == (3 if row.pattern == "solid" else 4), row.item_id


def test_material_only_in_text_pattern_never(shop, tables):
    items, _ = tables
    for row in items.itertuples():
        assert row.material in row.title.split()
        assert row.material in row.description
    public = pd.read_csv(shop / "items.csv")
    assert "material" not in public.columns and "pattern" not in public.columns
    text = " ".join(public.astype(str).to_numpy().ravel()).lower()
    pattern_words = PATTERNS + ["stripe", "dot", "check", "zig", "pattern", "print", "plain"]
    for word in pattern_words:
        assert not re.search(rf"\b{word}", text), word
    assert set(MATERIALS) == set(items["material"])


def test_cold_items_only_in_the_last_part_of_the_timeline(tables):
    items, interactions = tables
    cutoff = SMALL.cold_start_time
    cold = items["launch_time"].to_numpy() >= cutoff
    assert cold.sum() == round(SMALL.cold_fraction * SMALL.n_items)
    assert np.array_equal(cold, items["cold"].to_numpy())
    bought_cold = interactions[cold[interactions["row"]]]
    assert len(bought_cold) > 0
    assert (bought_cold["timestamp"] >= cutoff).all()
    # and nothing is bought before its launch
    launch = items["launch_time"].to_numpy()[interactions["row"]]
    assert (interactions["timestamp"].to_numpy() >= launch).all()


def test_history_lengths_baskets_and_repeats(tables):
    _, interactions = tables
    lengths = interactions.groupby("user_id").size()
    assert lengths.min() >= SMALL.min_history and lengths.max() <= SMALL.max_history
    assert 10 <= lengths.mean() <= 14
    baskets = interactions.groupby(["user_id", "timestamp"]).size()
    assert 1.2 <= baskets.mean() <= 1.8
    repeats = interactions.duplicated(["user_id", "item_id"]).mean()
    assert 0.03 <= repeats <= 0.12
    # a repeat never shares a basket with the first purchase
    assert not interactions.duplicated(["user_id", "item_id", "timestamp"]).any()


def same_pair_rate(values: np.ndarray, users: np.ndarray) -> float:
    """Share of (i, j) purchase pairs of one shopper that share the value, over shoppers."""
    rates = []
    for user in np.unique(users):
        counts = pd.Series(values[users == user]).value_counts().to_numpy()
        n = counts.sum()
        rates.append((counts * (counts - 1)).sum() / (n * (n - 1)))
    return float(np.mean(rates))


@pytest.mark.parametrize("attribute", ["colour", "pattern", "material", "category"])
def test_shoppers_have_tastes(tables, attribute):
    items, interactions = tables
    values = items[attribute].to_numpy()[interactions["row"]]
    chance = (pd.Series(values).value_counts(normalize=True) ** 2).sum()
    assert same_pair_rate(values, interactions["user_id"].to_numpy()) > 1.4 * chance


def test_complements_follow_in_matching_colour(tables):
    items, interactions = tables
    category = items["category"].to_numpy()[interactions["row"]]
    colour = items["colour"].to_numpy()[interactions["row"]]
    users = interactions["user_id"].to_numpy()
    same_user = users[1:] == users[:-1]
    for first, second in COMPLEMENTS.items():
        after = same_user & (category[:-1] == first)
        follows = after & (category[1:] == second)
        assert follows.sum() > 2.5 * after.sum() * np.mean(category == second), first
        assert np.mean(colour[1:][follows] == colour[:-1][follows]) > 0.75, first


def test_taste_profile_beats_popularity(tables):
    # predict each shopper's last purchase from earlier ones: popularity vs an attribute profile
    items, interactions = tables
    last = interactions.groupby("user_id").tail(1)
    train = interactions.drop(last.index)
    popularity = np.bincount(train["row"], minlength=len(items)).astype(float)
    codes = [pd.factorize(items[a])[0] for a in ["colour", "pattern", "material", "category"]]
    history = train.groupby("user_id")["row"].apply(np.array)
    pop_hits, profile_hits = 0, 0
    for user, target in zip(last["user_id"], last["row"], strict=True):
        score = 0.5 * np.log1p(popularity)
        for code in codes:
            counts = np.bincount(code[history[user]], minlength=code.max() + 1) + 0.5
            score += np.log(counts / counts.sum())[code]
        profile_hits += target in np.argsort(-score)[:10]
        pop_hits += target in np.argsort(-popularity)[:10]
    assert profile_hits > 1.5 * pop_hits
