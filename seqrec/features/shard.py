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

from seqrec import distributed
from seqrec.data.dataset import Dataset
from seqrec.features.build import FeatureConfig
from seqrec.features.cache import default_cache_dir, hash_files
from seqrec.features.image import ImageConfig, ImageReport, encode_images


def my_image_slice(paths: list[str | None], rank: int, world: int) -> list[str]:
    """One path per distinct image content, the ``rank``-th of every ``world`` in hash order."""
    keys = hash_files(paths)
    first_path: dict[str, str] = {}
    for path, key in zip(paths, keys, strict=True):
        if path is not None and key is not None and key not in first_path:
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


def encode_rank_images(
    dataset: Dataset, config: FeatureConfig, cache_dir: str | os.PathLike | None = None
) -> ImageReport | None:
    """This torchrun rank's slice of ``dataset``'s images into the cache (``None``: default);
    None when the features read no image."""
    image_column = dataset.schema.image_column
    if not (config.use_image and image_column):
        return None
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    paths = dataset.items[image_column].tolist()
    rank, world = distributed.rank(), distributed.world_size()
    return encode_image_shard(paths, config.image, cache, rank, world)
