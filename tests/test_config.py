from pathlib import Path

import pytest

from seqrec.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_set,
    save_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "hm", "ml1m", "hm_tuned"])
def test_shipped_experiments_load_and_round_trip(name, tmp_path):
    config = load_config(ROOT / "experiments" / f"{name}.toml")
    assert config.name == name
    save_config(config, tmp_path / "saved.toml")
    assert load_config(tmp_path / "saved.toml") == config


def test_unknown_keys_and_wrong_types_are_named():
    with pytest.raises(ConfigError, match="train.epochz"):
        config_from_dict({"train": {"epochz": 3}})
    with pytest.raises(ConfigError, match="model.dim"):
        config_from_dict({"model": {"dim": "big"}})
    with pytest.raises(ConfigError, match="eval.ks"):
        config_from_dict({"eval": {"ks": 10}})
    with pytest.raises(ConfigError, match="not valid TOML"):
        bad = ROOT / "tests" / "_bad.toml"
        try:
            bad.write_text("[model\n")
            load_config(bad)
        finally:
            bad.unlink()


def test_overrides_are_type_checked_and_leave_the_original_alone():
    base = ExperimentConfig()
    changed = apply_overrides(
        base, {"model.dim": 32, "train.lr": 1, "model.item_net.fusion": "product"}
    )
    assert (changed.model.dim, changed.train.lr, changed.model.item_net.fusion) == (
        32,
        1.0,
        "product",
    )
    assert base.model.dim == 64
    with pytest.raises(ConfigError, match="train.patience"):
        apply_overrides(base, {"train.patience": "soon"})
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(base, {"model.depth": 3})


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.loss", "hinge"),
        ("train.target", "next_week"),
        ("model.model", "lstm"),
        ("model.history_order", "frequency"),
        ("model.item_net.fusion", "sum"),
        ("split.method", "random"),
        ("features.text.encoder", "bert"),
        ("features.text.stop_words", "french"),
        ("features.image.runtime", "trt"),
        ("data.on_error", "ignore"),
        ("train.optimizer", "sgd"),
        ("train.negatives", "popular"),
    ],
)
def test_names_outside_their_choices_are_refused_when_read(key, value):
    with pytest.raises(ConfigError, match=f"{key} = '{value}' is not one of"):
        apply_overrides(ExperimentConfig(), {key: value})


def test_parse_set_reads_toml_values_and_bare_words():
    pairs = ["model.dim=128", "train.lr=3e-4", "train.negatives=trained", "x.y=[1, 2]"]
    overrides = parse_set(pairs)
    assert overrides == {
        "model.dim": 128,
        "train.lr": 3e-4,
        "train.negatives": "trained",
        "x.y": [1, 2],
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["model.dim"])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.epochs", 0, "train.epochs = 0 must be >= 1"),
        ("train.epochs", -1, "train.epochs = -1 must be >= 1"),
        ("train.batch_size", 0, "train.batch_size = 0 must be >= 1"),
        ("train.lr", -1, "train.lr = -1.0 must be > 0"),
        ("train.lr", float("nan"), "train.lr = nan must be a finite number"),
        ("model.dim", 0, "model.dim = 0 must be >= 1"),
        ("model.dropout", 1.0, "model.dropout = 1.0 must be < 1.0"),
        ("model.heads", 3, "model.heads = 3 does not divide model.dim = 64"),
        ("eval.ks", [0], r"eval.ks\[0\] = 0 must be >= 1"),
        ("eval.ks", [], "eval.ks must not be empty"),
        ("eval.main_metric", "foo@10", "eval.main_metric = 'foo@10' must be <metric>@<k>"),
        ("eval.main_metric", "ndcg@20", r"k in eval.ks = \[10, 12\]"),
        ("train.device", "tpu", "train.device = 'tpu' is not a device"),
        ("features.image.runtime", "tensorrt", "features.image.runtime = 'tensorrt' is not one"),
        ("features.image.preprocessing", "stretch", "features.image.preprocessing = 'stretch'"),
        ("features.image.pad_color", "black", "features.image.pad_color = 'black'"),
        ("features.image.size", 8, "features.image.size = 8 must be >= 16"),
        ("features.text.column_names", "maybe", "features.text.column_names = 'maybe'"),
        ("features.text.ngram_range", [2, 1], "features.text.ngram_range = \\(2, 1\\) needs"),
        ("features.text.min_df", 0, "features.text.min_df = 0 must be >= 1"),
        ("split.test_start", "someday", "split.test_start = 'someday' is not a date"),
        ("model.item_net.modalities", ["smell"], r"modalities\[0\] = 'smell' is not one of"),
    ],
)
def test_values_outside_their_constraint_are_refused_when_read(key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(ExperimentConfig(), {key: value})


def test_a_temporal_split_needs_its_cutoff_when_read():
    with pytest.raises(ConfigError, match="split.test_start is needed by the temporal split"):
        apply_overrides(ExperimentConfig(), {"split.method": "temporal"})
    config = apply_overrides(
        ExperimentConfig(), parse_set(["split.method=temporal", "split.test_start=2020-09-01"])
    )
    assert config.split.test_start == "2020-09-01"  # a TOML date on the command line: a string


def test_choices_and_keys_are_read_in_flag_spelling():
    overrides = parse_set(
        ["split.method=leave-last-basket-out", "train.loss=sampled-softmax", "train.batch-size=8"]
    )
    config = apply_overrides(ExperimentConfig(), overrides)
    assert config.split.method == "leave_last_basket_out"
    assert (config.train.loss, config.train.batch_size) == ("sampled_softmax", 8)
    read = config_from_dict({"train": {"target": "next-basket", "eval-batch-size": 16}})
    assert (read.train.target, read.train.eval_batch_size) == ("next_basket", 16)


def test_main_metric_accepts_every_computed_metric_at_a_listed_k():
    for metric in ("hr@12", "precision@10", "recall@12", "f1@10", "map@12", "ndcg@10", "mrr"):
        assert apply_overrides(ExperimentConfig(), {"eval.main_metric": metric})


def test_an_unavailable_device_is_refused_before_training_not_when_read(tmp_path):
    import torch

    from seqrec.config import check_runnable

    config = apply_overrides(ExperimentConfig(), {"train.device": "cuda"})
    save_config(config, tmp_path / "gpu.toml")
    assert load_config(tmp_path / "gpu.toml").train.device == "cuda"  # a bundle's config reads
    check_runnable(apply_overrides(config, {"train.device": "cpu"}))
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="train.device = 'cuda': CUDA is not available"):
        check_runnable(config)


def test_mps_is_refused_where_there_is_none():
    import torch

    from seqrec.config import check_runnable

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    config = apply_overrides(ExperimentConfig(), {"train.device": "mps"})
    with pytest.raises(ConfigError, match="train.device = 'mps': MPS"):
        check_runnable(config)
