"""`seqrec finetune-images`: tune the last stages of the image backbone on the shop's catalogue.

    >>> report = finetune_images(dataset, config.features.image, config.split, out_dir="runs/ft")

Steps, cheap on a CPU because the frozen part of the network runs once per image and view:

1. labels: each attribute column's classes (rare ones merged into "other"); co-purchase pairs
   from consecutive baskets of the training split (`seqrec.data.split`, as ``seqrec train``);
   a share of the product groups held out (`seqrec.features.finetune_data`);
2. the frozen trunk over the plain image and ``views`` augmented views (`TrunkCache`);
3. epochs over the trunk outputs: tail + projection + one linear head per attribute, trained
   with the chosen objectives (`attribute_loss`, `co_purchase_loss`, weighted and summed);
4. held-out attribute accuracy, measured whatever the objectives: the same logistic-regression
   probe on the frozen features and on the vectors the tuned tower serves, and the tuned heads
   where the attributes objective trained them;
5. the tower saved as ``DIR/image_tower.safetensors`` and the catalogue's tuned vectors put in
   the feature cache under the tuned tower's key, where ``features.image.finetune.weights =
   "DIR"`` finds them (``seqrec train`` / ``bench``; bundles encode new items with it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqrec.constraints import ConfigError, check_config
from seqrec.data.dataset import DataError, Dataset
from seqrec.data.split import SplitConfig, split_dataset
from seqrec.features.cache import default_cache_dir, hash_files
from seqrec.features.finetune_data import (
    Attribute,
    TrunkCache,
    attribute_labels,
    co_purchase_pairs,
    holdout_items,
    trunk_cache,
)
from seqrec.features.image_config import ImageConfig
from seqrec.features.image_encode import cpu_count, image_cache
from seqrec.features.image_models import build_backbone
from seqrec.features.image_tuned import (
    TOWER_FILE,
    TUNABLE,
    backbone_stages,
    base_config,
    save_tower,
    split_stages,
)

log = logging.getLogger(__name__)

MAX_PAIRS = 1_000_000  # co-purchase pairs kept (a random sample beyond)


@dataclass
class FinetuneReport:
    """What `finetune_images` did, for the CLI and the benchmark."""

    items: int = 0
    images: int = 0  # readable images
    train_items: int = 0
    heldout_items: int = 0
    attributes: dict[str, int] = field(default_factory=dict)  # column -> classes
    pairs: int = 0  # co-purchase pairs
    trunk_cache_mb: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time
    losses: list[dict[str, float]] = field(default_factory=list)  # per epoch
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> probe/tuned
    weights: str = ""  # the tower file

    def lines(self) -> list[str]:
        out = [
            f"items: {self.items} ({self.images} images), training {self.train_items}, "
            f"held out {self.heldout_items}; co-purchase pairs {self.pairs}",
            f"trunk cache: {self.trunk_cache_mb:.0f} MB",
        ]
        out += [f"epoch {i + 1}: " + _figures(loss) for i, loss in enumerate(self.losses)]
        for column, scores in self.accuracy.items():
            out.append(f"held-out accuracy {column}: " + _figures(scores))
        out.append("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.seconds.items()))
        out.append(f"tuned tower: {self.weights}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _figures(values: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in values.items())


# ----------------------------------------------------------------------------------------------
# losses


def attribute_loss(logits: list[torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """Mean over attributes of the cross-entropy of ``logits[k]`` [B, C_k] against ``codes``
    [B, K] (-1: no label, left out)."""
    losses = []
    for k, scores in enumerate(logits):
        target = codes[:, k]
        if (target >= 0).any():
            losses.append(F.cross_entropy(scores, target, ignore_index=-1))
    return torch.stack(losses).mean() if losses else logits[0].sum() * 0.0


def co_purchase_loss(left: torch.Tensor, right: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``left`` [B, D] and of ``right`` [B, D] are a bought-together
    pair, every other row of the batch a negative."""
    left, right = F.normalize(left, dim=1), F.normalize(right, dim=1)
    logits = left @ right.T / temperature  # [B, B]
    target = torch.arange(len(left))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# ----------------------------------------------------------------------------------------------
# the entry point


@dataclass
class _Task:
    """What the epochs read."""

    cache: TrunkCache
    codes: np.ndarray  # [N, K] int64 attribute classes, -1 = none
    train_rows: np.ndarray  # items trained on (readable image, not held out)
    heldout_rows: np.ndarray
    pairs: np.ndarray  # [P, 2]
    attributes: list[Attribute]


