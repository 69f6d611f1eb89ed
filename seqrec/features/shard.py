"""Sharded image encoding: each torchrun rank encodes its slice of the catalogue into the cache.

`seqrec encode --nproc N` runs N ranks. Every rank hashes the image files, keeps one file per
distinct content hash (so two items sharing a picture are encoded once, by one rank), takes
every N-th of those in hash order, and encodes them into the shared on-disk cache
(`seqrec.features.cache.VectorCache`, one shard file per chunk and process, written atomically).
After a barrier, rank 0 builds the item features as usual: every image is then a cache hit.
On several machines the cache folder must be shared (a network file system).
"""

from __future__ import annotations

import os
from typing import Any

from seqrec.features.cache import hash_files
from seqrec.features.image import ImageConfig, ImageReport, encode_images


def my_image_slice(paths: list[str | None], rank: int, world: int) -> list[str]:
    """One path per distinct image content, the ``rank``-th of every ``world`` in hash order."""
    keys = hash_files(paths)
    first_path: dict[str, str] = {}
    for path, key in zip(paths, keys, strict=True):
        if key is not None and key not in first_path:
            first_path[key] = path
    ordered = sorted(first_path)  # the same order on every rank
    return [first_path[key] for key in ordered[rank::world]]


def encode_image_shard(
    paths: list[str | None],
    config: ImageConfig,
    cache_dir: str | os.PathLike,
    rank: int,
    world: int,
    progress: Any = None,
) -> ImageReport:
    """Encode this rank's slice of ``paths`` into ``cache_dir``; returns its counts."""
    report = ImageReport()
    encode_images(
        my_image_slice(paths, rank, world), config, progress, cache_dir=cache_dir, report=report
    )
    return report
