"""A trained model as a folder: everything needed to score, evaluate and serve it.

Files:

- ``config.toml``: the resolved experiment config (`seqrec.config.ExperimentConfig`);
- ``items.parquet``: the item vocabulary (row = item index) with ``item_id`` and display columns;
- ``features.safetensors``: the item content tensors the item network was built from;
- ``model.safetensors``: the model weights;
- ``item_matrix.safetensors``: the precomputed [N, D] item vectors (``item_matrix``) and the
  training popularity counts (``popularity``, the serving fallback);
- ``featurizer.pkl``: the fitted feature encoders, to encode items the bundle has never seen;
- ``image_tower.safetensors``: with a fine-tuned image tower (`seqrec.features.image_tuned`),
  a copy of it, which the featurizer then encodes new images with (`bundle_featurizer`);
- ``metrics.json``: validation metrics per epoch, the chosen epoch, and test metrics;
- a two-stage bundle (``ranker.enabled``) adds the ranker, the item columns and the log its
  features read (`seqrec.bundle_ranker`); `Bundle.scorer` is then the ranker's;
- ``bundle.json``: format version, sizes, the evaluation protocol, and every other file with its
  size and sha256; `load_bundle` refuses a folder whose files do not match it.

Writing is all or nothing, and loading checks every file: `seqrec.bundle_files`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from seqrec.bundle_files import (
    BUNDLE_VERSION,
    STAGING,
    carry_over,
    check_bundle,
    check_file,
    describe,
    recover_bundle,
    sibling,
    swap,
    sync,
)
from seqrec.bundle_ranker import BundledRanker, RankerPart, ranker_schema
from seqrec.config import ExperimentConfig, load_config, save_config
from seqrec.data.dataset import DataError, Dataset
from seqrec.features.build import ItemFeaturizer
from seqrec.features.image_tuned import TOWER_FILE, tower_path
from seqrec.features.item_features import ItemFeatures
from seqrec.models.recommender import SequenceRecommender, build_model
from seqrec.ranker.scorer import RankerScorer
from seqrec.report import code_version
from seqrec.scoring import ModelScorer

FEATURE_NAMES = ("text", "image", "image_mask", "categories", "numeric")


def display_items(dataset: Dataset) -> pd.DataFrame:
    """item_id plus the columns a shop page shows: title, price, image path, text."""
    schema, items = dataset.schema, dataset.items
    out = pd.DataFrame({"item_id": items["item_id"].astype(str)})
    out["title"] = items[schema.title_column].astype(str) if schema.title_column else out.item_id
    out["price"] = (
        pd.to_numeric(items[schema.price_column], errors="coerce")
        if schema.price_column
        else np.nan
    )
    image = items[schema.image_column] if schema.image_column else pd.Series([None] * len(items))
    out["image_path"] = image.where(image.notna(), None).astype(object).to_numpy()
    for column in schema.text_columns:
        if column not in out:
            out[column] = items[column].astype(object).where(items[column].notna(), None).to_numpy()
    return out


def features_to_tensors(features: ItemFeatures) -> dict[str, torch.Tensor]:
    tensors = {name: getattr(features, name) for name in FEATURE_NAMES}
    out = {name: tensor.contiguous() for name, tensor in tensors.items() if tensor is not None}
    if features.text_terms is not None:  # sparse CSR, stored as its parts
        terms = sp.csr_matrix(features.text_terms, dtype=np.float32)
        out["text_terms.indptr"] = torch.from_numpy(terms.indptr.astype(np.int64))
        out["text_terms.indices"] = torch.from_numpy(terms.indices.astype(np.int64))
        out["text_terms.values"] = torch.from_numpy(terms.data)
        out["text_terms.shape"] = torch.tensor(list(terms.shape), dtype=torch.int64)
    return out


def features_from_tensors(tensors: dict[str, torch.Tensor], cardinalities: list[int]):
    text_terms = None
    if "text_terms.indptr" in tensors:
        parts = [tensors[f"text_terms.{name}"].numpy() for name in ("values", "indices", "indptr")]
        text_terms = sp.csr_matrix(tuple(parts), shape=tuple(tensors["text_terms.shape"].tolist()))
    return ItemFeatures(
        **{name: tensors.get(name) for name in FEATURE_NAMES},
        category_cardinalities=list(cardinalities) if "categories" in tensors else [],
        text_terms=text_terms,
    )


def save_bundle(  # noqa: PLR0913 (a two-stage bundle's ranker is one optional part more)
    out_dir: Path,
    config: ExperimentConfig,
    dataset: Dataset,
    features: ItemFeatures,
    model: SequenceRecommender,
    popularity: np.ndarray,
    metrics: dict,
    featurizer: ItemFeaturizer | None = None,
    *,
    ranker: RankerPart | None = None,
) -> Path:
    """Write a bundle at ``out_dir``, replacing the one there as a whole (see the module doc);
    with ``ranker``, a two-stage bundle."""
    given, out_dir = Path(out_dir), Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{given} is a file: give --out a folder for the bundle")
    model.eval()
    with torch.no_grad():
        item_matrix = model.item_matrix().float().cpu().contiguous()  # [N, D]
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    matrices = {"item_matrix": item_matrix, "popularity": torch.as_tensor(popularity).float()}
    writers = {
        "config.toml": lambda path: save_config(config, path),
        "items.parquet": lambda path: display_items(dataset).to_parquet(path),
        "features.safetensors": lambda path: save_file(features_to_tensors(features), path),
        "model.safetensors": lambda path: save_file(state, path),
        "item_matrix.safetensors": lambda path: save_file(matrices, path),
        "metrics.json": lambda path: path.write_text(json.dumps(metrics, indent=2)),
    }
    if featurizer is not None:
        writers["featurizer.pkl"] = featurizer.save
        tower = tuned_tower(featurizer)
        if tower is not None:  # new items are encoded with the bundle's own copy
            writers[TOWER_FILE] = lambda path: shutil.copyfile(tower, path)
    summary = _summary(config, dataset, features, item_matrix)
    if ranker is not None:  # a two-stage bundle (seqrec.bundle_ranker)
        writers.update(ranker.writers(dataset))
        summary["ranker"] = ranker_schema(dataset)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_bundle(out_dir)
    staging = sibling(out_dir, STAGING)
    staging.mkdir()
    try:
        if out_dir.is_dir():
            shutil.copymode(out_dir, staging)
        files = {}
        for name, write in writers.items():
            write(staging / name)
            files[name] = describe(staging / name)
        for written in ranker.ranker.save(staging) if ranker is not None else []:
            files[written.name] = describe(written)
        manifest = {**summary, "files": files}
        (staging / "bundle.json").write_text(json.dumps(manifest, indent=2))
        sync(staging / "bundle.json")
        if out_dir.is_dir():
            carry_over(out_dir, staging)
        swap(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the swap succeeded
    return given


def _summary(config, dataset: Dataset, features: ItemFeatures, item_matrix) -> dict:
    """The manifest's fields other than the file list: format, sizes, evaluation protocol."""
    return {
        "version": BUNDLE_VERSION,
        "dataset": dataset.name,
        "n_items": dataset.n_items,
        "dim": int(item_matrix.shape[1]),
        "max_len": config.model.max_len,
        "category_cardinalities": features.category_cardinalities,
        "split": config.split.method,
        "remove_seen": config.eval.remove_seen,
        "time_unit": dataset.time_unit,
        "code": code_version(),  # the seqrec that wrote it (warn_other_code)
    }