def finetune_images(  # noqa: PLR0913 (the inputs of one command)
    dataset: Dataset,
    config: ImageConfig,
    split: SplitConfig,
    out_dir: str | Path,
    cache_dir: str | Path | bool | None = None,
    progress: Any = None,
) -> FinetuneReport:
    """Fine-tune ``config``'s pretrained backbone on ``dataset`` (see the module doc; a
    ``finetune.weights`` already set is not read: it names where the tower is used); the tower
    goes to ``out_dir``, the catalogue's tuned vectors to the feature cache (None: the default one;
    False: none)."""
    check_config(config, "features.image")
    config = base_config(config)  # tuning starts from the pretrained backbone, never a tower
    finetune = config.finetune
    if config.backbone not in TUNABLE:
        raise ConfigError(
            f"features.image.backbone = {config.backbone!r} cannot be fine-tuned; use one of "
            f"{', '.join(TUNABLE)}"
        )
    schema = dataset.schema
    if schema.image_column is None:
        raise DataError(f"{dataset.name} has no image column to fine-tune on")
    out = Path(out_dir)
    root = out if cache_dir is False else default_cache_dir()
    if isinstance(cache_dir, (str, Path)):
        root = Path(cache_dir)
    torch.set_num_threads(config.threads or cpu_count())
    torch.manual_seed(finetune.seed)
    report = FinetuneReport(items=dataset.n_items)
    clock = time.perf_counter()
    backbone = build_backbone(config)
    trunk, tail = split_stages(
        backbone_stages(config.backbone, backbone.module), finetune.trainable_blocks
    )
    paths = [p if isinstance(p, str) and p else None for p in dataset.items[schema.image_column]]
    keys = hash_files(paths, num_workers=max(4, config.num_workers))
    task = _prepare(dataset, config, split, keys, report)
    task.cache = trunk_cache(paths, keys, trunk, config, root / "finetune", progress)
    report.trunk_cache_mb = task.cache.bytes() / 1e6
    report.seconds["trunk"] = time.perf_counter() - clock
    _finish_task(task, report)
    frozen = _embed(tail, None, task.cache)  # [N, D] the frozen features
    projection = nn.Linear(backbone.dim, finetune.dim)
    heads = nn.ModuleList(nn.Linear(finetune.dim, len(a.classes)) for a in task.attributes)
    clock = time.perf_counter()
    _train(tail, projection, heads, task, finetune, report)
    report.seconds["train"] = time.perf_counter() - clock
    clock = time.perf_counter()
    pooled = finetune.output == "pooled"
    served = _embed(tail, None if pooled else projection, task.cache)  # what the tower encodes
    projected = None  # [N, dim] what the heads read, when the attributes objective trained them
    if "attributes" in finetune.objectives:
        projected = _embed(tail, projection, task.cache) if pooled else served
    report.accuracy = _accuracy(frozen, served, projected, heads, task)
    report.seconds["probe"] = time.perf_counter() - clock
    clock = time.perf_counter()
    tower = out / TOWER_FILE
    save_tower(tower, config, tail, projection)
    report.weights = str(tower.resolve())
    if cache_dir is not False:
        tuned = _tuned_config(config, str(out.resolve()))
        _cache_vectors(tuned, root, keys, served, task.cache.ok)
    report.seconds["encode"] = time.perf_counter() - clock
    (out / "finetune.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


def _tuned_config(config: ImageConfig, weights: str) -> ImageConfig:
    return dataclasses.replace(
        config, finetune=dataclasses.replace(config.finetune, weights=weights)
    )


def _prepare(dataset, config: ImageConfig, split: SplitConfig, keys, report) -> _Task:
    """Labels, held-out items and co-purchase pairs (the trunk cache comes later)."""
    finetune, schema, items = config.finetune, dataset.schema, dataset.items
    groups = items[schema.group_column] if schema.group_column else items["item_id"]
    heldout = holdout_items(groups, finetune.holdout, finetune.seed)
    has_image = np.array([key is not None for key in keys])
    columns = finetune.attribute_columns
    columns = list(schema.category_columns if columns is None else columns)
    # labelled whatever the objectives: held-out accuracy is measured on them
    attributes = attribute_labels(items, columns, ~heldout & has_image, finetune.min_class_items)
    if not attributes and "attributes" in finetune.objectives:
        raise DataError(
            "the attributes objective needs item category columns with 2+ classes "
            "(features.image.finetune.attribute_columns)"
        )
    pairs = np.zeros((0, 2), dtype=np.int64)
    if "co_purchase" in finetune.objectives:
        train = split_dataset(dataset, split).train
        pairs = co_purchase_pairs(train, ~heldout & has_image, MAX_PAIRS, finetune.seed)
        if len(pairs) < 2:
            raise DataError(
                "the co_purchase objective found no items bought in consecutive "
                "baskets of the training split"
            )
    codes = (
        np.stack([a.codes for a in attributes], axis=1)
        if attributes
        else np.zeros((len(items), 0), dtype=np.int64)
    )
    report.attributes = {a.column: len(a.classes) for a in attributes}
    report.pairs = len(pairs)
    rows = np.arange(len(items))
    return _Task(None, codes, rows[~heldout], rows[heldout], pairs, attributes)  # type: ignore[arg-type]


def _finish_task(task: _Task, report: FinetuneReport) -> None:
    """Keep the items whose image the trunk could read."""
    ok = task.cache.ok
    task.train_rows = task.train_rows[ok[task.train_rows]]
    task.heldout_rows = task.heldout_rows[ok[task.heldout_rows]]
    report.images = int(ok.sum())
    report.train_items, report.heldout_items = len(task.train_rows), len(task.heldout_rows)


# ----------------------------------------------------------------------------------------------
# training and measuring


def _train(tail, projection, heads, task: _Task, finetune, report: FinetuneReport) -> None:
    parameters = [*tail.parameters(), *projection.parameters(), *heads.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=finetune.lr, weight_decay=finetune.weight_decay)
    rng = np.random.default_rng(finetune.seed)
    use_attributes = bool(task.attributes) and "attributes" in finetune.objectives
    use_pairs = len(task.pairs) >= 2 and "co_purchase" in finetune.objectives
    steps = max(1, math.ceil(len(task.train_rows) / finetune.batch_size))
    if not use_attributes:
        steps = max(1, math.ceil(len(task.pairs) * 2 / finetune.batch_size))
    half = max(2, finetune.batch_size // 2)
    for _ in range(finetune.epochs):
        tail.train()
        rows = rng.permutation(task.train_rows)
        pair_order = rng.permutation(len(task.pairs))
        sums = {"attributes": 0.0, "co_purchase": 0.0, "total": 0.0}
        for step in range(steps):
            loss = torch.zeros(())
            if use_attributes:
                batch = rows[step * finetune.batch_size : (step + 1) * finetune.batch_size]
                batch = batch if len(batch) else rows[: finetune.batch_size]
                z = projection(tail(task.cache.batch(batch, rng)))  # [B, dim]
                part = attribute_loss([h(z) for h in heads], torch.from_numpy(task.codes[batch]))
                sums["attributes"] += part.item()
                loss = loss + finetune.attribute_weight * part
            if use_pairs:
                chosen = task.pairs[
                    np.take(pair_order, range(step * half, (step + 1) * half), mode="wrap")
                ]  # [B/2, 2]
                z = projection(tail(task.cache.batch(chosen.T.reshape(-1), rng)))  # [B, dim]
                part = co_purchase_loss(z[: len(chosen)], z[len(chosen) :], finetune.temperature)
                sums["co_purchase"] += part.item()
                loss = loss + finetune.co_purchase_weight * part
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            sums["total"] += loss.item()
        report.losses.append({k: v / steps for k, v in sums.items() if v or k == "total"})
        log.info("fine-tuning epoch %d: %s", len(report.losses), _figures(report.losses[-1]))
    tail.eval()


def _embed(tail: nn.Module, projection: nn.Module | None, cache: TrunkCache) -> np.ndarray:
    """The plain images through ``tail`` (and ``projection``): float32 [N, D]."""
    tail.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(cache.ok), 256):
            x = torch.from_numpy(np.array(cache.plain[start : start + 256]))
            z = tail(x)  # [B, D]
            out.append((projection(z) if projection is not None else z).numpy())
    vectors = np.concatenate(out).astype(np.float32)
    vectors[~cache.ok] = 0.0
    return vectors


def _accuracy(frozen, served, projected, heads, task: _Task) -> dict[str, dict[str, float]]:
    """Per attribute, on the held-out items: a logistic-regression probe fitted on the training
    items' frozen features (``probe``) and the same probe on the vectors the tuned tower serves
    (``tuned_probe``); with ``projected`` (attributes objective), the heads on it (``tuned``)."""
    out = {}
    for k, attribute in enumerate(task.attributes):
        train = task.train_rows[task.codes[task.train_rows, k] >= 0]
        test = task.heldout_rows[task.codes[task.heldout_rows, k] >= 0]
        if len(test) == 0 or len(np.unique(task.codes[train, k])) < 2:
            continue
        labels = task.codes[:, k]
        scores = {
            "probe": _probe_accuracy(frozen, labels, train, test),
            "tuned_probe": _probe_accuracy(served, labels, train, test),
        }
        if projected is not None:
            with torch.inference_mode():
                logits = heads[k](torch.from_numpy(projected[test]))  # [T, C]
            scores["tuned"] = float((logits.argmax(1).numpy() == labels[test]).mean())
        out[attribute.column] = {**scores, "items": float(len(test))}
    return out


def _probe_accuracy(vectors: np.ndarray, labels: np.ndarray, train, test) -> float:
    """Held-out accuracy of a logistic regression on standardised ``vectors`` [N, D]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(vectors[train])
    probe = LogisticRegression(max_iter=300, C=0.5)
    probe.fit(scaler.transform(vectors[train]), labels[train])
    return float((probe.predict(scaler.transform(vectors[test])) == labels[test]).mean())


def _cache_vectors(config: ImageConfig, root: Path, keys, vectors: np.ndarray, ok) -> None:
    """Store the tuned catalogue vectors under the tuned tower's cache key."""
    cache = image_cache(config, root)
    rows = [i for i, key in enumerate(keys) if key is not None and key not in cache]
    if rows:
        cache.add([keys[i] for i in rows], vectors[rows], ok[rows])
