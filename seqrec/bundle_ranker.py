"""The files a two-stage bundle adds (`seqrec.bundle`): the ranker and what its context reads.

- ``ranker.txt`` and ``ranker.json``: the fitted `seqrec.ranker.model.Ranker` (and
  ``ranker_image_basis.safetensors``, its image projection, when ``ranker.image_dim`` is set);
- ``ranker_items.parquet``: the item columns its context reads (text, product group, price),
  row = item index, their roles under ``ranker`` in bundle.json;
- ``events.parquet``: ``item_id``, ``timestamp``, ``user_id``: the log its features read when
  the bundle is served (the test stage's fit table, train + valid, the log the test figures
  were computed over).

The served context is rebuilt from these with `seqrec.ranker.fit.ranker_context`, the same
function training and ``seqrec eval`` build theirs with, so that a served ranking is the one
``seqrec eval`` ranks for the same history, times and log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.data.dataset import DataError, Dataset, ItemSchema, LoadReport
from seqrec.features.item_features import ItemFeatures
from seqrec.ranker.config import RankerConfig
from seqrec.ranker.fit import ranker_context
from seqrec.ranker.model import BASIS_FILE, META_FILE, MODEL_FILE, Ranker
from seqrec.ranker.scorer import RankerScorer
from seqrec.scoring import ModelScorer

RANKER_ITEMS, RANKER_LOG = "ranker_items.parquet", "events.parquet"
RANKER_FILES = (MODEL_FILE, META_FILE, RANKER_ITEMS, RANKER_LOG)
RANKER_OPTIONAL = (BASIS_FILE,)  # written when the ranker projects its image vectors


def ranker_reads_model(config: RankerConfig) -> bool:
    """Whether a ranker of ``config`` reads the sequence model (its candidates, score features
    and fused item vectors), so that its context holds the model when it is fitted, evaluated
    and served: unless trained ``without = ["sequence"]``."""
    return "sequence" not in (config.without or [])


def ranker_scorer(
    ranker: Ranker,
    dataset: Dataset,
    features: ItemFeatures,
    log: pd.DataFrame,
    model: ModelScorer,
) -> RankerScorer:
    """``ranker`` scoring ``dataset``'s catalogue with ``log`` (a fit table) as the events its
    features read, and ``model`` as its sequence model when it reads one
    (`ranker_reads_model`): how training, ``seqrec eval`` and the service all build it."""
    reads = ranker_reads_model(ranker.config)
    context = ranker_context(dataset, features, log, model if reads else None, ranker.image_basis)
    return RankerScorer(ranker, context)


@dataclass
class RankerPart:
    """What a two-stage bundle is written with besides the model: the fitted ranker and the
    log its features read when serving (a fit table: user_id, item_idx, timestamp)."""

    ranker: Ranker
    log: pd.DataFrame

    def writers(self, dataset: Dataset) -> dict:
        """File name -> function writing it at a path, for the parquet files (the ranker's own
        files are written by `Ranker.save`)."""
        log = log_table(self.log, dataset.item_ids())
        return {
            RANKER_ITEMS: lambda path: ranker_items(dataset).to_parquet(path),
            RANKER_LOG: lambda path: log.to_parquet(path, index=False),
        }


def ranker_items(dataset: Dataset) -> pd.DataFrame:
    """The item columns a ranker's context reads (`seqrec.ranker.context.build_context`): text,
    product group and price, row = item index."""
    schema = dataset.schema
    named = [*schema.text_columns, schema.group_column, schema.price_column]
    columns = list(dict.fromkeys(c for c in named if c is not None and c in dataset.items))
    return dataset.items[columns].reset_index(drop=True)


def ranker_schema(dataset: Dataset) -> dict:
    """The roles of the `ranker_items` columns (`ItemSchema` fields), for bundle.json."""
    schema = dataset.schema
    return {
        "text_columns": list(schema.text_columns),
        "group_column": schema.group_column,
        "price_column": schema.price_column,
    }


def log_table(log: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """``events.parquet``: the log's rows, in order, with item ids instead of item indices."""
    return pd.DataFrame(
        {
            "item_id": item_ids[log["item_idx"].to_numpy()],
            "timestamp": log["timestamp"].to_numpy(dtype=np.int64),
            "user_id": log["user_id"].to_numpy(),
        }
    )


@dataclass
class BundledRanker:
    """A two-stage bundle's ranker, with the item columns and the log its context reads."""

    ranker: Ranker
    items: pd.DataFrame  # ranker_items.parquet, row = item index
    schema: ItemSchema  # the roles of its columns
    log: pd.DataFrame  # events.parquet: item_id, timestamp, user_id

    @classmethod
    def of_bundle(cls, path: Path, manifest: dict, enabled: bool) -> BundledRanker | None:
        """The ranker of the bundle at ``path`` whose files were checked against its
        ``manifest`` (bundle.json); None for a bundle of the model alone. ``enabled``: its
        config's ``ranker.enabled`` (a DataError when the ranker files are not there)."""
        if MODEL_FILE not in manifest["files"]:
            if enabled:
                raise DataError(
                    f"{path / 'config.toml'} has ranker.enabled = true but "
                    f"{path / 'bundle.json'} lists no {MODEL_FILE}: retrain with the same --out"
                )
            return None
        roles = manifest.get("ranker", {})
        return cls(
            ranker=Ranker.load(path),
            items=pd.read_parquet(path / RANKER_ITEMS),
            schema=ItemSchema(
                text_columns=list(roles.get("text_columns", [])),
                group_column=roles.get("group_column"),
                price_column=roles.get("price_column"),
            ),
            log=pd.read_parquet(path / RANKER_LOG),
        )

    def interactions(self, item_ids: pd.Series) -> pd.DataFrame:
        """The log as a fit table (user_id, item_idx, timestamp) of the catalogue ``item_ids``
        (row = item index)."""
        index = pd.Series(np.arange(len(item_ids)), index=item_ids.to_numpy())
        return pd.DataFrame(
            {
                "user_id": self.log["user_id"].to_numpy(),
                "item_idx": index.loc[self.log["item_id"].to_numpy()].to_numpy(dtype=np.int64),
                "timestamp": self.log["timestamp"].to_numpy(dtype=np.int64),
            }
        )

    def scorer(
        self,
        item_ids: pd.Series,
        features: ItemFeatures,
        model: ModelScorer,
        time_unit: str,
    ) -> RankerScorer:
        """The ranker over the bundle's log, reading ``features`` (the bundle's) and ``model``
        (the bundle's model, or a faster runtime of it)."""
        interactions = self.interactions(item_ids)
        dataset = Dataset(
            name="bundle",
            items=self.items,
            interactions=interactions,
            schema=self.schema,
            report=LoadReport(format="bundle"),
            time_unit=time_unit,
        )
        return ranker_scorer(self.ranker, dataset, features, interactions, model)
