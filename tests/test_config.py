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
