"""`seqrec train` killed at any moment, then run again with the same command, ends with the bundle
of an uninterrupted run: killed mid-epoch, while writing the bundle's files, and between the
renames that swap the new bundle in. The bundle-time kills are placed by a child process that
wraps the bundle writer and `os.rename` and calls `os._exit(137)` (what SIGKILL returns).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seqrec.bundle import load_bundle
from seqrec.config import apply_overrides, save_config
from seqrec.data.dataset import DataError

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}

CHILD = """
import os, sys
import seqrec.bundle

point, calls = sys.argv[1], []
real_save_file, real_rename = seqrec.bundle.save_file, os.rename

def save_file(tensors, path):
    calls.append(path)
    if point == f"save_file {len(calls)}":
        os._exit(137)
    real_save_file(tensors, path)

def rename(source, target):
    real_rename(source, target)
    if point == "first rename" and ".seqrec-old-" in str(target):
        os._exit(137)
    if point == "second rename" and ".seqrec-new-" in str(source):
        os._exit(137)

seqrec.bundle.save_file, os.rename = save_file, rename
sys.argv = ["cli.py", *sys.argv[2:]]
from cli import app
app()
"""


@pytest.fixture(scope="module")
def command(demo_shop, tiny_config, tmp_path_factory):
    """The `seqrec train` arguments (without --out) of a 2-epoch run with a refit."""
    folder = tmp_path_factory.mktemp("crash")
    config = apply_overrides(tiny_config, {"train.refit": True})
    save_config(config, folder / "tiny.toml")
    data, config_path, cache = str(demo_shop), str(folder / "tiny.toml"), str(folder / "cache")
    return ["train", "--data", data, "--config", config_path, "--cache-dir", cache]


@pytest.fixture(scope="module")
def reference(command, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "bundle"
    train(command, out)
    return load_bundle(out)


def train(command, out: Path) -> str:
    """Run `seqrec train` to completion; its output."""
    arguments = [sys.executable, "cli.py", *command, "--out", str(out)]
    result = subprocess.run(arguments, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def trained_epochs(output: str) -> list[str]:
    """The epochs a run trained, as its lines name them ("epoch 2", "refit epoch 1")."""
    return [
        " ".join(match.split()) for match in re.findall(r"^(?:refit )?epoch +\d+", output, re.M)
    ]


def kill_mid_epoch(command, out: Path) -> None:
    arguments = [sys.executable, "cli.py", *command, "--out", str(out)]
    process = subprocess.Popen(arguments, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and process.poll() is None:
        assert time.time() < deadline, "no checkpoint within two minutes"
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def kill_at(point: str, command, out: Path) -> str:
    """Run `seqrec train` in a child that dies at ``point``; its output."""
    arguments = [sys.executable, "-c", CHILD, point, *command, "--out", str(out)]
    result = subprocess.run(arguments, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 137, result.stdout + result.stderr  # it got there and died
    return result.stdout


def assert_same_bundle(out: Path, reference) -> None:
    bundle = load_bundle(out)  # every file checked against bundle.json
    state, expected = bundle.model.state_dict(), reference.model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in state)
    assert torch.equal(bundle.item_matrix, reference.item_matrix)
    assert bundle.metrics["test"] == reference.metrics["test"]
    assert bundle.metrics["history"][-1]["loss"] == reference.metrics["history"][-1]["loss"]


def test_a_run_killed_again_and_again_ends_with_the_uninterrupted_bundle(
    command, reference, tmp_path
):
    out = tmp_path / "bundle"
    kill_mid_epoch(command, out)
    with pytest.raises(DataError, match="no bundle.json.*retrain with the same --out"):
        load_bundle(out)

    # resumes after epoch 1, trains the rest, dies after writing the first bundle file
    output = kill_at("save_file 2", command, out)
    assert trained_epochs(output) and "epoch 1" not in trained_epochs(output)
    assert (out / "checkpoint.pt").exists() and (out / "refit_checkpoint.pt").exists()
    with pytest.raises(DataError, match="no bundle.json"):
        load_bundle(out)
    assert len(list(tmp_path.glob("bundle.seqrec-new-*"))) == 1  # the killed write's leftover

    # resumes from the last checkpoints, writes the bundle, dies after moving the folder away
    assert trained_epochs(kill_at("first rename", command, out)) == []
    assert not out.exists()

    # the folder is put back first, so training resumes; dies once the new bundle is in place
    assert trained_epochs(kill_at("second rename", command, out)) == []
    assert (out / "checkpoint.pt").exists()
    load_bundle(out)  # complete

    assert trained_epochs(train(command, out)) == []
    assert_same_bundle(out, reference)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]  # no leftovers
    assert not list(out.glob("*checkpoint*"))
