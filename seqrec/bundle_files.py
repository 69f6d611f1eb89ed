"""How a bundle folder is written whole and checked when read (`seqrec.bundle` writes and
loads its contents).

Writing is all or nothing. The bundle folder is also the training output folder (``fit`` keeps
its checkpoints there), so a new bundle is written whole into a staging folder beside it,
``DIR.seqrec-new-*``; the entries of ``DIR`` that are not bundle files (checkpoints, anything
the user keeps there) are hard-linked (else copied) into it, leaving ``DIR`` untouched; then
``DIR`` is renamed to ``DIR.seqrec-old-*``, the staging folder renamed to ``DIR``, and the old
one removed. Until the first rename ``DIR`` is the old bundle, whole and loadable, and a resumed
run finds its checkpoints there; after the second it is the new one. A kill between the two
renames leaves no ``DIR``: `recover_bundle`, run when training starts and before each write,
finishes any write whose staging folder is complete (carry-over, swap), and removes every
leftover folder.

This keeps one flat layout that every reader of a bundle path already knows. The other design,
versioned subfolders behind one pointer file, needs no recovery step but moves every file one
level down for every reader. Two runs writing the same folder at once are not supported.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

from seqrec.bundle_ranker import RANKER_FILES, RANKER_OPTIONAL
from seqrec.data.dataset import DataError
from seqrec.features.image_tuned import TOWER_FILE

BUNDLE_VERSION = 2  # 2: bundle.json lists every file with its size and sha256
REQUIRED_FILES = (
    "config.toml",
    "items.parquet",
    "features.safetensors",
    "model.safetensors",
    "item_matrix.safetensors",
    "metrics.json",
)
BUNDLE_FILES = (
    *REQUIRED_FILES,
    "featurizer.pkl",
    TOWER_FILE,
    *RANKER_FILES,
    *RANKER_OPTIONAL,
    "bundle.json",
)
STAGING, RETIRED = ".seqrec-new-", ".seqrec-old-"  # suffixes of the folders beside a bundle
COMPLETE_IT = "retrain with the same --out to complete it"


def recover_bundle(out_dir: str | Path) -> None:
    """Finish a bundle write to ``out_dir`` that was killed, and remove what it left beside it.

    A write killed once its staging folder was complete (while carrying entries over, or
    between its two renames) is finished: what ``out_dir`` holds besides bundle files is carried
    over, and the staging folder swapped in. Failing one, a retired old bundle with no
    ``out_dir`` goes back. Every other staging or retired folder of ``out_dir`` is removed.
    """
    out_dir = Path(out_dir).resolve()
    staged, retired = _leftovers(out_dir, STAGING), _leftovers(out_dir, RETIRED)
    complete = [folder for folder in staged if _is_complete(folder)]
    if complete:
        newest = max(complete, key=lambda folder: folder.stat().st_mtime)
        if out_dir.is_dir():
            carry_over(out_dir, newest)
        swap(newest, out_dir)
    elif retired and not out_dir.exists():
        os.rename(retired[0], out_dir)
    for folder in staged + retired:
        shutil.rmtree(folder, ignore_errors=True)


def sibling(out_dir: Path, suffix: str) -> Path:
    return out_dir.with_name(f"{out_dir.name}{suffix}{secrets.token_hex(4)}")


def _leftovers(out_dir: Path, suffix: str) -> list[Path]:
    pattern = glob.escape(f"{out_dir.name}{suffix}") + "*"
    return sorted(path for path in out_dir.parent.glob(pattern) if path.is_dir())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sync(path: Path) -> None:
    """Flush a written file, or a folder's renames, to disk."""
    if os.name != "posix":
        return
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def describe(path: Path) -> dict:
    """Size and sha256 of a file just written, synced to disk."""
    sync(path)
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _is_bundle_entry(name: str) -> bool:
    """A bundle file, or a temporary one an older seqrec or a killed checkpoint save left."""
    temporary = name.startswith(tuple(f".{file}." for file in BUNDLE_FILES))
    return name in BUNDLE_FILES or temporary or name.endswith(".pt.tmp")


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def carry_over(out_dir: Path, staging: Path) -> None:
    """Give ``staging`` the entries of ``out_dir`` that are not bundle files, keeping them there."""
    for entry in out_dir.iterdir():
        target = staging / entry.name
        if _is_bundle_entry(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():  # finishes one a killed write began
            copy = _link_or_copy
            shutil.copytree(entry, target, symlinks=True, copy_function=copy, dirs_exist_ok=True)
        elif os.path.lexists(target):  # carried over before a kill
            continue
        elif entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        else:
            _link_or_copy(entry, target)


def swap(staging: Path, out_dir: Path) -> None:
    """Put the complete ``staging`` folder at ``out_dir``; the old one is whole until then."""
    if out_dir.exists():
        retired = sibling(out_dir, RETIRED)
        os.rename(out_dir, retired)
        try:
            os.rename(staging, out_dir)
        except BaseException:
            os.rename(retired, out_dir)
            raise
        shutil.rmtree(retired, ignore_errors=True)  # else the next recover_bundle removes it
    else:
        os.rename(staging, out_dir)
    sync(out_dir.parent)


def check_bundle(path: Path) -> dict:
    """The manifest of the complete bundle at ``path``; a DataError naming what is wrong else."""
    manifest_path = path / "bundle.json"
    if not manifest_path.is_file():
        raise DataError(
            f"{path} is not a complete seqrec bundle (no bundle.json): if training into it "
            f"was stopped, {COMPLETE_IT}"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{manifest_path} is not valid JSON: {COMPLETE_IT}") from None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if isinstance(version, int) and version > BUNDLE_VERSION:
        raise DataError(
            f"{path} is a format {version} bundle from a newer seqrec (this one reads format "
            f"{BUNDLE_VERSION}): upgrade seqrec to load it"
        )
    if version != BUNDLE_VERSION:
        raise DataError(
            f"{path} is a format {version} bundle from an older seqrec, without the file "
            f"hashes this one checks (format {BUNDLE_VERSION}): retrain with the same --out "
            "to rewrite it"
        )
    files = manifest.get("files", {})
    required = list(REQUIRED_FILES)
    if any(name in files for name in RANKER_FILES):  # a two-stage bundle: all of them
        required += RANKER_FILES
    for name in required:
        if name not in files:
            raise DataError(f"{manifest_path} does not list {name}: {COMPLETE_IT}")
    for name, expected in files.items():
        check_file(path, name, expected)
    return manifest


def check_file(path: Path, name: str, expected: dict) -> None:
    """DataError unless ``path / name`` has the size and sha256 that bundle.json lists."""
    file = path / name
    if name not in BUNDLE_FILES:
        raise DataError(f"{path / 'bundle.json'} lists {name!r}, not a bundle file")
    if not file.is_file():
        raise DataError(f"{file} is missing: the bundle is incomplete; {COMPLETE_IT}")
    size = file.stat().st_size
    if size != expected["bytes"]:
        raise DataError(
            f"{file} has {size} bytes where bundle.json lists {expected['bytes']}: it is cut "
            f"short or from another write; {COMPLETE_IT}"
        )
    if _sha256(file) != expected["sha256"]:
        raise DataError(
            f"{file} does not match the sha256 in bundle.json: it is from another write or "
            f"damaged; {COMPLETE_IT}"
        )


def _is_complete(path: Path) -> bool:
    try:
        check_bundle(path)
    except DataError:
        return False
    return True
