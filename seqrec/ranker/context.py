"""What candidate sources and features read about the catalogue and the shop's log.

A `RankerContext` is built once per evaluated period (the fit table of a split stage, another
period's data under ``seqrec eval --data``, or a bundle's log in the service) and shared by every
query: the events (read as of each query's cutoff), each item's product group, categories and
price, and its content vectors per modality, rows L2-normalised:

- ``tfidf``: TF-IDF term weights of the item texts (sparse; `seqrec.features.text.tfidf_terms`)
- ``text``: the text embedding the model reads (`ItemFeatures.text`)
- ``image``: the image embedding (`ItemFeatures.image`; zero rows where no image), projected on
  the ranker's basis when it has one (`seqrec.ranker.projection`; rows then near unit length)
- ``fused``: the sequence model's item vectors (text, image, categories fused), when a model is
  given
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp

from seqrec.baselines import normalise_rows
from seqrec.data.dataset import Dataset
from seqrec.features.item_features import ItemFeatures
from seqrec.features.text import tfidf_terms
from seqrec.ranker.events import Events, day_length
from seqrec.ranker.projection import project_rows
from seqrec.scoring import ModelScorer

Vectors: TypeAlias = np.ndarray | sp.csr_matrix  # [N, D] rows L2-normalised (zero rows: no content)


@dataclass
class PeriodCache:
    """Structures built per period or cutoff of the log (co-occurrence before each refit
    period's start, a cutoff's new items or best sellers), keyed by (kind, ...): of each kind
    the least recently used is dropped beyond ``size`` entries. A long-running service, whose
    cutoffs move on with time, keeps a bounded number (`RankerConfig.cached_periods`), and the
    many cutoffs of an evaluation batch do not push out the co-occurrence fits."""

    kinds: dict[object, OrderedDict[tuple, Any]] = field(default_factory=dict)

    def get(self, key: tuple, build: Callable[[], Any], size: int) -> Any:
        """The entry of ``key``, built with ``build()`` when absent; at most ``size`` of its
        kind (``key[0]``) kept."""
        entries = self.kinds.setdefault(key[0], OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        value = build()
        entries[key] = value
        while len(entries) > max(size, 1):
            entries.popitem(last=False)
        return value

    @property
    def entries(self) -> list[tuple]:
        """Every key kept, kind by kind, least recently used first."""
        return [key for entries in self.kinds.values() for key in entries]

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.kinds.values())


@dataclass
class RankerContext:
    n_items: int
    events: Events
    groups: np.ndarray | None = None  # [N] int64 product group per item, -1 where none
    categories: np.ndarray | None = None  # [N, C] int64 category codes, 0 = unknown
    prices: np.ndarray | None = None  # [N] float32 catalogue price, NaN where unknown
    vectors: dict[str, Vectors] = field(default_factory=dict)  # modality -> [N, D]
    model: ModelScorer | None = None  # the sequence model, for its source and features
    # memo of per-catalogue structures (content neighbour graphs, group members), by key
    cache: dict[object, object] = field(default_factory=dict)
    periods: PeriodCache = field(default_factory=PeriodCache)  # per-period, bounded (LRU)


def has_vector(context: RankerContext, modality: str) -> np.ndarray:
    """[N] bool: the items with a non-zero vector of ``modality``, computed once per catalogue
    (kept in ``context.cache``)."""
    key = ("has_vector", modality)
    if key not in context.cache:
        vectors = context.vectors[modality]
        if sp.issparse(vectors):
            context.cache[key] = sp.csr_matrix(vectors).getnnz(axis=1) > 0
        else:
            context.cache[key] = np.asarray(vectors != 0).any(axis=1)
    return context.cache[key]  # type: ignore[return-value]


def group_codes(items: pd.DataFrame, column: str | None) -> np.ndarray | None:
    """[N] int64 code of each item's product group (-1 where missing); None without a column."""
    if column is None or column not in items:
        return None
    return pd.factorize(items[column])[0].astype(np.int64)


def item_prices(items: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if column is None or column not in items:
        return None
    return pd.to_numeric(items[column], errors="coerce").to_numpy(dtype=np.float32)


def build_context(
    dataset: Dataset,
    features: ItemFeatures,
    interactions: pd.DataFrame,
    model: ModelScorer | None = None,
    image_basis: np.ndarray | None = None,
) -> RankerContext:
    """The context of ``dataset``'s catalogue with ``interactions`` as the readable log; image
    vectors on ``image_basis`` [k, D] when given (`seqrec.ranker.projection`)."""
    items, schema = dataset.items, dataset.schema
    vectors: dict[str, Vectors] = {}
    if schema.text_columns:
        vectors["tfidf"] = normalise_rows(tfidf_terms(items, schema.text_columns))
    if features.text is not None:
        vectors["text"] = normalise_rows(features.text.numpy())
    if features.image is not None:
        unit = np.asarray(normalise_rows(features.image.numpy()))  # [N, D]
        vectors["image"] = unit if image_basis is None else project_rows(unit, image_basis)
    if model is not None:
        vectors["fused"] = model_vectors(model)
    return RankerContext(
        n_items=dataset.n_items,
        events=Events(interactions, dataset.n_items, day_length(dataset.time_unit)),
        groups=group_codes(items, schema.group_column),
        categories=None if features.categories is None else features.categories.numpy(),
        prices=item_prices(items, schema.price_column),
        vectors=vectors,
        model=model,
    )


def model_vectors(model: ModelScorer) -> np.ndarray:
    """[N, D] the sequence model's fused item vectors, rows L2-normalised."""
    return normalise_rows(model.item_matrix().float().cpu().numpy())


def with_model(context: RankerContext, model: ModelScorer | None) -> RankerContext:
    """``context`` reading ``model`` (and its fused vectors) in place of its own; the other
    vectors, the per-period structures (which read the log only) and what the catalogue cache
    holds of other modalities are shared (what it holds of the fused vectors is not)."""
    vectors = {name: v for name, v in context.vectors.items() if name != "fused"}
    if model is not None:
        vectors["fused"] = model_vectors(model)
    cache = {
        key: value
        for key, value in context.cache.items()
        if not (isinstance(key, tuple) and "fused" in key)
    }
    return dataclasses.replace(context, vectors=vectors, model=model, cache=cache)
