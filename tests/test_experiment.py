"""`seqrec.experiment`'s command functions (`run_eval`, `run_encode`, `demo_config`), each
checked against what its `seqrec` command prints or writes."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from seqrec.config import ConfigError, apply_overrides
from seqrec.data.load import load_dataset
from seqrec.experiment import demo_config, run_encode, run_eval, run_train
from seqrec.features.build import fit_item_features

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(demo_shop, tiny_config, tmp_path_factory):
    """A tiny bundle trained on the demo shop (one epoch), written once for this module."""
    out = tmp_path_factory.mktemp("bundle")
    config = apply_overrides(tiny_config, {"train.epochs": 1})
    run_train(config, demo_shop, out, cache_dir=out.parent / "cache")
    return out


def _eval_json(bundle, demo_shop, tmp_path, *args):
    out = tmp_path / "eval.json"
    command = ["eval", "--bundle", str(bundle), "--data", str(demo_shop), "--json", str(out)]
    result = runner.invoke(app, [*command, "--cache-dir", str(tmp_path / "cache"), *args])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_run_eval_gives_the_figures_seqrec_eval_writes(bundle, demo_shop, tmp_path):
    written, output = _eval_json(bundle, demo_shop, tmp_path)
    outcome = run_eval(bundle, demo_shop, cache_dir=tmp_path / "cache")
    assert outcome.result.metrics == pytest.approx(written)
    assert outcome.result.stage == "test" and outcome.new_items == 0 and not outcome.refit
    assert f"test ({outcome.users:,} users)" in output
    # the bundle's own test figures: the same model on the same split
    saved = json.loads((bundle / "metrics.json").read_text())["test"]
    assert outcome.result.metrics == pytest.approx(saved)


def test_eval_split_and_stage_take_either_spelling(bundle, demo_shop, tmp_path):
    written, output = _eval_json(
        bundle, demo_shop, tmp_path, "--split", "leave-last-out", "--stage", "valid"
    )
    outcome = run_eval(bundle, demo_shop, stage="valid", split="leave_last_out")
    assert outcome.result.metrics == pytest.approx(written)
    assert outcome.result.stage == "valid" and "valid (" in output
    other = run_eval(bundle, demo_shop, stage="valid")  # the bundle's leave_last_basket_out
    assert other.result.metrics != pytest.approx(written)


def test_eval_users_ranks_a_seeded_sample_of_the_users(bundle, demo_shop, tmp_path):
    written, output = _eval_json(bundle, demo_shop, tmp_path, "--users", "7")
    assert "test (7 users)" in output
    outcome = run_eval(bundle, demo_shop, cache_dir=tmp_path / "cache", users=7)
    assert outcome.users == 7
    assert outcome.result.metrics == pytest.approx(written, nan_ok=True)
    whole = run_eval(bundle, demo_shop, cache_dir=tmp_path / "cache", users=0)
    assert whole.users > 7 and whole.result.counts["users"] == whole.users
    assert outcome.result.counts["users"] == 7


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stage": "vaild"}, "stage = 'vaild' is not one of: test, valid"),
        ({"split": "random"}, "split.method = 'random' is not one of"),
    ],
)
def test_run_eval_refuses_a_bad_choice_before_reading_anything(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        run_eval(tmp_path / "no-bundle", tmp_path / "no-data", **options)


def test_run_encode_builds_the_features_prepare_would(demo_shop, tiny_config, tmp_path):
    built = run_encode(tiny_config, demo_shop, cache_dir=tmp_path / "cache")
    direct = fit_item_features(load_dataset(demo_shop), tiny_config.features, cache_dir=False)
    assert built.features.n_items == direct.features.n_items == 150
    assert np.allclose(built.features.text.numpy(), direct.features.text.numpy(), atol=1e-5)
    assert any((tmp_path / "cache").iterdir())  # the encoding is kept for the next run


def test_encode_rank_images_encodes_every_distinct_image_of_one_rank(demo_shop, tmp_path):
    from seqrec.features.build import FeatureConfig
    from seqrec.features.image import ImageConfig
    from seqrec.features.shard import encode_rank_images

    dataset = load_dataset(demo_shop)
    image = ImageConfig(backbone="tiny_cnn", runtime="torch", size=32, num_workers=0)
    assert encode_rank_images(dataset, FeatureConfig(use_image=False), tmp_path) is None
    report = encode_rank_images(dataset, FeatureConfig(image=image), tmp_path)
    assert report.encoded == 150  # a single process is rank 0 of 1: the whole catalogue


def test_demo_config_is_the_checked_in_demo_experiment():
    config = demo_config()
    assert config.name == "demo" and config.split.method == "leave_last_basket_out"
