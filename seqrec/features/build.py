"""Dataset items -> `ItemFeatures` (text, image, categories, numeric), cached on disk.

    >>> features = fit_item_features(dataset, FeatureConfig(), cache_dir="~/.cache/seqrec").features

What each modality becomes (row ``i`` = item index ``i``):

- text: the schema's text columns (or ``config.text_columns``) joined per item and encoded by
  `seqrec.features.text.TextEncoder` (TF-IDF+SVD fitted on the catalogue, or a sentence model).
- image: `seqrec.features.image.encode_images` on the schema's image column; ``image_mask`` is
  False where the image is missing or unreadable.
- categories: one integer code per category column, by `pandas.factorize` on the catalogue;
  0 = missing (or, for new items, a value not seen at fit time).
- numeric: ``sign(x) * log1p(|x|)`` (log1p for prices), then z-scored with the catalogue's mean
  and std; 0 where missing.

`fit_item_features` also returns an `EncodeReport` (counts and timings for `seqrec encode`) and
the fitted `ItemFeaturizer` (text encoder, category levels, numeric statistics): save it with a
trained model and `encode_new_items` turns items added later into the same feature space.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqrec.data.dataset import DataError, Dataset
from seqrec.features.cache import (
    VectorCache,
    default_cache_dir,
    fingerprint,
    hash_text,
    hash_texts,
    load_object,
    load_pickled,
    save_object,
)
from seqrec.features.image import ImageConfig, ImageReport, encode_images
from seqrec.features.item_features import ItemFeatures
from seqrec.features.text import TextConfig, TextEncoder, item_texts, uses_column_names

log = logging.getLogger(__name__)


@dataclass
class FeatureConfig:
    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    use_text: bool = True
    use_image: bool = True
    use_categories: bool = True
    use_numeric: bool = True
    text_columns: list[str] | None = None  # None: the dataset schema's text columns


@dataclass
class EncodeReport:
    """What `fit_item_features` / `encode_new_items` did, for `seqrec encode` to print."""

    items: int = 0
    text_encoder: str | None = None  # e.g. "tfidf (128-d)"
    text_columns: list[str] = field(default_factory=list)
    text_empty: int = 0  # items whose text columns are all missing (zero text vector)
    text_from_cache: bool = False
    image: ImageReport | None = None
    category_levels: dict[str, int] = field(default_factory=dict)  # column -> distinct values
    numeric_missing: dict[str, int] = field(default_factory=dict)  # column -> missing values
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time

    def lines(self) -> list[str]:
        """Human-readable summary, one line per modality."""
        out = [f"items: {self.items}"]
        if self.text_encoder:
            cached = ", from cache" if self.text_from_cache else ""
            out.append(
                f"text: {self.text_encoder} from {', '.join(self.text_columns)}; "
                f"{self.text_empty} items without text{cached} ({self.seconds['text']:.1f}s)"
            )
        if self.image is not None:
            out.append(self.image.summary())
        if self.category_levels:
            levels = ", ".join(f"{c} {n}" for c, n in self.category_levels.items())
            out.append(f"categories (distinct values): {levels}")
        if self.numeric_missing:
            missing = ", ".join(f"{c} {n} missing" for c, n in self.numeric_missing.items())
            out.append(f"numeric: {missing}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ItemFeaturizer:
    """Everything fitted on a catalogue, to encode more items the same way. Picklable."""

    config: FeatureConfig
    text_columns: list[str] = field(default_factory=list)
    text_encoder: TextEncoder | None = None
    category_columns: list[str] = field(default_factory=list)
    category_levels: list[list] = field(default_factory=list)  # code c >= 1 is levels[c - 1]
    numeric_columns: list[str] = field(default_factory=list)
    numeric_mean: list[float] = field(default_factory=list)  # after log1p
    numeric_std: list[float] = field(default_factory=list)
    image_column: str | None = None

    def save(self, path: str | os.PathLike) -> None:
        save_object(Path(path), self)

    @staticmethod
    def load(path: str | os.PathLike) -> ItemFeaturizer:
        """Load a saved featurizer (a pickle: only load files you trust)."""
        return load_pickled(path, ItemFeaturizer)


@dataclass
class FeatureBuild:
    features: ItemFeatures
    report: EncodeReport
    featurizer: ItemFeaturizer


# ----------------------------------------------------------------------------------------------
# entry points


def fit_item_features(
    dataset: Dataset,
    config: FeatureConfig | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: Any = None,
) -> FeatureBuild:
    """Fit the featurizer on ``dataset``'s catalogue and encode it: `ItemFeatures` for every
    catalogue item, the `EncodeReport` and the fitted `ItemFeaturizer`.

    ``cache_dir``: where encoded vectors are kept (None = `default_cache_dir()`, i.e.
    ``~/.cache/seqrec``; pass False to use no cache). ``progress``: an optional
    `rich.progress.Progress`; tasks are added to it.
    """
    config = config or FeatureConfig()
    schema = dataset.schema
    items = dataset.items
    featurizer = ItemFeaturizer(config=config, image_column=schema.image_column)
    featurizer.text_columns = list(
        config.text_columns if config.text_columns is not None else schema.text_columns
    )
    featurizer.category_columns = list(schema.category_columns)
    featurizer.numeric_columns = list(schema.numeric_columns)
    _require_columns(items, featurizer)
    if config.use_categories:
        featurizer.category_levels = [
            _levels(items[column]) for column in featurizer.category_columns
        ]
    if config.use_numeric:
        for column in featurizer.numeric_columns:
            values = _log_numeric(items[column])
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else 0.0
            std = float(finite.std()) if finite.size else 1.0
            featurizer.numeric_mean.append(mean)
            featurizer.numeric_std.append(std if std > 1e-12 else 1.0)
    return _encode(items, featurizer, cache_dir, progress, fit=True)


def encode_new_items(
    items: Dataset | pd.DataFrame,
    featurizer: ItemFeaturizer,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: Any = None,
) -> FeatureBuild:
    """Encode items with a fitted featurizer (same vocabulary, category codes and scaling).

    Category values unseen at fit time get code 0 (unknown); TF-IDF words unseen at fit time
    are ignored. ``items`` needs the columns the featurizer was fitted on.
    """
    frame = items.items if isinstance(items, Dataset) else items
    _require_columns(frame, featurizer)
    return _encode(frame, featurizer, cache_dir, progress, fit=False)


# ----------------------------------------------------------------------------------------------
# the steps


def _encode(items, featurizer, cache_dir, progress, fit: bool) -> FeatureBuild:
    config = featurizer.config
    if cache_dir is None:
        cache_dir = default_cache_dir()
    elif cache_dir is False:
        cache_dir = None
    report = EncodeReport(items=len(items))
    features = ItemFeatures()

    if config.use_text and featurizer.text_columns:
        start = time.perf_counter()
        features.text = torch.from_numpy(_text(items, featurizer, cache_dir, progress, report, fit))
        if config.text.encoder == "tfidf":  # exact term weights, for content similarity
            texts = item_texts(items, featurizer.text_columns, uses_column_names(config.text))
            features.text_terms = featurizer.text_encoder.terms(texts).tocsr()
        report.seconds["text"] = time.perf_counter() - start
    if config.use_image and featurizer.image_column:
        start = time.perf_counter()
        report.image = ImageReport()
        vectors, mask = encode_images(
            items[featurizer.image_column].tolist(),
            config.image,
            progress=progress,
            cache_dir=cache_dir,
            report=report.image,
        )
        features.image = torch.from_numpy(vectors)  # [N, D_image]
        features.image_mask = torch.from_numpy(mask)  # [N]
        report.seconds["image"] = time.perf_counter() - start
    if config.use_categories and featurizer.category_columns:
        pairs = list(zip(featurizer.category_columns, featurizer.category_levels, strict=True))
        codes = [_codes(items[column], levels) for column, levels in pairs]
        features.categories = torch.from_numpy(np.stack(codes, axis=1))  # [N, C] int64
        features.category_cardinalities = [len(levels) + 1 for _, levels in pairs]
        report.category_levels = {column: len(levels) for column, levels in pairs}
    if config.use_numeric and featurizer.numeric_columns:
        columns = []
        for column, mean, std in zip(
            featurizer.numeric_columns, featurizer.numeric_mean, featurizer.numeric_std, strict=True
        ):
            values = (_log_numeric(items[column]) - mean) / std
            report.numeric_missing[column] = int((~np.isfinite(values)).sum())
            columns.append(np.where(np.isfinite(values), values, 0.0))
        features.numeric = torch.from_numpy(np.stack(columns, axis=1).astype(np.float32))  # [N, F]
    for line in report.lines():
        log.info(line)
    return FeatureBuild(features, report, featurizer)


def _text(items, featurizer, cache_dir, progress, report: EncodeReport, fit: bool) -> np.ndarray:
    """[N, D_text] float32. TF-IDF: cached whole per (settings, corpus); sentence: per text."""
    config: TextConfig = featurizer.config.text
    texts = item_texts(items, featurizer.text_columns, uses_column_names(config))
    report.text_columns = list(featurizer.text_columns)
    report.text_empty = sum(1 for t in texts if not t)
    if fit and featurizer.text_encoder is None:
        featurizer.text_encoder = TextEncoder(config)
    encoder = featurizer.text_encoder
    if config.encoder == "tfidf" and fit:
        vectors = _fit_tfidf_cached(texts, featurizer, cache_dir, report)
    elif config.encoder == "sentence" and cache_dir is not None:
        vectors = _sentence_cached(texts, encoder, cache_dir, progress, report)
    else:  # tfidf on new items: a transform with the fitted vocabulary, fast
        vectors = encoder.transform(texts, progress)
    report.text_encoder = f"{config.encoder} ({vectors.shape[1]}-d)"
    return vectors


def _fit_tfidf_cached(texts, featurizer, cache_dir, report) -> np.ndarray:
    encoder: TextEncoder = featurizer.text_encoder
    if cache_dir is None:
        return encoder.fit_transform(texts)
    settings = {"kind": "text", **encoder.settings(), "corpus": hash_texts(texts)}
    cache = VectorCache(cache_dir, f"text-tfidf-{fingerprint(settings)}", meta=settings)
    keys = [hash_text(t) for t in texts]
    fitted = load_object(cache.dir / "encoder.pkl")
    vectors, found, _ = cache.lookup(keys)
    if isinstance(fitted, TextEncoder) and vectors is not None and found.all():
        featurizer.text_encoder = fitted
        report.text_from_cache = True
        return vectors
    vectors = encoder.fit_transform(texts)
    save_object(cache.dir / "encoder.pkl", encoder)
    cache.add(keys, vectors)
    return vectors


def _sentence_cached(texts, encoder: TextEncoder, cache_dir, progress, report) -> np.ndarray:
    settings = {"kind": "text", **encoder.settings()}
    cache = VectorCache(cache_dir, f"text-sentence-{fingerprint(settings)}", meta=settings)
    keys = [hash_text(t) for t in texts]
    vectors, found, _ = cache.lookup(keys)
    todo, seen = [], set()  # first item of each non-empty text not in the cache
    for i, key in enumerate(keys):
        if texts[i] and (vectors is None or not found[i]) and key not in seen:
            seen.add(key)
            todo.append(i)
    chunk = 2048  # saved as it goes: an interrupted run resumes
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        vectors = encoder.transform([texts[i] for i in part], progress)  # [n, D]
        cache.add([keys[i] for i in part], vectors)
    report.text_from_cache = not todo
    vectors, found, _ = cache.lookup(keys)
    if vectors is None:  # nothing but empty texts
        return np.zeros((len(texts), encoder.dim), dtype=np.float32)
    vectors[[not t for t in texts]] = 0.0
    return vectors


def _require_columns(items: pd.DataFrame, featurizer: ItemFeaturizer) -> None:
    config = featurizer.config
    needed = []
    if config.use_text:
        needed += featurizer.text_columns
    if config.use_categories:
        needed += featurizer.category_columns
    if config.use_numeric:
        needed += featurizer.numeric_columns
    if config.use_image and featurizer.image_column:
        needed.append(featurizer.image_column)
    missing = [column for column in dict.fromkeys(needed) if column not in items.columns]
    if missing:
        raise DataError(f"item column(s) {missing} not found; the items have {list(items.columns)}")


def _levels(values: pd.Series) -> list:
    """Distinct non-missing values in order of first appearance (code = position + 1)."""
    _, uniques = pd.factorize(values, use_na_sentinel=True)
    return list(uniques)


def _codes(values: pd.Series, levels: list) -> np.ndarray:
    """int64 codes: 1 + position in ``levels``, 0 for missing or unseen values."""
    codes = pd.Index(levels).get_indexer(values)  # -1 = missing or unseen
    return codes.astype(np.int64) + 1


def _log_numeric(values: pd.Series) -> np.ndarray:
    """float64 ``sign(x) * log1p(|x|)``; NaN where missing or not a number."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.sign(numbers) * np.log1p(np.abs(numbers))


def describe_cache(cache_dir: str | os.PathLike | None = None) -> list[str]:
    """One line per cache namespace (what is stored where), for `seqrec encode --verbose`."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    lines = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        shards = list(folder.glob("shard-*.npz"))
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        lines.append(f"{folder.name}: {len(shards)} shards, {size / 1e6:.1f} MB")
    return lines
