"""On-disk cache of item vectors, so that re-running `seqrec encode` only encodes what changed.

Vectors are stored per *namespace* (one folder per encoder fingerprint: encoder name + every
setting that changes its output, e.g. backbone, weights file hash, image size, preprocessing) and
keyed inside it by a *content hash* (blake2b of the image file's bytes, or of the item's text).
So a changed image is re-encoded and nothing else is; a changed model or preprocessing lands in a
new namespace and everything is re-encoded; a moved or renamed image file is still found.

Layout::

    <cache_dir>/<namespace>/meta.json            what produced these vectors (for people)
    <cache_dir>/<namespace>/shard-<time>-<pid>.npz   keys [n] str, vectors [n, D] f32, ok [n] bool

Every shard is written to a temporary file and moved into place with `os.replace`, so a shard is
either complete or absent: an interrupted run keeps all the chunks it finished and resumes there.
``ok`` False records an input that could not be encoded (a corrupt JPEG): it is not retried
until its bytes change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from seqrec.data.dataset import DataError
from seqrec.progress import interactive, line_advance

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the stored layout or the meaning of a key changes
DIGEST_SIZE = 16  # bytes of blake2b: 32 hex characters

T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$SEQREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/seqrec``, else ``~/.cache/seqrec``."""
    if os.environ.get("SEQREC_CACHE_DIR"):
        return Path(os.environ["SEQREC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "seqrec"


# ----------------------------------------------------------------------------------------------
# hashing


def hash_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).hexdigest()


def hash_text(text: str) -> str:
    return hash_bytes(text.encode("utf-8"))


def hash_texts(texts: Iterable[str]) -> str:
    """One hash for a whole ordered list of texts (a TF-IDF corpus)."""
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def hash_file(path: str | os.PathLike) -> str | None:
    """blake2b of the file's bytes; None when it cannot be read (missing, a folder, no rights)."""
    try:
        with open(path, "rb") as file:
            return hash_bytes(file.read())
    except OSError:
        return None


def hash_files(paths: list[str | None], num_workers: int = 8) -> list[str | None]:
    """`hash_file` for many files; a thread pool overlaps the reads (hashlib frees the GIL)."""
    todo = [p for p in paths if p]
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        hashes = dict(zip(todo, pool.map(hash_file, todo), strict=True))
    return [hashes[p] if p else None for p in paths]


def fingerprint(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able settings (key order does not matter)."""
    blob = json.dumps({"format": CACHE_FORMAT, **settings}, sort_keys=True, default=str)
    return hash_text(blob)[:16]


# ----------------------------------------------------------------------------------------------
# atomic writes


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            write(file)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_object(path: Path, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` atomically."""
    atomic_write(path, lambda file: pickle.dump(obj, file, protocol=pickle.HIGHEST_PROTOCOL))


def load_object(path: Path) -> Any | None:
    """The pickled object at ``path``, or None when absent or unreadable. Trusted files only."""
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except FileNotFoundError:
        return None
    except Exception as error:  # a stale pickle from other library versions: rebuild it
        log.warning("ignoring unreadable cache file %s (%s)", path, error)
        return None


def load_pickled(path: str | os.PathLike, kind: type[T]) -> T:
    """The ``kind`` object saved by `save_object` at ``path`` (a pickle: only load files you
    trust); DataError when the file holds something else."""
    with open(path, "rb") as file:
        obj = pickle.load(file)
    if not isinstance(obj, kind):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        raise DataError(f"{path} does not hold {article} {kind.__name__}")
    fill_new_fields(obj)
    return obj


def fill_new_fields(obj: Any, seen: set[int] | None = None) -> None:
    """Give the dataclasses in ``obj`` (itself and its dataclass attributes, recursively) the
    defaults of fields added since it was pickled, so older saved objects keep loading."""
    seen = set() if seen is None else seen
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type) or id(obj) in seen:
        return
    seen.add(id(obj))
    for spec in dataclasses.fields(obj):
        if not hasattr(obj, spec.name):
            if spec.default is not dataclasses.MISSING:
                object.__setattr__(obj, spec.name, spec.default)
            elif spec.default_factory is not dataclasses.MISSING:
                object.__setattr__(obj, spec.name, spec.default_factory())
        fill_new_fields(getattr(obj, spec.name, None), seen)


# ----------------------------------------------------------------------------------------------
# the vector store


class VectorCache:
    """Vectors keyed by content hash, in one folder per encoder fingerprint (the namespace).

    >>> cache = VectorCache(root, "image-efficientnet_lite0-1a2b3c", meta={...})
    >>> vectors, found, ok = cache.lookup(keys)    # [N, D], [N] bool, [N] bool
    >>> cache.add(new_keys, new_vectors, new_ok)   # one more shard, written atomically
    """

    def __init__(self, root: str | os.PathLike, namespace: str, meta: dict | None = None):
        self.dir = Path(root).expanduser() / namespace
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if meta is not None and not (self.dir / "meta.json").exists():
                blob = json.dumps(meta, indent=2, sort_keys=True, default=str).encode()
                atomic_write(self.dir / "meta.json", lambda file: file.write(blob))
        except OSError as error:
            raise DataError(
                f"cannot write the feature cache in {root} ({error}); choose another --cache-dir"
            ) from None
        self._index: dict[str, tuple[int, int]] = {}  # key -> (shard number, row)
        self._vectors: list[np.ndarray] = []  # per shard [n, D]
        self._ok: list[np.ndarray] = []  # per shard [n]
        for shard in sorted(self.dir.glob("shard-*.npz")):
            self._load_shard(shard)

    def _load_shard(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors, ok = data["keys"], data["vectors"], data["ok"]
        except Exception as error:  # cannot happen with atomic writes, unless edited by hand
            log.warning("ignoring unreadable cache shard %s (%s)", path, error)
            return
        if self._vectors and vectors.shape[1] != self.dim:
            log.warning("skipping shard %s: width %d, not %d", path, vectors.shape[1], self.dim)
            return
        number = len(self._vectors)
        self._vectors.append(vectors.astype(np.float32, copy=False))
        self._ok.append(ok.astype(bool, copy=False))
        for row, key in enumerate(keys.tolist()):
            self._index[key] = (number, row)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    @property
    def dim(self) -> int | None:
        return int(self._vectors[0].shape[1]) if self._vectors else None

    def lookup(
        self, keys: Sequence[str | None]
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """Cached rows for ``keys`` (None keys are never found).

        Returns (vectors [N, D] float32 with zeros where not found, or None when the cache is
        empty; found [N] bool; ok [N] bool, False where not found or recorded as failed).
        """
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        ok = np.zeros(n, dtype=bool)
        if not self._vectors:
            return None, found, ok
        vectors = np.zeros((n, self._vectors[0].shape[1]), dtype=np.float32)  # [N, D]
        for i, key in enumerate(keys):
            where = self._index.get(key) if key is not None else None
            if where is None:
                continue
            shard, row = where
            found[i] = True
            ok[i] = self._ok[shard][row]
            vectors[i] = self._vectors[shard][row]
        return vectors, found, ok

    def add(self, keys: list[str], vectors: np.ndarray, ok: np.ndarray | None = None) -> None:
        """Store one chunk as a new shard (atomically). ``vectors`` [n, D], ``ok`` [n] bool."""
        if not keys:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ok = np.ones(len(keys), dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
        if vectors.shape[0] != len(keys) or ok.shape[0] != len(keys):
            raise ValueError("keys, vectors and ok must have the same length")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have width {vectors.shape[1]}, the cache holds {self.dim}")
        path = self.dir / f"shard-{time.time_ns():020d}-{os.getpid()}.npz"
        key_array = np.asarray(keys, dtype=f"<U{2 * DIGEST_SIZE}")
        atomic_write(path, lambda file: np.savez(file, keys=key_array, vectors=vectors, ok=ok))
        self._load_shard(path)


# ----------------------------------------------------------------------------------------------
# progress reporting shared by the encoders


def progress_task(progress: Any, description: str, total: int) -> Callable[[int], None]:
    """A task on a `rich.progress.Progress` (None: nothing shown) and a function that advances
    it; where standard error is not a terminal, it also writes the stage's plain lines (a bar
    drawn to a file shows only at its end)."""
    if progress is None:
        return lambda n: None
    task = progress.add_task(description, total=total)
    lines = None if interactive() else line_advance(description, total, "items")

    def advance(count: int) -> None:
        progress.update(task, advance=count)
        if lines is not None:
            lines(count)

    return advance
