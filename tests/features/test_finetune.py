"""Image fine-tuning (`seqrec.features.finetune`) on the tiny demo shop with the tiny CNN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from seqrec.config import ConfigError
from seqrec.constraints import check_config
from seqrec.data.dataset import DataError
from seqrec.data.load import load_dataset
from seqrec.data.split import SplitConfig
from seqrec.features.build import FeatureConfig, ItemFeaturizer, encode_new_items, fit_item_features
from seqrec.features.cache import hash_files
from seqrec.features.finetune import finetune_images
from seqrec.features.finetune_data import co_purchase_pairs, trunk_cache
from seqrec.features.image_config import FinetuneConfig, ImageConfig
from seqrec.features.image_encode import encode_images, image_settings
from seqrec.features.image_models import build_backbone
from seqrec.features.image_transforms import load_image, normalise
from seqrec.features.image_tuned import TOWER_FILE, backbone_stages, split_stages

TINY = ImageConfig(
    backbone="tiny_cnn",
    size=32,
    batch_size=16,
    runtime="torch",
    finetune=FinetuneConfig(
        epochs=6, batch_size=32, lr=0.01, min_class_items=3, views=1, dim=16, trainable_blocks=2
    ),
)


def tuned(config: ImageConfig, weights) -> ImageConfig:
    return dataclasses.replace(
        config, finetune=dataclasses.replace(config.finetune, weights=str(weights))
    )


@pytest.fixture(scope="module")
def shop(demo_shop):
    return load_dataset(demo_shop)


@pytest.fixture(scope="module")
def run(shop, tmp_path_factory):
    """One fine-tuning run: (report, tower folder, feature cache folder)."""
    root = tmp_path_factory.mktemp("finetune")
    report = finetune_images(shop, TINY, SplitConfig(), root / "tower", cache_dir=root / "cache")
    return report, root / "tower", root / "cache"


def test_fine_tuning_lowers_the_loss_and_measures_held_out_items(run):
    report, tower, _ = run
    assert report.losses[-1]["total"] < report.losses[0]["total"]
    assert report.losses[-1]["co_purchase"] < report.losses[0]["co_purchase"]
    assert (tower / TOWER_FILE).is_file()
    assert set(report.accuracy) == {"category", "colour"}
    for scores in report.accuracy.values():  # both probes, and the heads the objective trained
        assert set(scores) == {"probe", "tuned_probe", "tuned", "items"}
        assert all(0.0 <= scores[name] <= 1.0 for name in ("probe", "tuned_probe", "tuned"))
    assert report.heldout_items > 0 and report.pairs > 0


def test_trunk_cache_gives_the_whole_network_outputs(shop, tmp_path):
    paths = shop.items["image_path"].tolist()[:20]
    backbone = build_backbone(TINY)
    trunk, tail = split_stages(backbone_stages("tiny_cnn", backbone.module), 2)
    cache = trunk_cache(paths, hash_files(paths), trunk, TINY, tmp_path)
    with torch.no_grad():
        split = tail.eval()(torch.from_numpy(np.array(cache.plain)))  # [20, 32]
    whole, _ = encode_images(paths, TINY)  # the frozen encoder, one network
    np.testing.assert_allclose(split.numpy(), whole, atol=1e-5)
    assert cache.views is not None and cache.views.shape[:2] == (1, 20)


def test_tuned_catalogue_vectors_match_the_tuned_encoder(shop, run):
    _, tower, cache_dir = run
    paths = shop.items["image_path"].tolist()
    cached, mask = encode_images(paths, tuned(TINY, tower), cache_dir=cache_dir)
    assert mask.all()
    fresh, _ = encode_images(paths[:10], tuned(TINY, tower))  # no cache: the whole tower runs
    np.testing.assert_allclose(cached[:10], fresh, atol=1e-4)
    assert fresh.shape[1] == TINY.finetune.dim


def test_a_pooled_tower_encodes_the_tuned_features_under_the_projection(shop, run):
    _, tower, cache_dir = run
    projected = tuned(TINY, tower)
    pooled = dataclasses.replace(
        projected, finetune=dataclasses.replace(projected.finetune, output="pooled")
    )
    assert image_settings(pooled) != image_settings(projected)  # its own cache entries
    paths = shop.items["image_path"].tolist()[:6]
    vectors, mask = encode_images(paths, pooled, cache_dir=cache_dir)
    network = build_backbone(pooled)
    assert mask.all() and vectors.shape[1] == network.dim != TINY.finetune.dim
    pixels = [normalise(load_image(path, pooled), network.mean, network.std) for path in paths]
    images = torch.from_numpy(np.stack(pixels))  # [B, 3, S, S]
    with torch.no_grad():
        features = network.module.tail(network.module.trunk(images))  # [B, C]
        projected_vectors = network.module.projection(features)  # [B, dim]
    np.testing.assert_allclose(vectors, features.numpy(), atol=1e-4)
    head, _ = encode_images(paths, projected, cache_dir=cache_dir)
    np.testing.assert_allclose(head, projected_vectors.numpy(), atol=1e-4)


def test_a_pooled_co_purchase_tuning_caches_what_its_tower_encodes(shop, tmp_path):
    finetune = dataclasses.replace(
        TINY.finetune, epochs=1, output="pooled", objectives=["co_purchase"]
    )
    config = dataclasses.replace(TINY, finetune=finetune)
    cache_dir = tmp_path / "cache"
    report = finetune_images(shop, config, SplitConfig(), tmp_path / "tower", cache_dir=cache_dir)
    # no heads were trained, so the held-out accuracy is the probe on frozen vs on tuned vectors
    assert set(report.accuracy) == {"category", "colour"}
    assert all(
        set(scores) == {"probe", "tuned_probe", "items"} for scores in report.accuracy.values()
    )
    paths = shop.items["image_path"].tolist()
    cached, mask = encode_images(paths, tuned(config, tmp_path / "tower"), cache_dir=cache_dir)
    fresh, _ = encode_images(paths[:8], tuned(config, tmp_path / "tower"))  # the whole tower
    assert mask.all() and cached.shape[1] == build_backbone(TINY).dim
    np.testing.assert_allclose(cached[:8], fresh, atol=1e-4)


def test_cache_key_changes_with_the_tuned_weights(shop, run, tmp_path):
    report, tower, _ = run
    first = image_settings(tuned(TINY, tower))
    assert first != image_settings(TINY)
    config = dataclasses.replace(
        TINY, finetune=dataclasses.replace(TINY.finetune, epochs=1, objectives=["attributes"])
    )
    finetune_images(shop, config, SplitConfig(), tmp_path / "other", cache_dir=False)
    second = image_settings(tuned(TINY, tmp_path / "other"))
    assert second["weights"] != first["weights"]


def test_a_saved_featurizer_encodes_a_new_image_with_the_tuned_tower(shop, run, tmp_path):
    _, tower, cache_dir = run
    features = FeatureConfig(image=tuned(TINY, tower), use_text=False, use_numeric=False)
    built = fit_item_features(shop, features, cache_dir=cache_dir)
    built.featurizer.save(tmp_path / "featurizer.pkl")
    featurizer = ItemFeaturizer.load(tmp_path / "featurizer.pkl")  # what a bundle keeps
    new = shop.items.iloc[[0]].copy()
    new_image = tmp_path / "new.png"
    image = load_image(shop.items["image_path"].iloc[3], TINY)
    from PIL import Image

    Image.fromarray(image[:, ::-1].copy()).save(new_image)  # a picture the shop never had
    new["item_id"], new["image_path"] = "new-item", str(new_image)
    evaluated = encode_new_items(pd.DataFrame(new), featurizer, cache_dir=tmp_path / "eval")
    served = encode_new_items(pd.DataFrame(new), featurizer, cache_dir=False)
    assert torch.equal(evaluated.features.image, served.features.image)
    from seqrec.features.image_tuned import load_tower

    model, _ = load_tower(tuned(TINY, tower))
    pixels = normalise(load_image(new_image, TINY), *((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    with torch.no_grad():
        direct = model(torch.from_numpy(pixels)[None])  # [1, dim]
    np.testing.assert_allclose(served.features.image.numpy(), direct.numpy(), atol=1e-5)


def test_co_purchase_pairs_come_from_consecutive_baskets():
    train = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b"],
            "timestamp": [1, 1, 2, 3, 1],
            "item_idx": [0, 1, 2, 3, 4],
        }
    )
    pairs = co_purchase_pairs(train, np.ones(5, dtype=bool), 100, 0)
    assert pairs.tolist() == [[0, 2], [1, 2], [2, 3]]
    allowed = np.array([True, False, True, True, True])
    assert co_purchase_pairs(train, allowed, 100, 0).tolist() == [[0, 2], [2, 3]]


def test_bad_settings_are_named(shop, tmp_path):
    with pytest.raises(ConfigError, match="objectives"):
        check_config(FinetuneConfig(objectives=["style"]), "features.image.finetune")
    with pytest.raises(DataError, match="no tuned image tower"):
        build_backbone(tuned(TINY, tmp_path / "absent"))
    config = dataclasses.replace(TINY, backbone="resnet18")
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        finetune_images(shop, config, SplitConfig(), tmp_path / "x", cache_dir=False)


def test_a_bundle_carries_its_tuned_tower_to_eval_and_serve(
    shop, demo_shop, tiny_config, run, tmp_path
):
    from PIL import Image

    from seqrec.bundle import load_bundle, model_for_catalogue
    from seqrec.config import apply_overrides
    from seqrec.experiment import run_train
    from seqrec.features.image_tuned import load_tower
    from seqrec.serve import ServeConfig
    from seqrec.serve.live_catalogue import LiveCatalogue, NewItem
    from seqrec.serve.store import Store

    _, tower, _ = run
    moved = tmp_path / "tower"  # the tower's folder, gone once the bundle is written
    moved.mkdir()
    (moved / TOWER_FILE).write_bytes((tower / TOWER_FILE).read_bytes())
    image = {
        f"features.image.{key}": value for key, value in vars(TINY).items() if key != "finetune"
    }
    config = apply_overrides(
        tiny_config,
        {
            **image,
            "features.use_image": True,
            "features.image.finetune.weights": str(moved),
            "train.epochs": 1,
        },
    )
    run_train(config, demo_shop, tmp_path / "bundle", cache_dir=tmp_path / "cache")
    (moved / TOWER_FILE).unlink()
    bundle = load_bundle(tmp_path / "bundle")
    assert TOWER_FILE in bundle.manifest["files"]

    new_image = tmp_path / "new.png"
    picture = load_image(shop.items["image_path"].iloc[3], TINY)
    Image.fromarray(picture[:, ::-1].copy()).save(new_image)  # a picture the shop never had
    new = shop.items.iloc[[0]].copy()  # what `seqrec eval --data` reads for a new item
    new["item_id"], new["image_path"] = "new-item", str(new_image)
    items = pd.concat([shop.items, new], ignore_index=True)
    _, evaluated, added = model_for_catalogue(bundle, items, cache_dir=False)
    assert added == 1

    catalogue = LiveCatalogue(bundle, Store(f"sqlite:///{tmp_path / 'shop.db'}"), ServeConfig())
    fields = {"item_id": "new-item", "title": str(new["title"].iloc[0])}
    catalogue.add(NewItem("new-item", fields, str(new_image)), new_image.read_bytes(), ".png")
    served = catalogue.bundle.features.image[-1]
    torch.testing.assert_close(served, evaluated.image[-1])

    model, _ = load_tower(tuned(TINY, tmp_path / "bundle"))  # the bundle's own copy
    pixels = normalise(load_image(new_image, TINY), *((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    with torch.no_grad():
        direct = model(torch.from_numpy(pixels)[None])[0]  # [dim]
    np.testing.assert_allclose(served.float().numpy(), direct.numpy(), atol=1e-5)


def test_finetune_command_writes_the_tower_where_the_config_uses_it(demo_shop, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    settings = ["backbone=tiny_cnn", "size=32", "runtime=torch", "finetune.epochs=1"]
    settings += ["finetune.dim=8", "finetune.views=0", "finetune.min_class_items=3"]
    args = ["finetune-images", "--data", str(demo_shop), "--cache-dir", str(tmp_path / "cache")]
    for setting in settings:
        args += ["--set", f"features.image.{setting}"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "give --out DIR" in refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    tower = tmp_path / "tower" / TOWER_FILE
    used = ["--set", f"features.image.finetune.weights={tower}"]  # the file, as a config may say
    result = CliRunner().invoke(app, args + used)
    assert result.exit_code == 0, result.output
    assert tower.is_file()
