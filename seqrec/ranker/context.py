"""What candidate sources and features read about the catalogue and the shop's log.

A `RankerContext` is built once per evaluated period (the fit table of a split stage, another
period's data under ``seqrec eval --data``, or a bundle's log in the service) and shared by every
query: the events (read as of each query's cutoff), each item's product group, categories and
price, and its content vectors per modality, rows L2-normalised:

- ``tfidf``: TF-IDF term weights of the item texts (sparse; `seqrec.features.text.tfidf_terms`)
- ``text``: the text embedding the model reads (`ItemFeatures.text`)
- ``image``: the image embedding (`ItemFeatures.image`; zero rows where no image)
- ``fused``: the sequence model's item vectors (text, image, categories fused), when a model is
  given
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp

from seqrec.baselines import normalise_rows
from seqrec.data.dataset import Dataset
from seqrec.features.item_features import ItemFeatures
from seqrec.features.text import tfidf_terms
from seqrec.ranker.events import Events, day_length
from seqrec.scoring import ModelScorer

Vectors: TypeAlias = np.ndarray | sp.csr_matrix  # [N, D] rows L2-normalised (zero rows: no content)


@dataclass
class RankerContext:
    n_items: int
    events: Events
    groups: np.ndarray | None = None  # [N] int64 product group per item, -1 where none
    categories: np.ndarray | None = None  # [N, C] int64 category codes, 0 = unknown
    prices: np.ndarray | None = None  # [N] float32 catalogue price, NaN where unknown
    vectors: dict[str, Vectors] = field(default_factory=dict)  # modality -> [N, D]
    model: ModelScorer | None = None  # the sequence model, for its source and features
    # memo of expensive per-period structures (co-occurrence per refit period...), by key
    cache: dict[object, object] = field(default_factory=dict)


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
) -> RankerContext:
    """The context of ``dataset``'s catalogue with ``interactions`` as the readable log."""
    items, schema = dataset.items, dataset.schema
    vectors: dict[str, Vectors] = {}
    if schema.text_columns:
        vectors["tfidf"] = normalise_rows(tfidf_terms(items, schema.text_columns))
    if features.text is not None:
        vectors["text"] = normalise_rows(features.text.numpy())
    if features.image is not None:
        vectors["image"] = normalise_rows(features.image.numpy())
    if model is not None:
        vectors["fused"] = normalise_rows(model.item_matrix().float().cpu().numpy())
    return RankerContext(
        n_items=dataset.n_items,
        events=Events(interactions, dataset.n_items, day_length(dataset.time_unit)),
        groups=group_codes(items, schema.group_column),
        categories=None if features.categories is None else features.categories.numpy(),
        prices=item_prices(items, schema.price_column),
        vectors=vectors,
        model=model,
    )
