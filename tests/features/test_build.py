import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport
from seqrec.features.build import (
    FeatureConfig,
    ItemFeaturizer,
    encode_new_items,
    fit_item_features,
)
from seqrec.features.image import ImageConfig
from seqrec.features.text import TextConfig, TextEncoder

CONFIG = FeatureConfig(
    text=TextConfig(min_df=1, svd_dim=4),
    image=ImageConfig(backbone="tiny_cnn", size=32, batch_size=2, num_workers=1),
)


def make_dataset(folder, n=8) -> Dataset:
    images = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        Image.new("RGB", (20, 30), (25 * i, 255 - 25 * i, 128)).save(path)
        images.append(str(path))
    images[3] = None  # no photo
    (folder / "5.jpg").write_bytes(b"not a jpeg")  # corrupt photo
    items = pd.DataFrame(
        {
            "item_id": [f"a{i}" for i in range(n)],
            "name": [
                "Strap top",
                "Strap top",
                "Slim jeans",
                "Skinny jeans",
                "Bikini top",
                "Wool jumper",
                "Denim shorts",
                np.nan,
            ][:n],
            "desc": [
                "Jersey top with straps",
                "Jersey top in white",
                "Jeans in denim",
                "Jeans in superstretch denim",
                "Padded bikini top",
                "Soft wool jumper",
                "Short denim shorts",
                np.nan,
            ][:n],
            "colour": ["Black", "White", "Blue", "Black", "Red", None, "Blue", "Grey"][:n],
            "type": ["Top", "Top", "Trousers", "Trousers", "Swimwear", "Sweater", "Shorts", "Top"][
                :n
            ],
            "price": [10.0, 12.0, 30.0, np.nan, 15.0, 40.0, 20.0, 25.0][:n],
            "image_path": images,
        }
    )
    schema = ItemSchema(
        text_columns=["name", "desc"],
        category_columns=["colour", "type"],
        numeric_columns=["price"],
        image_column="image_path",
        price_column="price",
    )
    interactions = pd.DataFrame(
        {
            "user_id": ["u"],
            "item_idx": np.array([0], dtype=np.int64),
            "timestamp": np.array([0], dtype=np.int64),
        }
    )
    return Dataset("toy", items, interactions, schema, LoadReport("generic"))


def test_build_all_modalities(tmp_path):
    dataset = make_dataset(tmp_path)
    build = fit_item_features(dataset, CONFIG, cache_dir=tmp_path / "cache")
    f = build.features
    assert f.n_items == 8 and f.modalities() == ["text", "image", "categories", "numeric"]
    assert f.text.shape == (8, 4) and f.text.dtype == torch.float32
    assert torch.all(f.text[7] == 0)  # no text at all
    assert f.image.shape == (8, 32) and f.image_mask.dtype == torch.bool
    assert f.image_mask.tolist() == [True, True, True, False, True, False, True, True]
    assert f.categories.dtype == torch.int64 and f.categories.shape == (8, 2)
    assert f.category_cardinalities == [6, 6]  # 5 colours + missing; 5 types + missing
    assert f.categories[5, 0] == 0 and f.categories[0, 0] == f.categories[3, 0] != 0
    assert f.numeric.shape == (8, 1) and f.numeric[3, 0] == 0
    known = f.numeric[[0, 1, 2, 4, 5, 6, 7], 0]
    assert abs(float(known.mean())) < 1e-5 and abs(float(known.std(correction=0)) - 1) < 1e-4
    assert f.numeric[5, 0] > f.numeric[1, 0]  # dearer is higher
    report = build.report
    assert (report.image.encoded, report.image.missing, report.image.failed) == (6, 1, 1)
    assert report.text_empty == 1 and not report.text_from_cache
    assert any("1 unreadable" in line for line in report.lines())


def test_second_run_comes_from_the_cache(tmp_path):
    dataset = make_dataset(tmp_path)
    first = fit_item_features(dataset, CONFIG, cache_dir=tmp_path / "cache")
    second = fit_item_features(dataset, CONFIG, cache_dir=tmp_path / "cache")
    assert second.report.text_from_cache
    assert (second.report.image.cached, second.report.image.encoded) == (6, 0)
    torch.testing.assert_close(second.features.text, first.features.text)
    torch.testing.assert_close(second.features.image, first.features.image)
    # the cached text encoder still encodes new items
    assert second.featurizer.text_encoder.transform(["black strap top"]).shape == (1, 4)


def test_no_cache_and_switched_off_modalities(tmp_path):
    dataset = make_dataset(tmp_path)
    config = FeatureConfig(
        text=CONFIG.text,
        image=CONFIG.image,
        use_image=False,
        use_numeric=False,
        text_columns=["name"],
    )
    features = fit_item_features(dataset, config, cache_dir=False).features
    assert features.modalities() == ["text", "categories"]
    assert features.image_mask is None
    assert not (tmp_path / "cache").exists()


