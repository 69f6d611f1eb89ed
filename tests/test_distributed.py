import json
import subprocess
import sys
from pathlib import Path

import pytest

from seqrec.config import save_config
from seqrec.distributed import reduce_metrics

ROOT = Path(__file__).resolve().parents[1]


def test_reduce_metrics_is_identity_in_one_process():
    metrics = {"ndcg@10": 0.25, "cold:recall@12": 0.5}
    assert reduce_metrics(metrics, {"users": 10, "cold:users": 3}) == metrics


@pytest.mark.multiprocess
def test_two_cpu_processes_under_torchrun_match_one_process(demo_shop, tiny_config, tmp_path):
    config_path = tmp_path / "tiny.toml"
    save_config(tiny_config, config_path)
    common = [
        "--data",
        str(demo_shop),
        "--config",
        str(config_path),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    cli = [sys.executable, str(ROOT / "cli.py"), "train"]
    single = subprocess.run(
        cli + common + ["--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300
    )
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        cli + common + ["--out", str(tmp_path / "two"), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, (ddp.stdout + ddp.stderr)[-3000:]

    # one bundle, written once (rank 0), no leftover checkpoint
    assert (tmp_path / "two" / "bundle.json").exists()
    assert not (tmp_path / "two" / "checkpoint.pt").exists()
    assert ddp.stdout.count("bundle written to") == 1
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert len(two["history"]) == len(one["history"])
    # same effective batch (the ranks split batch_size), so the same validation quality
    # up to noise: the validation set has ~200 users, so allow a few hundredths of NDCG
    assert two["valid"]["ndcg@10"] == pytest.approx(one["valid"]["ndcg@10"], abs=0.03)
    assert two["history"][-1]["loss"] == pytest.approx(one["history"][-1]["loss"], rel=0.05)


def _cache_contents(cache_dir: Path) -> dict:
    from seqrec.features.cache import VectorCache

    contents = {}
    for namespace in sorted(path.name for path in cache_dir.iterdir() if path.is_dir()):
        if not namespace.startswith("image-"):
            continue
        cache = VectorCache(cache_dir, namespace)
        keys = sorted(cache._index)
        vectors, found, ok = cache.lookup(keys)
        contents[namespace] = (keys, vectors, ok)
    return contents


@pytest.mark.multiprocess
def test_sharded_encoding_with_two_ranks_equals_one_process(demo_shop, tmp_path):
    import numpy as np

    config = tmp_path / "images.toml"
    config.write_text(
        '[features]\nuse_text = false\n\n[features.image]\nbackbone = "tiny_cnn"\n'
        'runtime = "torch"\nsize = 32\nnum_workers = 0\n'
    )
    cli = [
        sys.executable,
        str(ROOT / "cli.py"),
        "encode",
        "--data",
        str(demo_shop),
        "--config",
        str(config),
    ]
    one = subprocess.run(
        cli + ["--cache-dir", str(tmp_path / "one")], capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        cli + ["--cache-dir", str(tmp_path / "two"), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    assert "rank 0" in two.stdout and "rank 1" in two.stdout

    single, sharded = _cache_contents(tmp_path / "one"), _cache_contents(tmp_path / "two")
    assert single.keys() == sharded.keys() and single
    for namespace, (keys, vectors, ok) in single.items():
        other_keys, other_vectors, other_ok = sharded[namespace]
        assert keys == other_keys and len(keys) == 150  # every image once, no duplicate
        assert np.allclose(vectors, other_vectors, atol=1e-5) and (ok == other_ok).all()
    # each rank wrote its own shard files: the slices were encoded in parallel
    shards = list((tmp_path / "two").glob("image-*/shard-*.npz"))
    assert len(shards) >= 2
