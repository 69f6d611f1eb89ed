"""A bundle is written whole or not at all, and a folder whose files do not match is refused."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from seqrec import bundle as bundle_module
from seqrec.bundle import load_bundle, recover_bundle, save_bundle
from seqrec.bundle_files import BUNDLE_FILES
from seqrec.bundle_ranker import RANKER_FILES
from seqrec.config import apply_overrides
from seqrec.data.dataset import DataError
from seqrec.experiment import prepare, train_on
from seqrec.scoring import ModelScorer

HISTORIES = [np.array([0, 5, 7]), np.array([3]), np.array([11, 2, 40, 9])]


@pytest.fixture(scope="module")
def trained(demo_shop, tiny_config, tmp_path_factory):
    config = apply_overrides(tiny_config, {"train.epochs": 1})
    prepared = prepare(config, demo_shop, cache_dir=tmp_path_factory.mktemp("cache"))
    return config, prepared, train_on(config, prepared).model


def write(trained, out_dir, shift: float = 0.0):
    """Save the trained model as a bundle; ``shift`` moves every weight (another write)."""
    config, prepared, model = trained
    if shift:
        model = copy.deepcopy(model)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(shift)
    popularity = np.ones(prepared.dataset.n_items)
    metrics = {"test": {"shift": shift}}
    features, featurizer = prepared.features, prepared.featurizer
    return save_bundle(
        out_dir, config, prepared.dataset, features, model, popularity, metrics, featurizer
    )


def scores(path):
    return load_bundle(path).scorer().score(HISTORIES)


def test_the_manifest_lists_every_file_and_a_write_leaves_nothing_else(trained, tmp_path):
    out = write(trained, tmp_path / "bundle")
    write(trained, out, shift=0.1)  # over an existing bundle
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]  # no temp folders
    files = json.loads((out / "bundle.json").read_text())["files"]
    on_disk = {path.name for path in out.iterdir()}
    assert on_disk == set(files) | {"bundle.json"} and on_disk <= set(BUNDLE_FILES)
    assert all(files[name]["bytes"] == (out / name).stat().st_size for name in files)
    assert load_bundle(out).metrics["test"] == {"shift": 0.1}


def test_a_file_from_another_write_is_refused_by_name(trained, tmp_path):
    first, second = write(trained, tmp_path / "a"), write(trained, tmp_path / "b", shift=0.1)
    shutil.copy(second / "model.safetensors", first / "model.safetensors")  # same size
    with pytest.raises(DataError, match="model.safetensors does not match the sha256") as error:
        load_bundle(first)
    assert "retrain with the same --out to complete it" in str(error.value)


def test_a_truncated_file_is_refused(trained, tmp_path):
    out = write(trained, tmp_path / "bundle")
    matrix = out / "item_matrix.safetensors"
    matrix.write_bytes(matrix.read_bytes()[:-100])
    with pytest.raises(DataError, match="item_matrix.safetensors has .* bytes where .* cut short"):
        load_bundle(out)


def test_a_missing_file_is_refused(trained, tmp_path):
    out = write(trained, tmp_path / "bundle")
    (out / "featurizer.pkl").unlink()
    with pytest.raises(DataError, match="featurizer.pkl is missing.*complete it"):
        load_bundle(out)


def test_a_model_bundle_has_no_ranker_files_and_scores_with_its_model(trained, tmp_path):
    out = write(trained, tmp_path / "bundle")
    loaded = load_bundle(out)
    assert loaded.ranker is None and not set(RANKER_FILES) & {p.name for p in out.iterdir()}
    assert isinstance(loaded.scorer(), ModelScorer)
    np.testing.assert_array_equal(scores(out), loaded.model_scorer().score(HISTORIES))


def test_a_bundle_whose_config_has_the_ranker_on_but_no_ranker_files_is_refused(trained, tmp_path):
    config, prepared, model = trained
    ranked = (apply_overrides(config, {"ranker.enabled": True}), prepared, model)
    out = write(ranked, tmp_path / "bundle")
    with pytest.raises(DataError, match="ranker.enabled = true but .* lists no ranker.txt"):
        load_bundle(out)


def test_an_older_bundle_format_is_refused_with_what_to_do(trained, tmp_path):
    out = write(trained, tmp_path / "bundle")
    manifest = json.loads((out / "bundle.json").read_text())
    del manifest["files"]
    (out / "bundle.json").write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(DataError, match="format 1 bundle from an older seqrec.*retrain"):
        load_bundle(out)


def test_a_write_stopped_midway_leaves_the_old_bundle_and_the_folder_as_they_were(
    trained, tmp_path, monkeypatch
):
    out = write(trained, tmp_path / "bundle")
    (out / "checkpoint.pt").write_bytes(b"resume from me")  # what training keeps there
    before = scores(out)
    real_save_file, calls = bundle_module.save_file, []

    def save_file_then_die(tensors, path):
        real_save_file(tensors, path)
        calls.append(path)
        if len(calls) == 2:  # features and the new model are written, the item matrix is not
            shutil.copytree(path.parent, tmp_path / "bundle.seqrec-new-killed")  # a kill's leftover
            raise KeyboardInterrupt

    monkeypatch.setattr(bundle_module, "save_file", save_file_then_die)
    with pytest.raises(KeyboardInterrupt):
        write(trained, out, shift=0.1)
    assert np.array_equal(scores(out), before)  # the old bundle, whole
    assert (out / "checkpoint.pt").read_bytes() == b"resume from me"
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "bundle",
        "bundle.seqrec-new-killed",
    ]

    monkeypatch.setattr(bundle_module, "save_file", real_save_file)
    write(trained, out, shift=0.1)  # the next write removes the killed one's leftover
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]
    assert not np.array_equal(scores(out), before)
    assert (out / "checkpoint.pt").read_bytes() == b"resume from me"  # kept for train_on to remove


@pytest.mark.parametrize("recreated", [False, True])
def test_a_write_killed_between_its_renames_is_finished_by_recover(trained, tmp_path, recreated):
    old = write(trained, tmp_path / "bundle")
    new = write(trained, tmp_path / "new", shift=0.1)
    (new / "checkpoint.pt").write_bytes(b"carried over")
    expected = scores(new)
    old.rename(tmp_path / "bundle.seqrec-old-1234")  # the kill fell after the first rename
    new.rename(tmp_path / "bundle.seqrec-new-5678")
    with pytest.raises(DataError, match="no bundle.json.*retrain with the same --out"):
        load_bundle(tmp_path / "bundle")
    if recreated:  # an empty folder made by whatever ran next
        (tmp_path / "bundle").mkdir()
    recover_bundle(tmp_path / "bundle")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]
    assert np.array_equal(scores(tmp_path / "bundle"), expected)
    assert (tmp_path / "bundle" / "checkpoint.pt").read_bytes() == b"carried over"


def test_a_write_killed_while_carrying_files_over_is_finished_by_recover(trained, tmp_path):
    out = write(trained, tmp_path / "bundle")
    (out / "notes.txt").write_text("mine")
    new = write(trained, tmp_path / "new", shift=0.1)
    expected = scores(new)
    new.rename(tmp_path / "bundle.seqrec-new-5678")  # complete, notes.txt not carried yet
    recover_bundle(out)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]
    assert np.array_equal(scores(out), expected)
    assert (out / "notes.txt").read_text() == "mine"


def test_user_files_in_the_bundle_folder_are_kept(trained, tmp_path):
    out = tmp_path / "bundle"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "run.txt").write_text("my notes")
    (out / "README").write_text("mine")
    write(trained, out)
    write(trained, out, shift=0.1)
    assert (out / "notes" / "run.txt").read_text() == "my notes"
    assert (out / "README").read_text() == "mine"
    load_bundle(out)
