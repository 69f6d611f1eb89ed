"""Fit the ranker: training queries, their candidates and features labelled, LambdaRank.

    split.train ──> training queries (past baskets) ─┐
                                                      ├─> candidates, features, labels
    split.task("valid") ──> validation queries ──────┘         │
                                                                └─> LambdaRank (early stopping)

Every query reads the log of ``split.train`` only before its cutoff (`seqrec.ranker.events`);
the test split is never read.
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
from seqrec.ranker.context import RankerContext, build_context
from seqrec.ranker.examples import training_queries
from seqrec.ranker.model import LabelledPairs, Ranker, train_lambdarank
from seqrec.ranker.queries import Queries, queries_from_task
from seqrec.scoring import ModelScorer

log = logging.getLogger(__name__)

Progress = Callable[[str], None]  # told what the fit is doing, one line at a time
QuerySet = tuple[Queries, list[np.ndarray]]  # queries and their target items
STOPPING_SHARE = 0.2  # with a sequence model: validation users kept for early stopping


def ranker_context(
    dataset: Dataset,
    features: ItemFeatures,
    interactions: pd.DataFrame,
    model: ModelScorer | None = None,
) -> RankerContext:
    """The context sources and features read: ``dataset``'s catalogue with ``interactions`` as
    the log (`seqrec.ranker.context.build_context`)."""
    return build_context(dataset, features, interactions, model)


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
) -> Ranker:
    """Fit a LambdaRank ranker on ``split`` (its test part is never read).

    Training queries, by whether a sequence model is given:

    - without one: each shopper's last ``config.train_baskets`` baskets of ``split.train``
      that have an earlier basket (`training_queries`), history = the purchases before the
      basket; early stopping on the validation task (``split.task("valid")``).
    - with one: the model was trained on ``split.train``, targets of past baskets included, so
      its scores on those baskets would be scores of its own training targets (far better than
      on unseen baskets) and the ranker would learn to trust it too much. The validation task
      is then the only data the model has not been fitted on: its shoppers are split (seeded
      by ``config.lightgbm.seed``) into a fitting part (80%) and an early-stopping part (20%).

    Every query reads the log of ``split.train`` before its cutoff. progress: called with a
    line saying what the fit does (candidates, features, boosting); the lines are also logged.
    ``Ranker.info``: queries, pairs, positives and candidate recall of the train and valid
    queries, best iteration, valid ndcg@12, feature importance (gain) and seconds per phase.
    """
    say = _reporter(progress)
    clock = time.perf_counter()
    say(f"ranker: context over {len(split.train):,} training events")
    context = ranker_context(dataset, features, split.train, model)
    seconds = {"context": time.perf_counter() - clock}
    fit_set, stop_set, source = training_sets(split, config, model is not None)
    pairs: dict[str, LabelledPairs] = {}
    for part, (queries, targets) in (("train", fit_set), ("valid", stop_set)):
        say(f"ranker: candidates and features of {len(queries):,} {part} queries")
        pairs[part] = label_pairs(queries, targets, context, config)
        _say_pairs(say, part, pairs[part].info)
    say(f"ranker: boosting (at most {config.lightgbm.n_estimators} rounds)")
    clock = time.perf_counter()
    ranker = train_lambdarank(pairs["train"], pairs["valid"], config)
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
    """(fitting queries, early-stopping queries, where the fitting queries come from)."""
    task = split.task("valid")
    valid = (queries_from_task(task), task.targets())
    if not has_model:
        return training_queries(split.train, config.train_baskets), valid, "past baskets"
    rng = np.random.default_rng(config.lightgbm.seed)
    order = rng.permutation(len(task))
    n_stop = int(round(STOPPING_SHARE * len(task)))
    stop_rows, fit_rows = np.sort(order[:n_stop]), np.sort(order[n_stop:])
    return _subset(valid, fit_rows), _subset(valid, stop_rows), "validation shoppers"


def _subset(query_set: QuerySet, rows: np.ndarray) -> QuerySet:
    queries, targets = query_set
    return queries.subset(rows), [targets[row] for row in rows]


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
