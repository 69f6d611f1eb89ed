"""Nothing fails once training has started for a reason knowable before it: the output folder,
the device and the split are checked first, and `fit` never runs an empty epoch."""

import os

import numpy as np
import pandas as pd
import pytest

from seqrec.config import ConfigError, ExperimentConfig, apply_overrides
from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport, sort_interactions
from seqrec.data.split import SplitConfig, split_dataset
from seqrec.models.recommender import ModelConfig, build_model
from seqrec.preflight import check_out_dir, check_trainable
from seqrec.train import TrainConfig, fit


def make_split(rows, method="leave_last_out", **split_options):
    inter = pd.DataFrame(rows, columns=["user_id", "item_idx", "timestamp"])
    inter = inter.astype({"item_idx": np.int64, "timestamp": np.int64})
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(10)]})
    dataset = Dataset("t", items, sort_interactions(inter), ItemSchema(), LoadReport("t"), "day")
    return split_dataset(dataset, SplitConfig(method, **split_options))


def events(user, n, start=0):
    return [(user, (start + i) % 10, i) for i in range(n)]


def test_fit_refuses_a_split_without_training_pairs_before_any_epoch(tmp_path):
    split = make_split(events("a", 2) + events("b", 3))  # train keeps one interaction each
    model = build_model(ModelConfig(model="gru", dim=8, layers=1, max_len=5), None, 10)
    epochs = []
    with pytest.raises(DataError, match="0 training sequences have a next_item target"):
        fit(
            model,
            split,
            TrainConfig(epochs=2, device="cpu"),
            max_len=5,
            validate=lambda scorer, task: {"ndcg@10": 0.0},
            main_metric="ndcg@10",
            checkpoint_path=tmp_path / "checkpoint.pt",
            on_epoch=epochs.append,
        )
    assert epochs == [] and not (tmp_path / "checkpoint.pt").exists()


def test_fit_refuses_a_split_without_validation_users():
    split = make_split(events("a", 9), "temporal", test_start=8, valid_start=8)
    model = build_model(ModelConfig(model="gru", dim=8, layers=1, max_len=5), None, 10)
    with pytest.raises(DataError, match="no validation user"):
        fit(model, split, TrainConfig(device="cpu"), 5, lambda s, t: {}, "ndcg@10")


@pytest.mark.parametrize(
    "rows, options, message",
    [
        (events("a", 1) + events("b", 1), {}, r"every user \(2\) has a single interaction"),
        (events("a", 1), {}, r"every user \(1\) has a single interaction"),
        (events("a", 2) + events("b", 3), {}, "no user has 2\\+ training interactions"),
        (
            events("a", 9),
            {"method": "temporal", "test_start": 8, "valid_start": 8},
            "no validation user after the temporal split",
        ),
    ],
)
def test_a_split_with_nothing_to_learn_is_refused_before_training(rows, options, message):
    split = make_split(rows, **options)
    with pytest.raises(DataError, match=message):
        check_trainable(split, ExperimentConfig())


def test_enough_history_passes_and_gbce_needs_enough_items():
    split = make_split(events("a", 6) + events("b", 4, start=3))
    check_trainable(split, ExperimentConfig())
    gbce = apply_overrides(ExperimentConfig(), {"train.loss": "gbce", "train.n_negatives": 9})
    check_trainable(split, gbce)  # 10 items: 9 negatives can be drawn
    with pytest.raises(ConfigError, match="train.n_negatives = 10 must be below the 10 items"):
        check_trainable(split, apply_overrides(gbce, {"train.n_negatives": 10}))


def test_output_folder_must_be_a_writable_folder(tmp_path, monkeypatch):
    check_out_dir(tmp_path / "new" / "bundle")  # made, with its parents
    assert (tmp_path / "new" / "bundle").is_dir()
    assert list((tmp_path / "new" / "bundle").iterdir()) == []  # the probe is gone
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(DataError, match="is a file, not a folder"):
        check_out_dir(tmp_path / "file")
    with pytest.raises(DataError, match="file is a file"):
        check_out_dir(tmp_path / "file" / "bundle")
    assert (tmp_path / "file").read_text() == "keep me"

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("seqrec.preflight.tempfile.TemporaryFile", refuse)
    with pytest.raises(DataError, match="cannot write in the output folder .*Permission denied"):
        check_out_dir(tmp_path / "new")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_output_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(DataError, match="cannot write in the output folder"):
            check_out_dir(locked)
    finally:
        locked.chmod(0o700)
