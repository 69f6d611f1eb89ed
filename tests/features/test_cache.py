from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from seqrec.features import image as image_module
from seqrec.features.cache import (
    VectorCache,
    default_cache_dir,
    fingerprint,
    hash_file,
    hash_files,
    hash_text,
)
from seqrec.features.image import ImageConfig, ImageReport, encode_images

TINY = ImageConfig(backbone="tiny_cnn", size=32, batch_size=2, num_workers=2)


def write_images(folder, n):
    paths = []
    for i in range(n):
        image = Image.new("RGB", (24, 36), (255, 255, 255))
        image.paste((30 * i % 256, 200 - 20 * i, 60 + 25 * i % 190), (4, 4, 20, 32))
        path = folder / f"{i:03d}.jpg"
        image.save(path, quality=95)
        paths.append(str(path))
    return paths


def test_vector_cache_roundtrip_and_persistence(tmp_path):
    cache = VectorCache(tmp_path, "ns", meta={"what": "test"})
    assert cache.lookup(["a"])[0] is None
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.add(["a", "b", "c"], vectors, np.array([True, False, True]))
    again = VectorCache(tmp_path, "ns")  # a new process sees the same shards
    got, found, ok = again.lookup(["c", "x", "a", None, "b"])
    assert found.tolist() == [True, False, True, False, True]
    assert ok.tolist() == [True, False, True, False, False]
    np.testing.assert_array_equal(got[[0, 2]], vectors[[2, 0]])
    assert np.all(got[1] == 0)
    assert len(again) == 3 and "b" in again
    assert not list(tmp_path.glob("ns/.*tmp"))  # no temporary files left behind
    with pytest.raises(ValueError):
        again.add(["d"], np.zeros((1, 5), dtype=np.float32))


def test_unreadable_shard_is_skipped(tmp_path):
    cache = VectorCache(tmp_path, "ns")
    cache.add(["a"], np.ones((1, 2), dtype=np.float32))
    (tmp_path / "ns" / "shard-99999999999999999999-1.npz").write_bytes(b"garbage")
    assert VectorCache(tmp_path, "ns").lookup(["a"])[1].all()


def test_hashes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert hash_file(path) == hash_file(str(path)) != hash_file(tmp_path / "absent")
    assert hash_file(tmp_path / "absent") is None
    assert hash_files([str(path), None, str(tmp_path / "absent")])[1:] == [None, None]
    assert hash_text("a") != hash_text("b")
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SEQREC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "seqrec"


def test_changed_image_is_the_only_one_reencoded(tmp_path):
    paths = write_images(tmp_path, 6)
    cache_dir = tmp_path / "cache"
    first, _ = encode_images(paths, TINY, cache_dir=cache_dir)
    Image.new("RGB", (24, 36), (0, 0, 0)).save(paths[2])  # the shop replaced one photo
    report = ImageReport()
    second, mask = encode_images(paths, TINY, cache_dir=cache_dir, report=report)
    assert (report.encoded, report.cached) == (1, 5) and mask.all()
    unchanged = [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(second[unchanged], first[unchanged])
    assert not np.allclose(second[2], first[2])
    # a renamed file keeps its vector: the key is the content, not the path
    moved = tmp_path / "moved.jpg"
    (tmp_path / "000.jpg").rename(moved)
    report = ImageReport()
    third, _ = encode_images([str(moved)], TINY, cache_dir=cache_dir, report=report)
    assert report.cached == 1
    np.testing.assert_array_equal(third[0], first[0])


def test_changed_preprocessing_reencodes_everything(tmp_path):
    paths = write_images(tmp_path, 3)
    encode_images(paths, TINY, cache_dir=tmp_path / "cache")
    report = ImageReport()
    encode_images(
        paths, replace(TINY, preprocessing="crop"), cache_dir=tmp_path / "cache", report=report
    )
    assert report.encoded == 3 and report.cached == 0
    report = ImageReport()  # batch size, workers and runtime do not change the vectors
    encode_images(
        paths,
        replace(TINY, batch_size=3, runtime="torch", num_workers=0),
        cache_dir=tmp_path / "cache",
        report=report,
    )
    assert report.cached == 3


def test_corrupt_image_is_remembered_until_it_changes(tmp_path):
    paths = write_images(tmp_path, 2)
    open(paths[1], "wb").write(b"\xff\xd8\xff broken")
    encode_images(paths, TINY, cache_dir=tmp_path / "cache")
    report = ImageReport()
    _, mask = encode_images(paths, TINY, cache_dir=tmp_path / "cache", report=report)
    assert mask.tolist() == [True, False]
    assert (report.cached, report.failed, report.encoded) == (1, 1, 0)
    write_images(tmp_path, 2)  # fixed
    report = ImageReport()
    _, mask = encode_images(paths, TINY, cache_dir=tmp_path / "cache", report=report)
    assert mask.all() and report.encoded == 1


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    paths = write_images(tmp_path, 10)
    expected, _ = encode_images(paths, TINY)
    calls = {"n": 0}
    real_call = image_module.ImageEncoder.__call__

    def flaky(self, pixels):
        calls["n"] += 1
        if calls["n"] == 4:  # chunk 1 (2 batches) is saved, chunk 2 dies in its 2nd batch
            raise KeyboardInterrupt
        return real_call(self, pixels)

    monkeypatch.setattr(image_module.ImageEncoder, "__call__", flaky)
    with pytest.raises(KeyboardInterrupt):
        encode_images(paths, TINY, cache_dir=tmp_path / "cache", chunk_size=4)
    monkeypatch.setattr(image_module.ImageEncoder, "__call__", real_call)
    report = ImageReport()
    vectors, mask = encode_images(
        paths, TINY, cache_dir=tmp_path / "cache", chunk_size=4, report=report
    )
    assert (report.cached, report.encoded) == (4, 6) and mask.all()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_unwritable_cache_dir_is_a_clear_error(tmp_path):
    from seqrec.data.dataset import DataError

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    with pytest.raises(DataError, match="cache"):
        VectorCache(blocker, "ns")
