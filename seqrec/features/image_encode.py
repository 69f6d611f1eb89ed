"""Encoding many product images with a frozen backbone, with the vector cache.

Pipeline of `encode_images`, for each chunk of images::

    JPEG bytes --(thread pool: decode, RGB, pad/crop to S x S, normalise)--> float32 [B, 3, S, S]
      --(ONNX Runtime or torch: backbone, global average pool)--> float32 [B, D]

Missing or unreadable images never stop a run: the row stays zeros, ``mask`` is False, and the
`ImageReport` counts them (with a few examples). With a ``cache_dir``, vectors are cached per
image content (`seqrec.features.cache`): a second run only hashes the files.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from seqrec.constraints import check_config
from seqrec.features.cache import (
    VectorCache,
    atomic_write,
    fingerprint,
    hash_files,
    progress_task,
)
from seqrec.features.image_config import ImageConfig
from seqrec.features.image_models import build_backbone, normalisation, weights_id
from seqrec.features.image_transforms import load_image, normalise
from seqrec.onnx_export import export_onnx, onnx_session

log = logging.getLogger(__name__)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def image_settings(config: ImageConfig) -> dict[str, Any]:
    """What changes the vectors, for cache keys (runtime, batch size and threads do not)."""
    mean, std = normalisation(config, None)
    return {
        "kind": "image",
        "backbone": config.backbone,
        "weights": weights_id(config),
        "size": config.size,
        "preprocessing": config.preprocessing,
        "pad_color": config.pad_color if config.preprocessing == "pad" else None,
        "mean": mean,
        "std": std,
    }


# ----------------------------------------------------------------------------------------------
# the frozen encoder: normalised float32 [B, 3, S, S] -> [B, D]


class ImageEncoder:
    """A frozen backbone on ONNX Runtime (exported once, kept in ``work_dir``) or torch."""

    def __init__(self, config: ImageConfig, work_dir: str | os.PathLike | None = None):
        check_config(config, "features.image")
        self.config = config
        backbone = build_backbone(config)
        self.dim = backbone.dim
        self.settings = image_settings(config)
        self.module = backbone.module.eval()
        self.threads = config.threads or cpu_count()
        self.session: Any = None  # an onnxruntime.InferenceSession
        if config.runtime == "onnx":
            try:
                self.session = self._onnx_session(work_dir)
            except Exception as error:
                log.warning(
                    "ONNX export/run failed for %s (%s); using torch", config.backbone, error
                )
        if self.session is None and config.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def _onnx_session(self, work_dir: str | os.PathLike | None) -> Any:
        folder = Path(work_dir) if work_dir else Path(tempfile.gettempdir())
        name = f"{self.config.backbone}-{fingerprint({**self.settings, 'onnx': 2})}.onnx"
        path = folder / "onnx" / name
        if not path.is_file():
            size = self.config.size
            model = export_onnx(self.module, torch.zeros(2, 3, size, size), "images", "features")
            atomic_write(path, lambda file: file.write(model))
        return onnx_session(str(path), self.threads)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Normalised float32 [B, 3, S, S] (see `normalise`) -> float32 [B, D]."""
        if self.session is not None:
            return self.session.run(None, {"images": images})[0]
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        x = torch.from_numpy(images)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.module(x).float().numpy()


# ----------------------------------------------------------------------------------------------
# encoding many images, with the cache


@dataclass
class ImageReport:
    """What `encode_images` did. encoded + cached + missing + failed == total."""

    total: int = 0
    encoded: int = 0  # decoded and run through the backbone in this call
    cached: int = 0  # vectors reused from the cache
    missing: int = 0  # no path, or no readable file at the path
    failed: int = 0  # a file that is not a decodable image (zeros, mask False)
    failed_examples: list[str] = field(default_factory=list)  # a few "path: error"
    seconds: float = 0.0

    def summary(self) -> str:
        text = (
            f"images: {self.total} items, {self.encoded} encoded, {self.cached} from cache, "
            f"{self.missing} missing, {self.failed} unreadable ({self.seconds:.1f}s)"
        )
        if self.failed_examples:
            text += "; e.g. " + "; ".join(self.failed_examples[:3])
        return text


