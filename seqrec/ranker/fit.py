"""Fit the ranker: training queries, their candidates and features labelled, LambdaRank.

    split.train ──> training queries (past baskets) ─┐
                                                      ├─> candidates, features, labels
    split.task("valid") ──> validation queries ──────┘         │
                                                                └─> LambdaRank (early stopping)

Every query reads the log of ``split.train`` only before its cutoff (`seqrec.ranker.events`);
the test split is never read. With a sequence model, the training queries are scored by a
nested copy of it that never saw their baskets (`fit_ranker`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from seqrec.data.dataset import Dataset
from seqrec.data.split import Split
from seqrec.features.item_features import ItemFeatures
from seqrec.ranker import candidates
from seqrec.ranker import features as ranker_features
from seqrec.ranker.config import RankerConfig
from seqrec.ranker.context import RankerContext, build_context, with_model
from seqrec.ranker.examples import training_queries
from seqrec.ranker.model import LabelledPairs, Ranker, train_lambdarank
from seqrec.ranker.projection import fit_image_basis
from seqrec.ranker.queries import Queries, queries_from_task
from seqrec.scoring import ModelScorer

log = logging.getLogger(__name__)

Progress = Callable[[str], None]  # told what the fit is doing, one line at a time
QuerySet = tuple[Queries, list[np.ndarray]]  # queries and their target items


def ranker_context(
    dataset: Dataset,
    features: ItemFeatures,
    interactions: pd.DataFrame,
    model: ModelScorer | None = None,
    image_basis: np.ndarray | None = None,
) -> RankerContext:
    """The context sources and features read: ``dataset``'s catalogue with ``interactions`` as
    the log, image vectors on ``image_basis`` (a fitted ranker's `Ranker.image_basis`) when
    given (`seqrec.ranker.context.build_context`)."""
    return build_context(dataset, features, interactions, model, image_basis)


def image_basis(features: ItemFeatures, config: RankerConfig) -> np.ndarray | None:
    """The image projection a ranker of ``config`` is fitted with (`RankerConfig.image_dim`),
    over the whole catalogue's image vectors; None when it reads them as encoded or not at all."""
    if features.image is None or "image" in (config.without or []):
        return None
    return fit_image_basis(features.image.numpy(), config.image_dim)


def label_pairs(
    queries: Queries, targets: list[np.ndarray], context: RankerContext, config: RankerConfig
) -> LabelledPairs:
    """The queries' candidates, their features and labels (1 = a target of the query).

    Queries none of whose targets is a candidate are left out (LambdaRank learns nothing from
    a group without a positive) but counted: ``info`` holds the queries, the ones kept, pairs,
    positives, targets, candidate recall (targets found among the candidates) and seconds.
    """
    started = time.perf_counter()
    found = candidates.generate(queries, context, config)
    if np.any(np.diff(found.rows) < 0):
        raise ValueError("candidates.generate must return pairs grouped by query row")
    generated = time.perf_counter()
    names, matrix = ranker_features.feature_matrix(queries, found, context, config)  # [P, F]
    featured = time.perf_counter()
    labels = target_labels(found.rows, found.items, targets, context.n_items)  # [P]
    n_queries = len(queries)
    positives = np.bincount(found.rows, weights=labels, minlength=n_queries)  # [Q]
    sizes = np.bincount(found.rows, minlength=n_queries)  # [Q]
    useful = positives > 0  # [Q]
    keep = useful[found.rows]  # [P]
    n_targets = int(sum(len(items) for items in targets))
    info = {
        "queries": n_queries,
        "queries_kept": int(useful.sum()),
        "pairs": int(keep.sum()),
        "candidates_per_query": len(found) / max(n_queries, 1),
        "positives": int(labels.sum()),
        "targets": n_targets,
        "candidate_recall": float(labels.sum() / n_targets) if n_targets else float("nan"),
        "seconds_candidates": generated - started,
        "seconds_features": featured - generated,
    }
    return LabelledPairs(
        features=np.ascontiguousarray(matrix[keep], dtype=np.float32),
        labels=labels[keep].astype(np.int32),
        groups=sizes[useful].astype(np.int64),
        feature_names=list(names),
        info=info,
    )


def target_labels(
    rows: np.ndarray, items: np.ndarray, targets: list[np.ndarray], n_items: int
) -> np.ndarray:
    """[P] bool: whether ``items[p]`` is a target of query ``rows[p]``."""
    counts = [len(items_of) for items_of in targets]
    target_rows = np.repeat(np.arange(len(targets), dtype=np.int64), counts)  # [T]
    flat = np.concatenate(targets).astype(np.int64) if targets else np.zeros(0, np.int64)
    pair_keys = np.asarray(rows, np.int64) * n_items + np.asarray(items, np.int64)  # [P]
    return np.isin(pair_keys, target_rows * n_items + flat)


def fit_ranker(
    dataset: Dataset,
    split: Split,
    features: ItemFeatures,
    config: RankerConfig,
    model: ModelScorer | None = None,
    progress: Progress | None = None,
    past_model: ModelScorer | None = None,
) -> Ranker:
    """Fit a LambdaRank ranker on ``split`` (its test part is never read).

    Training queries come from past baskets of ``split.train`` (`training_queries`: history =
    the purchases before the basket); early stopping watches the validation task
    (``split.task("valid")``, scored with ``model``). By whether a sequence model is given:

    - without one: each shopper's last ``config.train_baskets`` baskets that have an earlier
      basket.
    - with one (``model``, trained on all of ``split.train``): ``model`` has seen every past
      basket, so its scores of their targets are in-sample (far better than on unseen
      baskets) and a ranker fitted on them would trust it too much. The same past baskets are
      then scored by ``past_model``: the same model trained on ``split.train`` without each
      shopper's last ``config.train_baskets`` baskets
      (`seqrec.ranker.examples.without_last_baskets`, `seqrec.ranker.nested`), which never saw
      their targets. The validation baskets serve early stopping only (scored by ``model``),
      so the valid figure is held out.

    Every query reads the log of ``split.train`` before its cutoff. progress: called with a
    line saying what the fit does (candidates, features, boosting); the lines are also logged.
    ``Ranker.info``: queries, pairs, positives and candidate recall of the train and valid
    queries, best iteration, valid ndcg@12, feature importance (gain) and seconds per phase.
    """
    if model is not None and past_model is None:
        raise ValueError("a ranker reading a sequence model needs its nested copy (past_model)")
    say = _reporter(progress)
    clock = time.perf_counter()
    say(f"ranker: context over {len(split.train):,} training events")
    basis = image_basis(features, config)  # None: image vectors as encoded
    context = ranker_context(dataset, features, split.train, model, basis)
    fit_context = context if model is None else with_model(context, past_model)
    seconds = {"context": time.perf_counter() - clock}
    fit_set, stop_set, source = training_sets(split, config, model is not None)
    pairs: dict[str, LabelledPairs] = {}
    parts = (("train", fit_set, fit_context), ("valid", stop_set, context))
    for part, (queries, targets), part_context in parts:
        say(f"ranker: candidates and features of {len(queries):,} {part} queries")
        pairs[part] = label_pairs(queries, targets, part_context, config)
        _say_pairs(say, part, pairs[part].info)
    say(f"ranker: boosting (at most {config.lightgbm.n_estimators} rounds)")
    clock = time.perf_counter()
    ranker = train_lambdarank(pairs["train"], pairs["valid"], config)
    ranker.image_basis = basis
    seconds["boosting"] = time.perf_counter() - clock
    for part, built in pairs.items():
        seconds[f"{part}_candidates"] = built.info.pop("seconds_candidates")
        seconds[f"{part}_features"] = built.info.pop("seconds_features")
        ranker.info[part] = built.info
    ranker.info["training_queries"] = source
    ranker.info["seconds"] = seconds
    valid_ndcg = ranker.info.get("valid_ndcg@12", float("nan"))
    say(f"ranker: best iteration {ranker.best_iteration}, valid ndcg@12 {valid_ndcg:.4f}")
    return ranker


def training_sets(
    split: Split, config: RankerConfig, has_model: bool
) -> tuple[QuerySet, QuerySet, str]:
    """(fitting queries, early-stopping queries, where the fitting queries come from): each
    shopper's last ``config.train_baskets`` baskets of ``split.train`` that have an earlier
    basket (with a sequence model: scored by its nested copy), and the validation task."""
    task = split.task("valid")
    valid = (queries_from_task(task), task.targets())
    source = "past baskets, nested model" if has_model else "past baskets"
    return training_queries(split.train, config.train_baskets), valid, source


def _reporter(progress: Progress | None) -> Progress:
    def say(line: str) -> None:
        log.info(line)
        if progress is not None:
            progress(line)

    return say


def _say_pairs(say: Progress, part: str, info: dict[str, Any]) -> None:
    say(
        f"ranker: {part}: {info['queries_kept']:,} of {info['queries']:,} queries with a "
        f"target among their candidates, {info['pairs']:,} pairs, candidate recall "
        f"{info['candidate_recall']:.3f}"
    )