@dataclass
class Bundle:
    path: Path
    config: ExperimentConfig
    manifest: dict
    items: pd.DataFrame  # row = item index
    features: ItemFeatures
    model: SequenceRecommender
    item_matrix: torch.Tensor  # [N, D]
    popularity: np.ndarray  # [N] training interaction counts
    metrics: dict
    ranker: BundledRanker | None = None  # two-stage bundles
    _ranker_scorer: RankerScorer | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self) -> dict[str, int]:
        return {item_id: idx for idx, item_id in enumerate(self.items["item_id"])}

    def model_scorer(self) -> ModelScorer:
        """The `ModelScorer` of the bundle's model, with its precomputed item matrix."""
        return ModelScorer(self.model, self.config.model.max_len, item_matrix=self.item_matrix)

    def scorer(self) -> ModelScorer | RankerScorer:
        """What the bundle ranks with: the ranker of a two-stage bundle (over the bundle's log,
        built once), else the model's `ModelScorer`."""
        if self.ranker is None:
            return self.model_scorer()
        if self._ranker_scorer is None:
            self._ranker_scorer = self.ranker_scorer(self.model_scorer())
        return self._ranker_scorer

    def ranker_scorer(self, model: ModelScorer) -> RankerScorer:
        """The bundle's ranker over its log (what the service reads), with ``model`` as the
        sequence model it reads (the bundle's, or a faster runtime of it)."""
        if self.ranker is None:
            raise DataError(f"{self.path} has no ranker (trained without ranker.enabled)")
        time_unit = str(self.manifest.get("time_unit", "order"))
        return self.ranker.scorer(self.items["item_id"], self.features, model, time_unit)


def load_bundle(path: str | Path) -> Bundle:
    """Load the bundle at ``path`` after checking every file against its bundle.json."""
    path = Path(path)
    manifest = check_bundle(path)
    warn_other_code(path, manifest)
    config = load_config(path / "config.toml")
    items = pd.read_parquet(path / "items.parquet")
    features = features_from_tensors(
        load_file(path / "features.safetensors"), manifest["category_cardinalities"]
    )
    model = build_model(config.model, features, len(items))
    model.load_state_dict(load_file(path / "model.safetensors"))
    model.eval()
    matrices = load_file(path / "item_matrix.safetensors")
    return Bundle(
        path=path,
        config=config,
        manifest=manifest,
        items=items,
        features=features,
        model=model,
        item_matrix=matrices["item_matrix"],
        popularity=matrices["popularity"].numpy(),
        metrics=json.loads((path / "metrics.json").read_text()),
        ranker=BundledRanker.of_bundle(path, manifest, config.ranker.enabled),
    )


