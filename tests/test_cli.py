import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from seqrec.config import save_config

runner = CliRunner()


def test_data_stats_json_on_the_demo_shop(demo_shop, tmp_path):
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", str(demo_shop), "--json", str(out)])
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text())
    interactions = pd.read_csv(demo_shop / "interactions.csv")
    assert stats["users"] == interactions.user_id.nunique()
    assert stats["items"] == len(pd.read_csv(demo_shop / "items.csv"))
    assert stats["interactions"] == len(interactions)
    assert stats["images"] == stats["items"]


def test_data_stats_says_items_without_their_image_are_kept(demo_shop, tmp_path):
    shop = tmp_path / "shop"
    shutil.copytree(demo_shop, shop)
    first_image = pd.read_csv(shop / "items.csv")["image"][0]
    (shop / first_image).unlink()
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", str(shop), "--json", str(out)])
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text())
    assert stats["rejected_missing_image"] == 1
    assert stats["items"] == len(pd.read_csv(shop / "items.csv"))  # the item is still there
    assert stats["images"] == stats["items"] - 1
    assert "they stay in the catalogue" in " ".join(result.output.split())


def test_data_stats_on_real_data(shared_data, tmp_path):
    out = tmp_path / "hm.json"
    result = runner.invoke(app, ["data", "stats", str(shared_data / "hm"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text())
    assert (stats["users"], stats["items"], stats["interactions"], stats["images"]) == (
        1364,
        17033,
        31662,
        17033,
    )
    result = runner.invoke(app, ["data", "stats", str(shared_data / "ml-1m"), "--json", str(out)])
    stats = json.loads(out.read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == (6040, 3416, 999611)


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "stats", "/nonexistent/folder"], "nonexistent"),
        (
            ["train", "--data", "/nonexistent", "--out", "x", "--config", "/no/such.toml"],
            "such.toml",
        ),
        (["eval", "--bundle", "b", "--data", "d", "--stage", "nope"], "'nope' is not one of"),
        (
            ["serve", "--bundle", "b", "--port", "70000"],
            "'--port': Input should be less than or equal to 65535",
        ),
        (
            ["serve", "--bundle", "b", "--threads", "0"],
            "'--threads': Input should be greater than or equal to 1",
        ),
    ],
)
def test_user_errors_are_one_clear_message(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bench_refuses_an_unknown_model_before_running_anything(demo_shop, tmp_path):
    out = tmp_path / "results"
    result = runner.invoke(
        app,
        ["bench", "--data", str(demo_shop), "--out", str(out), "--models", "gru,lstm"],
    )
    assert result.exit_code == 2
    assert "model 'lstm'" in result.output and "Traceback" not in result.output
    assert not out.exists()  # no baseline ran, no report was written


def test_bad_config_key_names_the_key(demo_shop, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nlayerz = 2\n")
    result = runner.invoke(
        app,
        ["train", "--data", str(demo_shop), "--out", str(tmp_path / "b"), "--config", str(config)],
    )
    assert result.exit_code == 2
    assert "model.layerz" in result.output and "Traceback" not in result.output


def test_train_then_eval_on_a_catalogue_with_unseen_items(demo_shop, tiny_config, tmp_path):
    # the bundle is trained on a shop missing 15 products; eval runs on the full shop
    partial = tmp_path / "partial"
    shutil.copytree(demo_shop, partial)
    items = pd.read_csv(partial / "items.csv")
    hidden = set(items.item_id.sample(15, random_state=0))
    items[~items.item_id.isin(hidden)].to_csv(partial / "items.csv", index=False)
    inter = pd.read_csv(partial / "interactions.csv")
    inter[~inter.item_id.isin(hidden)].to_csv(partial / "interactions.csv", index=False)

    config_path = tmp_path / "tiny.toml"
    save_config(tiny_config, config_path)
    bundle = tmp_path / "bundle"
    args = ["train", "--data", str(partial), "--out", str(bundle), "--config", str(config_path)]
    result = runner.invoke(
        app,
        args
        + [
            "--model",
            "gru",
            "--loss",
            "ce",
            "--epochs",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--set",
            "model.content_affinity=true",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in (
        "config.toml",
        "items.parquet",
        "model.safetensors",
        "item_matrix.safetensors",
        "metrics.json",
        "bundle.json",
        "featurizer.pkl",
    ):
        assert (bundle / name).exists(), name
    assert "gru" in (bundle / "config.toml").read_text()

    out = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--bundle",
            str(bundle),
            "--data",
            str(demo_shop),
            "--json",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "15 items unknown to the bundle" in result.output
    metrics = json.loads(out.read_text())
    assert {"ndcg@10", "hr@10", "map@12", "recall@12", "cold:recall@12"} <= set(metrics)
    assert all(0.0 <= value <= 1.0 for value in metrics.values())


def test_serve_refuses_an_unknown_runtime(tmp_path):
    result = runner.invoke(app, ["serve", "--bundle", str(tmp_path), "--runtime", "tensorrt"])
    assert result.exit_code == 2
    assert "tensorrt" in result.output and "Traceback" not in result.output


def test_report_names_a_file_that_is_not_a_bench_report(tmp_path):
    other = tmp_path / "metrics.json"
    other.write_text('{"ndcg@10": 0.1}')
    result = runner.invoke(app, ["report", str(other)])
    assert result.exit_code == 2
    assert "not a seqrec bench report" in result.output and "Traceback" not in result.output
