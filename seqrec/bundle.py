"""A trained model as a folder: everything needed to score, evaluate and serve it.

Files (each written atomically; ``bundle.json`` last, so a folder with it is complete):

- ``config.toml``: the resolved experiment config (`seqrec.config.ExperimentConfig`);
- ``items.parquet``: the item vocabulary (row = item index) with ``item_id`` and display columns;
- ``features.safetensors``: the item content tensors the item network was built from;
- ``model.safetensors``: the model weights;
- ``item_matrix.safetensors``: the precomputed [N, D] item vectors (``item_matrix``) and the
  training popularity counts (``popularity``, the serving fallback);
- ``featurizer.pkl``: the fitted feature encoders, to encode items the bundle has never seen;
- ``metrics.json``: validation metrics per epoch, the chosen epoch, and test metrics;
- ``bundle.json``: format version, sizes and the evaluation protocol.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from seqrec.config import ExperimentConfig, load_config, save_config
from seqrec.data.dataset import DataError, Dataset
from seqrec.features.build import ItemFeaturizer
from seqrec.features.item_features import ItemFeatures
from seqrec.models.recommender import SequenceRecommender, build_model
from seqrec.train import ModelScorer

BUNDLE_VERSION = 1
FEATURE_NAMES = ("text", "image", "image_mask", "categories", "numeric")


def _atomic(path: Path, write) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def save_bundle(
    out_dir: Path,
    config: ExperimentConfig,
    dataset: Dataset,
    features: ItemFeatures,
    model: SequenceRecommender,
    popularity: np.ndarray,
    metrics: dict,
    featurizer: ItemFeaturizer | None = None,
) -> Path:
    """Write a bundle into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    with torch.no_grad():
        item_matrix = model.item_matrix().float().cpu().contiguous()  # [N, D]
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    _atomic(out_dir / "config.toml", lambda tmp: save_config(config, tmp))
    _atomic(out_dir / "items.parquet", lambda tmp: display_items(dataset).to_parquet(tmp))
    _atomic(
        out_dir / "features.safetensors", lambda tmp: save_file(features_to_tensors(features), tmp)
    )
    _atomic(out_dir / "model.safetensors", lambda tmp: save_file(state, tmp))
    matrices = {"item_matrix": item_matrix, "popularity": torch.as_tensor(popularity).float()}
    _atomic(out_dir / "item_matrix.safetensors", lambda tmp: save_file(matrices, tmp))
    if featurizer is not None:
        _atomic(out_dir / "featurizer.pkl", featurizer.save)
    _atomic(out_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=2)))
    manifest = {
        "version": BUNDLE_VERSION,
        "dataset": dataset.name,
        "n_items": dataset.n_items,
        "dim": int(item_matrix.shape[1]),
        "max_len": config.model.max_len,
        "category_cardinalities": features.category_cardinalities,
        "split": config.split.method,
        "remove_seen": config.eval.remove_seen,
        "time_unit": dataset.time_unit,
    }
    _atomic(out_dir / "bundle.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    return out_dir


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

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self) -> dict[str, int]:
        return {item_id: idx for idx, item_id in enumerate(self.items["item_id"])}

    def scorer(self) -> ModelScorer:
        scorer = ModelScorer(self.model, self.config.model.max_len)
        scorer._item_matrix = self.item_matrix
        return scorer


def load_bundle(path: str | Path) -> Bundle:
    path = Path(path)
    if not (path / "bundle.json").is_file():
        raise DataError(f"{path} is not a complete seqrec bundle (no bundle.json)")
    manifest = json.loads((path / "bundle.json").read_text())
    if manifest.get("version") != BUNDLE_VERSION:
        raise DataError(f"{path}: bundle version {manifest.get('version')} is not supported")
    config = load_config(path / "config.toml")
    items = pd.read_parquet(path / "items.parquet")
    features = features_from_tensors(
        load_file(path / "features.safetensors"), manifest["category_cardinalities"]
    )
    model = build_model(config.model, features, len(items))
    model.load_state_dict(load_file(path / "model.safetensors"))
    model.eval()
    matrices = load_file(path / "item_matrix.safetensors")
    metrics_path = path / "metrics.json"
    return Bundle(
        path=path,
        config=config,
        manifest=manifest,
        items=items,
        features=features,
        model=model,
        item_matrix=matrices["item_matrix"],
        popularity=matrices["popularity"].numpy(),
        metrics=json.loads(metrics_path.read_text()) if metrics_path.exists() else {},
    )


def model_for_catalogue(
    bundle: Bundle, items: pd.DataFrame, cache_dir: Path | None = None
) -> tuple[SequenceRecommender, int]:
    """The bundle's model re-indexed to another catalogue (``items``, row = item index).

    Items the bundle knows keep their content and learned ID vectors; items it has never seen
    are encoded from their text and image with the bundle's fitted featurizer, with a zero ID
    vector, so they are ranked from content alone. Returns the model and the number of new items.
    """
    from seqrec.features.build import encode_new_items

    index = bundle.item_index()
    known = items["item_id"].astype(str).map(index)  # bundle row per item, NaN when new
    is_new = known.isna().to_numpy().copy()  # writable, for torch.from_numpy
    rows = known.fillna(-1).to_numpy(dtype=np.int64).copy()
    if not is_new.any() and np.array_equal(rows, np.arange(bundle.n_items)):
        return bundle.model, 0
    new_features = None
    if is_new.any():
        featurizer_path = bundle.path / "featurizer.pkl"
        if not featurizer_path.exists():
            raise DataError(f"{bundle.path} has no featurizer.pkl to encode new items")
        featurizer = ItemFeaturizer.load(featurizer_path)
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
    return model, int(is_new.sum())