def warn_other_code(path: Path, manifest: dict) -> None:
    """A warning when a two-stage bundle was written by another seqrec than this one: its
    ranker's trees split on feature values this code computes, and a change in their last bits
    (a reordered sum) moves its figures a little, so they are reproduced by the writing code."""
    written_by = manifest.get("code")
    if manifest.get("ranker") is None or written_by is None:
        return
    running = code_version()
    if written_by != running:
        warnings.warn(
            f"{path} was written by {written_by} and is read by {running}: its ranker's "
            "figures can differ a little from those it was written with; evaluate and serve "
            "it with the seqrec that wrote it to reproduce them",
            stacklevel=3,
        )


def tuned_tower(featurizer: ItemFeaturizer) -> Path | None:
    """The fine-tuned image tower the featurizer encodes images with, if any."""
    image = featurizer.config.image
    if not featurizer.config.use_image or image.finetune.weights is None:
        return None
    return tower_path(image.finetune.weights)


def bundle_featurizer(bundle: Bundle) -> ItemFeaturizer:
    """The bundle's fitted featurizer, to encode items it has never seen, checked against the
    manifest (unchanged since the bundle loaded); a tuned image tower is read from the bundle's
    own copy, so eval and serve encode new images with the weights the model was trained on."""
    files = bundle.manifest["files"]
    if "featurizer.pkl" not in files:
        raise DataError(f"{bundle.path} has no featurizer.pkl to encode new items")
    check_file(bundle.path, "featurizer.pkl", files["featurizer.pkl"])
    featurizer = ItemFeaturizer.load(bundle.path / "featurizer.pkl")
    if TOWER_FILE in files:
        check_file(bundle.path, TOWER_FILE, files[TOWER_FILE])
        finetune = dataclasses.replace(
            featurizer.config.image.finetune, weights=str(bundle.path / TOWER_FILE)
        )
        image = dataclasses.replace(featurizer.config.image, finetune=finetune)
        featurizer.config = dataclasses.replace(featurizer.config, image=image)
    return featurizer


def model_for_catalogue(
    bundle: Bundle, items: pd.DataFrame, cache_dir: Path | None = None
) -> tuple[SequenceRecommender, ItemFeatures, int]:
    """The bundle's model and item features re-indexed to another catalogue (``items``, row =
    item index).

    Items the bundle knows keep their content and learned ID vectors; items it has never seen
    are encoded from their text and image with the bundle's fitted featurizer, with a zero ID
    vector, so they are ranked from content alone. Returns the model, its item features (what
    a ranker's context reads) and the number of new items.
    """
    from seqrec.features.build import encode_new_items

    index = bundle.item_index()
    known = items["item_id"].astype(str).map(index)  # bundle row per item, NaN when new
    is_new = known.isna().to_numpy().copy()  # writable, for torch.from_numpy
    rows = known.fillna(-1).to_numpy(dtype=np.int64).copy()
    if not is_new.any() and np.array_equal(rows, np.arange(bundle.n_items)):
        return bundle.model, bundle.features, 0
    new_features = None
    if is_new.any():
        featurizer = bundle_featurizer(bundle)
        new_features = encode_new_items(items[is_new], featurizer, cache_dir=cache_dir).features
    combined = {}
    for name in FEATURE_NAMES:
        old = getattr(bundle.features, name)
        if old is None:
            continue
        tensor = old.new_zeros((len(items), *old.shape[1:]))
        tensor[torch.from_numpy(~is_new)] = old[torch.from_numpy(rows[~is_new])]
        if new_features is not None:
            tensor[torch.from_numpy(is_new)] = getattr(new_features, name).to(old.dtype)
        combined[name] = tensor
    features = features_from_tensors(combined, bundle.features.category_cardinalities)
    if bundle.features.text_terms is not None:  # rows of known items, then the new ones
        old_terms = bundle.features.text_terms
        parts, source = [old_terms], rows.copy()
        if new_features is not None and new_features.text_terms is not None:
            parts.append(new_features.text_terms)
            source[is_new] = old_terms.shape[0] + np.arange(int(is_new.sum()))
        features.text_terms = sp.vstack(parts).tocsr()[source]
    model = build_model(bundle.config.model, features, len(items))
    state = bundle.model.state_dict()
    for key, value in state.items():
        if key.endswith("id_embedding.weight"):
            weight = value.new_zeros((len(items), value.shape[1]))
            weight[torch.from_numpy(~is_new)] = value[torch.from_numpy(rows[~is_new])]
            state[key] = weight
    model.load_state_dict(state)
    model.eval()
    return model, features, int(is_new.sum())
