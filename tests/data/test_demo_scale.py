"""The H&M-layout shop generator (`seqrec.data.demo_scale`) and `seqrec data demo --purchases`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from seqrec.data.demo_scale import HM_SIZE, ScaleConfig, write_hm_shop
from seqrec.data.load import HM_TRANSACTION_COLUMNS, load_dataset

TINY = ScaleConfig(n_users=400, n_items=120, n_purchases=3_000, images=False)


@pytest.fixture(scope="module")
def tiny_shop(tmp_path_factory):
    return write_hm_shop(tmp_path_factory.mktemp("hm_tiny"), TINY)


def test_sizes_columns_and_id_formats(tiny_shop):
    articles = pd.read_csv(tiny_shop / "articles.csv", dtype=str)
    customers = pd.read_csv(tiny_shop / "customers.csv", dtype=str)
    tx = pd.read_csv(tiny_shop / "transactions_train.csv", dtype=str)
    assert len(articles) == articles["article_id"].nunique() == 120
    assert len(customers) == customers["customer_id"].nunique() == 400
    assert len(tx) == 3_000
    assert list(tx.columns) == HM_TRANSACTION_COLUMNS
    assert articles.columns[0] == "article_id" and "detail_desc" in articles.columns
    assert list(customers.columns[:1]) == ["customer_id"]
    assert customers["customer_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert articles["article_id"].str.fullmatch(r"\d{10}").all()  # leading zero kept
    # variants of one product share the first 7 digits, which are its product code
    assert (
        articles["article_id"].str[:7].astype(int) == articles["product_code"].astype(int)
    ).all()
    assert tx["customer_id"].isin(set(customers["customer_id"])).all()
    assert tx["article_id"].isin(set(articles["article_id"])).all()
    days = pd.to_datetime(tx["t_dat"], format="%Y-%m-%d")
    assert days.is_monotonic_increasing  # date order, as in the download
    assert days.min() >= pd.Timestamp("2018-09-20") and days.max() <= pd.Timestamp("2020-09-22")
    assert not (tiny_shop / "images").exists()


def test_purchases_are_skewed_and_repeat(tiny_shop):
    tx = pd.read_csv(tiny_shop / "transactions_train.csv", dtype=str)
    per_article = tx["article_id"].value_counts()
    assert per_article.iloc[:12].sum() > 0.3 * len(tx)  # a tenth of the catalogue sells a third
    repeats = tx.duplicated(["customer_id", "article_id"]).sum()
    assert repeats > 0.1 * len(tx)


def test_same_seed_same_files(tiny_shop, tmp_path):
    again = write_hm_shop(tmp_path / "again", TINY)
    for name in ("articles.csv", "customers.csv", "transactions_train.csv"):
        assert _digest(again / name) == _digest(tiny_shop / name)


def test_a_thousandth_of_hm_loads(tmp_path):
    sizes = {key: max(1, value // 1000) for key, value in HM_SIZE.items()}
    config = ScaleConfig(sizes["users"], sizes["items"], sizes["purchases"], images=False)
    ds = load_dataset(write_hm_shop(tmp_path / "hm", config), on_error="skip")
    assert ds.report.format == "hm"
    assert len(ds.interactions) == sizes["purchases"] and ds.n_items == sizes["items"]
    assert 0.9 * sizes["users"] < ds.n_users <= sizes["users"]
    assert ds.report.rejected == {"missing_image": sizes["items"]}  # only the pictures lack
    assert isinstance(ds.interactions["user_id"].dtype, pd.CategoricalDtype)


def test_images_are_written_where_the_loader_finds_them(tmp_path):
    config = ScaleConfig(n_users=20, n_items=8, n_purchases=50, image_size=(16, 24))
    ds = load_dataset(write_hm_shop(tmp_path / "hm", config), on_error="fail")
    assert ds.images_found() == 8


def test_cli_writes_the_hm_layout(tmp_path):
    out = tmp_path / "shop"
    args = ["data", "demo", "--out", str(out), "--users", "30", "--items", "10"]
    result = CliRunner().invoke(app, [*args, "--purchases", "200", "--no-images"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out / "transactions_train.csv")) == 200
    assert len(pd.read_csv(out / "customers.csv")) == 30


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--no-images"], "add --purchases"), (["--purchases", "0"], "--purchases must be")],
)
def test_cli_refuses_bad_flags(tmp_path, extra, message):
    result = CliRunner().invoke(app, ["data", "demo", "--out", str(tmp_path / "s"), *extra])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "s").exists()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_hundredth_of_hm_trains_end_to_end(tmp_path):
    """A 1% H&M-size shop (13,720 shoppers, 1,055 articles, 317,883 purchases) through the CLI:
    generated, trained for a few steps, written as a bundle and evaluated."""
    import json

    sizes = {key: value // 100 for key, value in HM_SIZE.items()}
    shop, bundle = tmp_path / "shop", tmp_path / "bundle"
    runner = CliRunner()
    made = runner.invoke(
        app,
        ["data", "demo", "--out", str(shop), "--users", str(sizes["users"]),
         "--items", str(sizes["items"]), "--purchases", str(sizes["purchases"]), "--no-images"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    settings = ["features.use_image=false", "model.content_affinity=false", "train.epochs=1"]
    settings += ["train.steps_per_epoch=3", "train.refit=false", "eval.bootstrap=0"]
    config = Path(__file__).resolve().parents[2] / "experiments" / "hm.toml"
    args = ["train", "--config", str(config), "--data", str(shop), "--out", str(bundle)]
    args += ["--cache-dir", str(tmp_path / "cache"), "--set", "train.loss=auto"]
    for setting in settings:
        args += ["--set", setting]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["history"][0]["loss_function"] == "ce"  # 1,055 items: the full softmax
    assert metrics["history"][0]["steps"] == 3
    assert 0 <= metrics["test"]["ndcg@12"] <= 1
    evaluated = runner.invoke(app, ["eval", "--bundle", str(bundle), "--data", str(shop)])
    assert evaluated.exit_code == 0, evaluated.output
