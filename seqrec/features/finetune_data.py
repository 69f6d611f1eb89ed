"""What image fine-tuning learns from, and the frozen trunk's outputs it reuses every epoch.

- `attribute_labels`: one class code per item and catalogue column (rare classes merged into
  "other", -1 where the value is missing);
- `holdout_items`: a share of the product groups (variants of one product stay together) kept
  out of training, to measure attribute accuracy on products the tower never saw;
- `co_purchase_pairs`: (item, item) pairs bought by one shopper in consecutive baskets of the
  training split;
- `TrunkCache`: the frozen trunk run once per image and view (the plain image in float32, a few
  augmented views in float16), in memory-mapped files, so each epoch runs only the tuned tail.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from seqrec.data.dataset import DataError
from seqrec.features.cache import atomic_write, fingerprint, progress_task
from seqrec.features.image_config import ImageConfig
from seqrec.features.image_encode import cpu_count, image_settings
from seqrec.features.image_models import normalisation
from seqrec.features.image_transforms import load_image, normalise, open_image, train_transform

log = logging.getLogger(__name__)

OTHER = "other"


@dataclass
class Attribute:
    column: str
    classes: list[str]  # code c is classes[c]; the last is "other" when rare ones were merged
    codes: np.ndarray  # [N] int64, -1 where the item has no value


def attribute_labels(
    items: pd.DataFrame, columns: list[str], train: np.ndarray, min_items: int
) -> list[Attribute]:
    """Class codes per column; classes with fewer than ``min_items`` training items (``train``:
    [N] bool) become "other", as do values seen only outside training."""
    attributes = []
    for column in columns:
        if column not in items.columns:
            raise DataError(
                f"features.image.finetune.attribute_columns: no item column {column!r}; "
                f"the items have {list(items.columns)}"
            )
        values = items[column].astype("string")
        counts = values[train].value_counts()
        kept = sorted(str(value) for value in counts[counts >= min_items].index)
        merged = bool(values.notna().any() and values.dropna().isin(kept).mean() < 1.0)
        classes = kept + [OTHER] if merged else kept
        if len(classes) < 2:
            log.warning("attribute %s has fewer than 2 classes: not learned", column)
            continue
        codes = pd.Index(kept).get_indexer(values.fillna("")).astype(np.int64)
        codes[(codes < 0) & values.notna().to_numpy()] = len(kept)  # "other"
        attributes.append(Attribute(column, classes, codes))
    return attributes


def holdout_items(groups: pd.Series, share: float, seed: int) -> np.ndarray:
    """[N] bool: True for the items of a random ``share`` of the groups."""
    codes, uniques = pd.factorize(groups.astype("string").fillna(""), use_na_sentinel=False)
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(uniques)) < share
    return chosen[codes]


def co_purchase_pairs(
    train: pd.DataFrame, allowed: np.ndarray, max_pairs: int, seed: int
) -> np.ndarray:
    """[P, 2] item pairs: an item of one basket and an item of the same user's next basket
    (baskets: a user's events sharing a timestamp), both ``allowed`` ([N] bool), distinct,
    each pair once; a random ``max_pairs`` when there are more."""
    events = train[["user_id", "timestamp", "item_idx"]].drop_duplicates()
    events = events[allowed[events["item_idx"].to_numpy()]]
    baskets = events[["user_id", "timestamp"]].drop_duplicates()
    baskets = baskets.assign(rank=baskets.groupby("user_id").cumcount())  # rows time-sorted
    events = events.merge(baskets, on=["user_id", "timestamp"])[["user_id", "rank", "item_idx"]]
    following = events.assign(rank=events["rank"] - 1)
    pairs = events.merge(following, on=["user_id", "rank"], suffixes=("", "_next"))
    pairs = pairs[["item_idx", "item_idx_next"]].to_numpy(dtype=np.int64)  # [P, 2]
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = pairs[rng.choice(len(pairs), max_pairs, replace=False)]
    return pairs


# ----------------------------------------------------------------------------------------------
# the frozen trunk, run once per image and view


class TrunkCache:
    """Trunk outputs of every image: ``plain`` [N, C, H, W] float32 (the image as encoding sees
    it) and ``views`` [V, N, C, H, W] float16 (augmented), memory-mapped from ``folder``."""

    def __init__(self, folder: Path, shape: tuple[int, ...], n_views: int, n_items: int):
        self.folder = folder
        self.plain = np.load(folder / "plain.npy", mmap_mode="r")
        self.views = np.load(folder / "views.npy", mmap_mode="r") if n_views else None
        self.ok = np.load(folder / "ok.npy")
        if self.plain.shape != (n_items, *shape):
            raise DataError(f"trunk cache {folder} does not match; delete it")

    @property
    def n_views(self) -> int:
        return 0 if self.views is None else int(self.views.shape[0])

    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.npy"))

    def batch(self, rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """A random view (the plain one included) of each row: float32 [B, C, H, W]."""
        pick = rng.integers(0, self.n_views + 1, size=len(rows))
        out = np.empty((len(rows), *self.plain.shape[1:]), dtype=np.float32)
        for view in np.unique(pick):
            where = pick == view
            source = self.plain if view == 0 else self.views[view - 1]  # type: ignore[index]
            order = np.argsort(rows[where])  # sorted reads from the memory map
            chosen = np.empty_like(out[where])
            chosen[order] = source[rows[where][order]]
            out[where] = chosen
        return torch.from_numpy(out)


def trunk_cache(  # noqa: PLR0913 (the settings that make a cache)
    paths: list[str | None],
    keys: list[str | None],
    trunk: nn.Module,
    config: ImageConfig,
    root: Path,
    progress=None,
) -> TrunkCache:
    """Run ``trunk`` over every image and ``config.finetune.views`` augmented views, or reuse
    the cache under ``root`` made with the same images (``keys``: content hashes), trunk and
    settings. An unreadable image stays zeros with ``ok`` False."""
    finetune = config.finetune
    settings = {
        **image_settings(config),
        "trunk": finetune.trainable_blocks,
        "views": finetune.views,
        "seed": finetune.seed,
        "images": fingerprint({"keys": keys}),
    }
    folder = root / f"finetune-trunk-{fingerprint(settings)}"
    size = config.size
    with torch.no_grad():
        shape = tuple(trunk.eval()(torch.zeros(1, 3, size, size)).shape[1:])
    if (folder / "ok.npy").is_file():
        return TrunkCache(folder, shape, finetune.views, len(paths))
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _run_trunk(paths, trunk, config, folder, shape, progress)
    log.info("trunk cache %s: %.1fs", folder, time.perf_counter() - start)
    return TrunkCache(folder, shape, finetune.views, len(paths))


def _run_trunk(paths, trunk, config: ImageConfig, folder: Path, shape, progress) -> None:
    n, n_views = len(paths), config.finetune.views
    plain = np.lib.format.open_memmap(folder / "plain.tmp", "w+", np.float32, (n, *shape))
    views = None
    if n_views:
        views = np.lib.format.open_memmap(
            folder / "views.tmp", "w+", np.float16, (n_views, n, *shape)
        )
    ok = np.zeros(n, dtype=bool)
    run = _trunk_runner(trunk, config, folder)
    advance = progress_task(progress, "trunk (plain + augmented views)", n)
    torch.manual_seed(config.finetune.seed)  # the augmentation draws
    for rows, batch, good in _decoded_batches(paths, config):
        ok[rows[good]] = True
        outputs = run(batch.reshape(-1, *batch.shape[2:]))  # [B * (1 + V), C, H, W]
        outputs = outputs.reshape(len(rows), 1 + n_views, *shape)
        plain[rows] = outputs[:, 0]
        if views is not None:
            views[:, rows] = outputs[:, 1:].transpose(1, 0, 2, 3, 4)
        advance(len(rows))
    for array, name in ((plain, "plain"), (views, "views")):
        if array is not None:
            array.flush()
            (folder / f"{name}.tmp").rename(folder / f"{name}.npy")
    atomic_write(folder / "ok.npy", lambda file: np.save(file, ok))


def _trunk_runner(trunk: nn.Module, config: ImageConfig, folder: Path):
    """float32 [B, 3, S, S] -> trunk output [B, C, H, W] as numpy, on ONNX Runtime when the
    trunk exports (the torch trunk otherwise)."""
    if config.runtime == "onnx" and len(trunk) > 0:  # type: ignore[arg-type]
        try:
            from seqrec.onnx_export import export_onnx, onnx_session

            size = config.size
            model = export_onnx(trunk, torch.zeros(2, 3, size, size), "images", "trunk")
            session = onnx_session(model, config.threads or cpu_count())
            return lambda x: session.run(None, {"images": x})[0]
        except Exception as error:  # an operator the exporter lacks
            log.warning("ONNX export of the trunk failed (%s); using torch", error)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return trunk(torch.from_numpy(x)).numpy()

    return run


def _decoded_batches(
    paths: list[str | None], config: ImageConfig
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows [B], images float32 [B, 1 + V, 3, S, S], readable [B] bool) batch by batch,
    decoded and augmented by a thread pool."""
    augment = train_transform(config)
    mean, std = normalisation(config, None)
    n_views = config.finetune.views
    blank = np.zeros((1 + n_views, 3, config.size, config.size), dtype=np.float32)

    def load(path: str | None) -> np.ndarray | None:
        if path is None:
            return None
        try:
            plain = normalise(load_image(path, config), mean, std)  # [3, S, S]
            image = open_image(path, draft_size=config.size)
        except Exception as error:  # unreadable: zeros, ok False
            log.warning("image not used for fine-tuning: %s: %s", path, error)
            return None
        views = [augment(image).numpy() for _ in range(n_views)]
        return np.stack([plain, *views])  # [1 + V, 3, S, S]

    batch_size = config.batch_size
    with ThreadPoolExecutor(max(1, config.num_workers)) as pool:
        ahead = min(2 * batch_size, len(paths))  # images decoded ahead of the trunk
        pending = collections.deque(pool.submit(load, path) for path in paths[:ahead])
        for start in range(0, len(paths), batch_size):
            loaded = []
            for _ in range(min(batch_size, len(paths) - start)):
                loaded.append(pending.popleft().result())
                if ahead < len(paths):
                    pending.append(pool.submit(load, paths[ahead]))
                    ahead += 1
            rows = np.arange(start, start + len(loaded))
            good = np.array([image is not None for image in loaded])
            images = np.stack([blank if image is None else image for image in loaded])
            yield rows, images, good
