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


def test_train_refuses_changed_settings_and_restart_trains_fresh(demo_shop, tiny_config, tmp_path):
    import torch

    from seqrec.config import apply_overrides
    from seqrec.experiment import run_train

    config_path, cache, out = tmp_path / "tiny.toml", tmp_path / "cache", tmp_path / "bundle"
    save_config(tiny_config, config_path)

    def killed(row):  # the first epoch's checkpoint is written; the run dies
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(tiny_config, demo_shop, out, cache_dir=cache, on_epoch=killed)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    args = ["train", "--data", str(demo_shop), "--out", str(out), "--config", str(config_path)]
    args += ["--cache-dir", str(cache), "--set", "train.lr=0.05"]

    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"train.lr: {tiny_config.train.lr!r} (checkpoint) -> 0.05 (now)" in result.output
    assert "--restart" in result.output and "Traceback" not in result.output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == saved["epoch"]
    assert not (out / "metrics.json").exists()

    result = runner.invoke(app, args + ["--restart"])
    assert result.exit_code == 0, result.output
    assert "--restart: removed" in result.output and "epoch   1" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    clean = run_train(
        apply_overrides(tiny_config, {"train.lr": 0.05}), demo_shop, tmp_path / "clean", cache
    )
    assert metrics["test"] == pytest.approx(clean.test.metrics)
    assert [row["loss"] for row in metrics["history"]] == pytest.approx(
        [row["loss"] for row in clean.train.history]
    )


def write_bad_checkpoint(kind: str, path) -> str:
    """A checkpoint `seqrec train` cannot resume, of one kind; what its message must say."""
    import pickle

    import torch

    if kind == "empty":
        path.write_bytes(b"")
        return "is empty"
    if kind == "truncated":
        torch.save({"model": {"weight": torch.zeros(64, 64)}}, path)
        path.write_bytes(path.read_bytes()[:5000])
        return "cannot be read (damaged or truncated"
    if kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 16)
        return "is not a seqrec checkpoint"
    if kind == "other pickle":
        path.write_bytes(pickle.dumps(shutil.Error("not a checkpoint")))
        return "is not a seqrec checkpoint"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)  # another model's weights alone
    return "is not a seqrec training checkpoint"


@pytest.mark.parametrize(
    "kind", ["empty", "truncated", "random bytes", "other pickle", "other state dict"]
)
def test_train_names_a_checkpoint_it_cannot_resume(demo_shop, tiny_config, tmp_path, kind):
    config_path, out = tmp_path / "tiny.toml", tmp_path / "bundle"
    save_config(tiny_config, config_path)
    out.mkdir()
    expected = write_bad_checkpoint(kind, out / "checkpoint.pt")
    args = ["train", "--data", str(demo_shop), "--out", str(out), "--config", str(config_path)]
    result = runner.invoke(app, args + ["--cache-dir", str(tmp_path / "cache")])
    output = "".join(result.output.split())  # rich folds long paths and lines
    assert result.exit_code == 2, result.output
    assert expected.replace(" ", "") in output and "bundle/checkpoint.pt" in output
    assert "--restart" in output
    assert "Traceback" not in result.output and "Aborted" not in result.output


# --- config values and preflight: refused before any data is read or any epoch runs ---------


def _train(demo_shop, out, *args):
    result = runner.invoke(app, ["train", "--data", str(demo_shop), "--out", str(out), *args])
    return result, "".join(result.output.split())  # rich folds long lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "train.epochs = 0 must be >= 1"),
        (["--epochs", "-1"], "train.epochs = -1 must be >= 1"),
        (["--set", "eval.main_metric=foo@10"], "eval.main_metric = 'foo@10' must be"),
        (["--set", "eval.ks=[0]"], "eval.ks[0] = 0 must be >= 1"),
        (["--set", "model.dim=0"], "model.dim = 0 must be >= 1"),
        (["--set", "train.lr=-1"], "train.lr = -1.0 must be > 0"),
        (["--set", "train.batch_size=0"], "train.batch_size = 0 must be >= 1"),
        (["--device", "tpu"], "train.device = 'tpu' is not a device"),
        (["--set", "features.image.runtime=tensorrt"], "features.image.runtime = 'tensorrt'"),
        (["--set", "features.text.encoder=bert"], "features.text.encoder = 'bert' is not one"),
        (["--loss", "hinge"], "train.loss = 'hinge' is not one of"),
    ],
)
def test_train_refuses_bad_values_before_reading_data(demo_shop, tmp_path, args, message):
    result, output = _train(demo_shop, tmp_path / "bundle", *args)
    assert result.exit_code == 2, result.output
    assert message.replace(" ", "") in output and "Traceback" not in result.output
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("device, missing", [("cuda", "CUDA"), ("mps", "MPS")])
def test_train_refuses_a_device_this_machine_lacks(demo_shop, tmp_path, device, missing):
    import torch

    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"this machine has {missing}")
    result, output = _train(demo_shop, tmp_path / "bundle", "--device", device)
    assert result.exit_code == 2, result.output
    assert f"train.device='{device}':{missing}" in output and "Traceback" not in result.output
    assert list((tmp_path / "bundle").iterdir()) == []  # no checkpoint, nothing written


