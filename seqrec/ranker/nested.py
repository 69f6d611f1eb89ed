"""The nested sequence model: the ranker's training queries scored by a model that never saw them.

A sequence model trained on ``split.train`` has fitted every past basket, so its scores of their
items are in-sample, far better than on an unseen basket. The ranker's training queries with a
sequence model are each shopper's last ``train_baskets`` baskets of ``split.train``
(`seqrec.ranker.fit`), and they are scored by `past_model`: the same model (config, seed,
epochs) trained on ``split.train`` without those baskets
(`seqrec.ranker.examples.without_last_baskets`). It costs one more training run, logged with
its time.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import torch

from seqrec.config import ExperimentConfig
from seqrec.data.split import Split
from seqrec.features.item_features import ItemFeatures
from seqrec.models.recommender import SequenceRecommender, build_model
from seqrec.ranker.examples import without_last_baskets
from seqrec.train import fit

log = logging.getLogger(__name__)


def past_split(split: Split, n_baskets: int) -> Split:
    """``split`` with each shopper's last ``n_baskets`` train baskets taken out of ``train``
    (and no validation part: the nested model trains a fixed number of epochs)."""
    train = without_last_baskets(split.train, n_baskets)
    return dataclasses.replace(split, train=train, valid=split.valid.iloc[:0])


def past_model(
    config: ExperimentConfig,
    split: Split,
    features: ItemFeatures,
    n_items: int,
    epochs: int,
) -> SequenceRecommender:
    """The sequence model of ``config`` (same seed) trained for ``epochs`` epochs on
    `past_split` (``split.train`` without each shopper's last ``config.ranker.train_baskets``
    baskets), on the CPU in eval mode. Its training time is logged."""
    clock = time.perf_counter()
    nested = past_split(split, config.ranker.train_baskets)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, features, n_items)
    result = fit(
        model,
        nested,
        config.train,
        max_len=config.model.max_len,
        validate=None,
        main_metric=config.eval.main_metric,
        fixed_epochs=epochs,
    )
    assert result.state_dict is not None  # a fixed-epoch fit keeps its last weights
    model.load_state_dict(result.state_dict)
    log.info(
        "ranker: nested sequence model (%d epochs on %s events) trained in %.1f s",
        epochs,
        f"{len(nested.train):,}",
        time.perf_counter() - clock,
    )
    return model.cpu().eval()