def encode_images(
    paths: Sequence[str | None],
    config: ImageConfig | None = None,
    progress: Any = None,
    cache_dir: str | os.PathLike | None = None,
    report: ImageReport | None = None,
    chunk_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode images: (vectors [N, D] float32, zeros where not encoded; mask [N] bool).

    ``paths`` may hold None/NaN/"" for items without an image. Bad files are counted in
    ``report`` (pass an `ImageReport` to read the counts) and logged, never raised. With
    ``cache_dir`` each chunk of ``chunk_size`` results is saved as it finishes, so an
    interrupted run resumes where it stopped, and unchanged images are not decoded again.
    ``progress`` is an optional `rich.progress.Progress`: a task is added to it.
    """
    config = config or ImageConfig()
    check_config(config, "features.image")
    report = report if report is not None else ImageReport()
    start = time.perf_counter()
    files = [_as_path(p) for p in paths]
    report.total += len(files)
    keys = _content_keys(files, config, cache_dir)  # None: no readable file
    todo = [
        _Pending(row, path, key)
        for row, (path, key) in enumerate(zip(files, keys, strict=True))
        if path is not None and key is not None
    ]
    report.missing += len(files) - len(todo)
    vectors, mask = None, np.zeros(len(files), dtype=bool)
    cache = None
    if cache_dir is not None and todo:
        cache = image_cache(config, cache_dir)
        vectors, mask, found = _lookup(cache, keys, report)
        todo = [pending for pending in todo if not found[pending.row]]
    encoder = ImageEncoder(config, work_dir=cache_dir) if todo else None
    if vectors is None:
        dim = encoder.dim if encoder is not None else build_backbone(config).dim
        vectors = np.zeros((len(files), dim), dtype=np.float32)
    advance = progress_task(progress, f"images ({config.backbone})", len(todo))
    output = _Output(vectors, mask, report, advance)
    try:
        if encoder is not None:
            _encode_pending(todo, encoder, output, cache, chunk_size)
    finally:
        report.seconds += time.perf_counter() - start
    if report.failed or report.missing:
        log.info(report.summary())
    return vectors, mask


class _Pending(NamedTuple):
    """An image `encode_images` still has to decode and encode."""

    row: int  # position in the ``paths`` given to `encode_images`
    path: str
    key: str  # cache key: the file's content hash (with a cache) or its path


@dataclass
class _Output:
    """What `encode_images` fills in: vectors [N, D] (zeros where not encoded) and mask [N]."""

    vectors: np.ndarray
    mask: np.ndarray
    report: ImageReport
    advance: Callable[[int], None]  # moves the progress bar on by that many images

    def encoded(self, rows: list[int], vectors: np.ndarray) -> None:
        self.vectors[rows] = vectors
        self.mask[rows] = True
        self.report.encoded += len(rows)
        self.advance(len(rows))

    def failed(self, error: str) -> None:
        self.report.failed += 1
        if len(self.report.failed_examples) < 5:
            self.report.failed_examples.append(error)
        log.warning("image not encoded: %s", error)


def _as_path(value: Any) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return value if isinstance(value, str) and value.strip() else None


def _content_keys(
    files: list[str | None], config: ImageConfig, cache_dir: str | os.PathLike | None
) -> list[str | None]:
    """Content hashes with a cache, else the paths of existing files (None: no readable file)."""
    if cache_dir is not None:
        return hash_files(files, num_workers=max(4, config.num_workers))
    return [p if p is not None and os.path.isfile(p) else None for p in files]


def image_cache(config: ImageConfig, cache_dir: str | os.PathLike) -> VectorCache:
    settings = image_settings(config)
    namespace = f"image-{config.backbone}-{fingerprint(settings)}"
    return VectorCache(cache_dir, namespace, meta=settings)


def _lookup(
    cache: VectorCache, keys: list[str | None], report: ImageReport
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(cached vectors [N, D] or None when the cache is empty, mask [N], found [N]), counting
    the vectors reused and the files the cache knows as unreadable in ``report``."""
    cached, found, ok = cache.lookup(keys)
    if cached is None:
        return None, np.zeros(len(keys), dtype=bool), found
    report.cached += int(ok.sum())
    report.failed += int((found & ~ok).sum())
    return cached, ok, found


def _encode_pending(
    todo: list[_Pending],
    encoder: ImageEncoder,
    output: _Output,
    cache: VectorCache | None,
    chunk_size: int,
) -> None:
    """Encode ``todo`` chunk by chunk, saving each chunk's vectors in ``cache`` as it ends."""
    workers = encoder.config.num_workers
    pool = ThreadPoolExecutor(workers) if workers else None
    try:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            ok = _encode_chunk(chunk, encoder, output, pool)
            if cache is not None:
                rows = [pending.row for pending in chunk]
                cache.add([pending.key for pending in chunk], output.vectors[rows], ok)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _encode_chunk(
    chunk: list[_Pending], encoder: ImageEncoder, output: _Output, pool: ThreadPoolExecutor | None
) -> np.ndarray:
    """Decode and encode one chunk batch by batch; which of its images were encoded, [C] bool."""
    config = encoder.config
    ok = np.zeros(len(chunk), dtype=bool)
    batch: list[np.ndarray] = []
    positions: list[int] = []  # in ``chunk``, of the images in ``batch``
    for j, image in enumerate(_decoded([pending.path for pending in chunk], config, pool)):
        if isinstance(image, str):
            output.failed(image)
        else:
            batch.append(image)
            positions.append(j)
        if len(batch) == config.batch_size or (j == len(chunk) - 1 and batch):
            vectors = encoder(np.stack(batch))  # [B, D]
            output.encoded([chunk[p].row for p in positions], vectors)
            ok[positions] = True
            batch, positions = [], []
    output.advance(int((~ok).sum()))
    return ok


def _try_load(path: str, config: ImageConfig) -> np.ndarray | str:
    """The normalised float32 [3, S, S] image, or "path: error" when it cannot be read."""
    try:
        return normalise(load_image(path, config), *normalisation(config, None))
    except Exception as error:  # corrupt, truncated, not an image, unreadable
        return f"{path}: {error.__class__.__name__}: {error}"


def _decoded(
    paths: list[str], config: ImageConfig, pool: ThreadPoolExecutor | None
) -> Iterator[np.ndarray | str]:
    """`_try_load` results in order, decoded and normalised ahead by the thread pool."""
    if pool is None:
        for path in paths:
            yield _try_load(path, config)
        return
    window = 4 * config.batch_size  # bounded read-ahead
    pending: collections.deque[Future[np.ndarray | str]] = collections.deque()
    for path in paths:
        pending.append(pool.submit(_try_load, path, config))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