def test_a_saved_object_of_another_kind_is_refused_by_name(tmp_path):
    config = FeatureConfig(text=TextConfig(min_df=1, svd_dim=4), use_image=False)
    featurizer = fit_item_features(make_dataset(tmp_path), config, cache_dir=False).featurizer
    featurizer.save(tmp_path / "featurizer.pkl")
    featurizer.text_encoder.save(tmp_path / "text.pkl")
    assert isinstance(TextEncoder.load(tmp_path / "text.pkl"), TextEncoder)
    with pytest.raises(DataError, match="text.pkl does not hold an ItemFeaturizer"):
        ItemFeaturizer.load(tmp_path / "text.pkl")
    with pytest.raises(DataError, match="featurizer.pkl does not hold a TextEncoder"):
        TextEncoder.load(tmp_path / "featurizer.pkl")


def test_encode_new_items_with_a_saved_featurizer(tmp_path):
    dataset = make_dataset(tmp_path)
    build = fit_item_features(dataset, CONFIG, cache_dir=tmp_path / "cache")
    build.featurizer.save(tmp_path / "featurizer.pkl")
    featurizer = ItemFeaturizer.load(tmp_path / "featurizer.pkl")
    new_items = dataset.items.iloc[[0, 2]].copy()
    new_items["colour"] = ["Black", "Purple"]  # Purple was never seen
    new_items["price"] = [10.0, 1000.0]
    new = encode_new_items(new_items, featurizer, cache_dir=tmp_path / "cache").features
    torch.testing.assert_close(new.text, build.features.text[[0, 2]], atol=1e-5, rtol=0)
    torch.testing.assert_close(new.image, build.features.image[[0, 2]])
    assert new.categories[:, 0].tolist() == [build.features.categories[0, 0].item(), 0]
    assert new.category_cardinalities == build.features.category_cardinalities
    assert new.numeric[0, 0] == build.features.numeric[0, 0] and new.numeric[1, 0] > 2


def test_sentence_text_is_cached_per_text(tmp_path, monkeypatch):
    from seqrec.features import text as text_module

    calls = []

    class FakeModel:
        def encode(self, texts, **kwargs):
            calls.append(list(texts))
            return np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3)

        def get_embedding_dimension(self):
            return 3

    monkeypatch.setattr(text_module, "load_sentence_model", lambda name, device: FakeModel())
    dataset = make_dataset(tmp_path)
    config = FeatureConfig(text=TextConfig(encoder="sentence", model="fake"), use_image=False)
    features = fit_item_features(dataset, config, cache_dir=tmp_path / "cache").features
    assert features.text.shape == (8, 3) and torch.all(features.text[7] == 0)
    assert len(calls[0]) == 7  # the two identical "Strap top..." texts differ by desc: 7 unique
    dataset.items.loc[0, "desc"] = "Changed description"
    build = fit_item_features(dataset, config, cache_dir=tmp_path / "cache")
    assert len(calls) == 2 and len(calls[1]) == 1  # only the changed text is encoded
    assert not build.report.text_from_cache


def test_missing_column_is_a_clear_error(tmp_path):
    dataset = make_dataset(tmp_path)
    config = FeatureConfig(text=CONFIG.text, image=CONFIG.image, text_columns=["title"])
    with pytest.raises(DataError, match="title"):
        fit_item_features(dataset, config, cache_dir=False)


def test_progress_gets_tasks(tmp_path):
    from rich.progress import Progress

    dataset = make_dataset(tmp_path)
    with Progress(disable=True) as progress:
        fit_item_features(dataset, CONFIG, cache_dir=tmp_path / "cache", progress=progress)
    tasks = progress.tasks
    assert tasks and tasks[0].description.startswith("images") and tasks[0].finished


def test_real_hm_items(shared_data, tmp_path):
    """Default encoders (TF-IDF + packaged EfficientNet-Lite0) on two dozen real H&M articles."""
    from seqrec.data.load import load_dataset

    full = load_dataset(shared_data / "hm")
    items = full.items.iloc[:: len(full.items) // 24][:24].reset_index(drop=True)
    dataset = Dataset("hm-sample", items, full.interactions.iloc[:0], full.schema, full.report)
    config = FeatureConfig(text=TextConfig(min_df=1))
    build = fit_item_features(dataset, config, cache_dir=tmp_path / "cache")
    f = build.features
    assert f.text.shape == (24, 23) and f.image.shape == (24, 1280)
    assert f.image_mask.all() and build.report.image.failed == 0
    assert f.categories.shape == (24, 8) and f.numeric.shape == (24, 1)