def test_train_refuses_an_output_folder_it_cannot_use(demo_shop, tmp_path, monkeypatch):
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    for out, message in ((taken, "isafile,notafolder"), (taken / "b", "taken.txtisafile")):
        result, output = _train(demo_shop, out)
        assert result.exit_code == 2, result.output
        assert message in output and "Traceback" not in result.output
    assert taken.read_text() == "mine"

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("seqrec.preflight.tempfile.TemporaryFile", refuse)
    result, output = _train(demo_shop, tmp_path / "locked")
    assert result.exit_code == 2, result.output
    assert "cannotwriteintheoutputfolder" in output and "Permissiondenied" in output


@pytest.mark.parametrize("keep", ["first_per_user", "one_row"])
def test_train_refuses_data_with_nothing_to_learn_before_any_epoch(demo_shop, tmp_path, keep):
    shop = tmp_path / "shop"
    shutil.copytree(demo_shop, shop)
    inter = pd.read_csv(shop / "interactions.csv")
    inter = inter.drop_duplicates("user_id") if keep == "first_per_user" else inter.head(1)
    inter.to_csv(shop / "interactions.csv", index=False)
    # the flag spelling of a choice is read (the error comes from the data, not the config)
    result, output = _train(shop, tmp_path / "bundle", "--set", "split.method=leave-last-out")
    assert result.exit_code == 2, result.output
    assert "hasasingleinteraction:nothingtolearnfrom" in output
    assert "Traceback" not in result.output
    assert list((tmp_path / "bundle").iterdir()) == []  # no epoch ran, no checkpoint


# --- flag values: checked like config choices, - and _ alike ----------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "parquet"], "--format = 'parquet' is not one of: hm, sasrec, generic"),
        (["--on-error", "drop"], "--on-error = 'drop' is not one of: skip, fail"),
    ],
)
def test_data_stats_flags_are_checked_like_config_choices(demo_shop, args, message):
    result = runner.invoke(app, ["data", "stats", str(demo_shop), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_serve_runtime_is_checked_like_a_config_choice(tmp_path):
    result = runner.invoke(app, ["serve", "--bundle", str(tmp_path), "--runtime", "tensor_rt"])
    assert result.exit_code == 2, result.output
    assert "--runtime = 'tensor_rt' is not one of: auto, onnx, torchscript, eager" in " ".join(
        result.output.split()
    )


def test_bench_lists_take_either_spelling(demo_shop, tmp_path, monkeypatch):
    import cli

    runs = {}

    def record(experiment, data, out_dir, name, models, ablations, *rest):
        runs.update(models=models, ablations=ablations)

    monkeypatch.setattr(cli, "_run_bench", record)
    args = ["bench", "--data", str(demo_shop), "--out", str(tmp_path), "--models", "gru,lstm"]
    result = runner.invoke(app, [*args, "--ablations", "text-only,image_only,id-only"])
    assert result.exit_code == 0, result.output
    # unknown names stay as given: seqrec.bench.check_runs names them all together
    assert runs == {"models": ["gru", "lstm"], "ablations": ["text_only", "image_only", "id_only"]}


def test_train_flags_take_either_spelling(demo_shop, tmp_path, monkeypatch):
    seen = {}

    def record(experiment, *args, **kwargs):
        seen["config"] = experiment
        raise SystemExit(0)

    monkeypatch.setattr("seqrec.experiment.run_train", record)
    result, _ = _train(demo_shop, tmp_path / "b", "--loss", "sampled-softmax", "--model", "gru")
    assert result.exit_code == 0, result.output
    assert seen["config"].train.loss == "sampled_softmax" and seen["config"].model.model == "gru"


def test_eval_split_takes_either_spelling_and_names_the_flag(tmp_path, monkeypatch):
    seen = {}

    def record(bundle, data, stage, split, *rest):
        seen.update(stage=stage, split=split)
        raise SystemExit(0)

    monkeypatch.setattr("seqrec.experiment.run_eval", record)
    args = ["eval", "--bundle", str(tmp_path), "--data", str(tmp_path)]
    result = runner.invoke(app, [*args, "--split", "leave-last-basket-out", "--stage", "valid"])
    assert result.exit_code == 0, result.output
    assert seen == {"stage": "valid", "split": "leave_last_basket_out"}
    result = runner.invoke(app, [*args, "--split", "last-basket"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--split = 'last-basket' is not one of: leave_last_out," in " ".join(
        result.output.split()
    )


def test_serve_set_reaches_the_service_config(tmp_path, monkeypatch):
    import seqrec.serve

    started = {}
    monkeypatch.setattr(seqrec.serve, "run_server", lambda bundle, **kw: started.update(kw))
    args = ["serve", "--bundle", str(tmp_path), "--db", "events.db"]
    args += ["--set", "event_window_days=30", "--set", 'event_types=["purchase"]']
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = started["config"]
    assert (config.event_window_days, config.event_types) == (30, ["purchase"])
    assert config.db == "events.db" and config.runtime == "auto"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("event_window_days=0", "serve.event_window_days = 0.0 must be > 0"),
        ("window=3", "unknown key serve.window"),
        ('event_types=["buy"]', "serve.event_types[0] = 'buy' is not one of"),
    ],
)
def test_serve_set_refuses_bad_settings_by_name(tmp_path, setting, message):
    result = runner.invoke(app, ["serve", "--bundle", str(tmp_path), "--set", setting])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
