import dataclasses
import json

import numpy as np
import pytest

from seqrec.data.dataset import DataError
from seqrec.ranker.config import LightGBMConfig, RankerConfig
from seqrec.ranker.model import BASIS_FILE, LabelledPairs, Ranker, train_lambdarank

NAMES = ["noise_a", "signal", "noise_b"]


def _pairs(seed: int, n_queries: int = 60, size: int = 12) -> LabelledPairs:
    """Queries of ``size`` candidates, one positive each; only ``signal`` tells it apart."""
    rng = np.random.default_rng(seed)
    features = rng.random((n_queries * size, 3)).astype(np.float32)  # [P, F]
    labels = np.zeros(n_queries * size, dtype=np.int32)
    positive = np.arange(n_queries) * size + rng.integers(0, size, n_queries)  # [Q]
    labels[positive] = 1
    features[:, 1] *= 0.5
    features[positive, 1] += 0.5  # the positive's signal is above every other's
    return LabelledPairs(features, labels, np.full(n_queries, size), list(NAMES))


def _config(**lightgbm) -> RankerConfig:
    settings = dict(n_estimators=30, num_leaves=7, min_data_in_leaf=5, threads=1)
    return RankerConfig(lightgbm=LightGBMConfig(**(settings | lightgbm)))


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    return train_lambdarank(_pairs(0), _pairs(1), _config())


def test_the_feature_that_decides_the_label_is_learned(ranker):
    held_out = _pairs(2)
    scores = ranker.predict(held_out.features).reshape(-1, 12)  # [Q, size]
    assert (scores.argmax(axis=1) == held_out.labels.reshape(-1, 12).argmax(axis=1)).all()
    importance = ranker.info["feature_importance"]
    assert max(importance, key=importance.get) == "signal"
    assert 1 <= ranker.best_iteration <= 30
    assert ranker.info["valid_ndcg@12"] == pytest.approx(1.0)
    curve = ranker.info["valid_ndcg@12_by_round"]  # one figure per round boosted
    assert len(curve) >= ranker.best_iteration
    assert curve[ranker.best_iteration - 1] == ranker.info["valid_ndcg@12"] == max(curve)


def test_without_validation_queries_every_round_is_kept():
    empty = LabelledPairs(np.zeros((0, 3), np.float32), np.zeros(0, np.int32), np.zeros(0), NAMES)
    ranker = train_lambdarank(_pairs(0), empty, _config(n_estimators=7))
    assert ranker.best_iteration == 7
    assert "valid_ndcg@12" not in ranker.info


def test_nothing_to_learn_is_refused():
    empty = LabelledPairs(np.zeros((0, 3), np.float32), np.zeros(0, np.int32), np.zeros(0), NAMES)
    with pytest.raises(DataError, match="no training query"):
        train_lambdarank(empty, None, _config())


def test_save_and_load_give_identical_predictions(ranker, tmp_path):
    paths = ranker.save(tmp_path / "bundle")
    assert sorted(path.name for path in paths) == ["ranker.json", "ranker.txt"]
    loaded = Ranker.load(tmp_path / "bundle")
    rows = _pairs(3).features
    np.testing.assert_array_equal(loaded.predict(rows), ranker.predict(rows))
    assert loaded.feature_names == NAMES
    assert loaded.best_iteration == ranker.best_iteration
    assert loaded.config == ranker.config
    assert loaded.info["feature_importance"] == ranker.info["feature_importance"]


@pytest.mark.parametrize("name", ["ranker.txt", "ranker.json"])
def test_a_missing_file_is_named(ranker, tmp_path, name):
    ranker.save(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(DataError, match=f"{tmp_path / name}.*not found"):
        Ranker.load(tmp_path)


@pytest.mark.parametrize("name", ["ranker.txt", "ranker.json"])
def test_a_corrupt_file_is_named(ranker, tmp_path, name):
    ranker.save(tmp_path)
    (tmp_path / name).write_text("tree\nthis is not a model {")
    with pytest.raises(DataError, match=f"cannot read ranker file {tmp_path / name}"):
        Ranker.load(tmp_path)


def test_files_of_two_rankers_are_refused(ranker, tmp_path):
    ranker.save(tmp_path)
    meta = json.loads((tmp_path / "ranker.json").read_text())
    meta["feature_names"] = ["a", "b", "c"]
    (tmp_path / "ranker.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="different rankers"):
        Ranker.load(tmp_path)


def test_bad_config_in_the_json_is_refused(ranker, tmp_path):
    ranker.save(tmp_path)
    meta = json.loads((tmp_path / "ranker.json").read_text())
    meta["config"]["max_candidates"] = -3
    (tmp_path / "ranker.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="ranker.json"):
        Ranker.load(tmp_path)


@pytest.fixture()
def projecting(ranker) -> Ranker:
    """``ranker`` as if fitted with ``image_dim = 3``, with its image projection."""
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 3)))[0].T  # [3, 8]
    config = dataclasses.replace(ranker.config, image_dim=3)
    return dataclasses.replace(ranker, config=config, image_basis=basis.astype(np.float32))


def test_the_image_projection_is_saved_and_loaded_with_the_ranker(projecting, tmp_path):
    paths = projecting.save(tmp_path)
    assert BASIS_FILE in [path.name for path in paths]
    loaded = Ranker.load(tmp_path)
    assert loaded.config.image_dim == 3
    np.testing.assert_array_equal(loaded.image_basis, projecting.image_basis)
    assert Ranker.load(_saved(projecting, tmp_path / "plain", image_dim=0)).image_basis is None


def _saved(ranker: Ranker, directory, image_dim: int):
    config = dataclasses.replace(ranker.config, image_dim=image_dim)
    dataclasses.replace(ranker, config=config, image_basis=None).save(directory)
    return directory


def test_a_missing_or_mismatched_image_projection_is_named(projecting, tmp_path):
    projecting.save(tmp_path)
    (tmp_path / BASIS_FILE).unlink()
    with pytest.raises(DataError, match=f"{tmp_path / BASIS_FILE} not found"):
        Ranker.load(tmp_path)
    wider = dataclasses.replace(projecting, image_basis=np.zeros((5, 8), np.float32))
    wider.save(tmp_path)
    with pytest.raises(DataError, match="not 3 rows"):
        Ranker.load(tmp_path)
    (tmp_path / BASIS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match=f"cannot read ranker file {tmp_path / BASIS_FILE}"):
        Ranker.load(tmp_path)
