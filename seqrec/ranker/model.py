"""LightGBM LambdaRank over (query, candidate) feature rows: fit with early stopping, predict,
save and load.

A query (one shopper at one cutoff) is one LambdaRank group; its candidates are the group's
rows, labelled 1 when the candidate is one of the query's targets. The model is saved as
LightGBM's text model (``ranker.txt``, only the trees up to the best iteration) beside
``ranker.json`` (the `RankerConfig`, feature names, best iteration and training summary).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from seqrec.constraints import build_section
from seqrec.data.dataset import DataError
from seqrec.ranker.compiled import CompiledTrees, compile_trees
from seqrec.ranker.config import RankerConfig

MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"
BASIS_FILE = "ranker_image_basis.safetensors"  # the image projection (ranker.image_dim > 0)
EVAL_AT = 12  # the ndcg cutoff early stopping watches (H&M's MAP@12 protocol)


@dataclass
class LabelledPairs:
    """Training rows of the ranker: one per (query, candidate), grouped by query."""

    features: np.ndarray  # [P, F] float32, NaN = missing
    labels: np.ndarray  # [P] int32: 1 when the candidate is a target of its query
    groups: np.ndarray  # [Q] int64 candidates per query, in query (and row) order
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # counts and timings of how it was built

    def __len__(self) -> int:
        return len(self.labels)

    def dataset(self, reference: lightgbm.Dataset | None = None) -> lightgbm.Dataset:
        return lightgbm.Dataset(
            self.features,
            label=self.labels,
            group=self.groups,
            feature_name=list(self.feature_names),
            reference=reference,
            free_raw_data=False,
        )


@dataclass
class Ranker:
    config: RankerConfig
    booster: lightgbm.Booster
    feature_names: list[str]
    best_iteration: int
    info: dict[str, Any] = field(default_factory=dict)
    # [image_dim, D] float32: the image vectors' projection its features were computed with
    # (`seqrec.ranker.projection`); None when it reads them as encoded
    image_basis: np.ndarray | None = None
    # the trees compiled to native code (`compile`), which predict walks when set
    trees: CompiledTrees | None = field(default=None, repr=False, compare=False)

    def compile(self) -> str:
        """Compile the trees for `predict` (`seqrec.ranker.compiled`; once, kept while this
        ranker lives): "" when they are compiled, else why not (LightGBM walks them)."""
        if self.trees is not None:
            return ""
        self.trees, reason = compile_trees(self.booster, self.best_iteration)
        return reason

    def predict(self, features: np.ndarray, threads: int = 0) -> np.ndarray:
        """[P] float64 ranking scores of the feature rows [P, F] (higher = better).
        threads: LightGBM's threads for this call (0 = its default; 1 is fastest for the few
        rows of one query)."""
        if features.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        if self.trees is not None:  # the same scores, bit for bit
            return self.trees(features)
        params: dict[str, Any] = {"num_threads": threads} if threads else {}
        scores = self.booster.predict(features, num_iteration=self.best_iteration, **params)
        return np.asarray(scores, dtype=np.float64)

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``ranker.txt`` and ``ranker.json`` into ``directory``; their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model_path, meta_path = directory / MODEL_FILE, directory / META_FILE
        self.booster.save_model(model_path, num_iteration=self.best_iteration)
        meta = {
            "config": _without_none(dataclasses.asdict(self.config)),
            "feature_names": self.feature_names,
            "best_iteration": self.best_iteration,
            "info": self.info,
        }
        meta_path.write_text(json.dumps(_plain(meta), indent=2))
        if self.image_basis is None:
            return [model_path, meta_path]
        save_file({"basis": np.ascontiguousarray(self.image_basis)}, directory / BASIS_FILE)
        return [model_path, meta_path, directory / BASIS_FILE]

    @classmethod
    def load(cls, directory: str | Path) -> Ranker:
        """The ranker saved in ``directory``; DataError naming the file that is missing or
        unreadable."""
        directory = Path(directory)
        model_path, meta_path = directory / MODEL_FILE, directory / META_FILE
        for path in (model_path, meta_path):
            if not path.is_file():
                raise DataError(f"ranker file {path} not found")
        try:
            meta = json.loads(meta_path.read_text())
            config = build_section(RankerConfig, meta["config"], "ranker")
            names = [str(name) for name in meta["feature_names"]]
            best_iteration, info = int(meta["best_iteration"]), dict(meta.get("info", {}))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"cannot read ranker file {meta_path}: {error}") from None
        try:
            booster = lightgbm.Booster(model_file=str(model_path))
        except (OSError, lightgbm.basic.LightGBMError) as error:
            raise DataError(f"cannot read ranker file {model_path}: {error}") from None
        if booster.feature_name() != names:
            raise DataError(
                f"ranker file {model_path} has features {booster.feature_name()}, but "
                f"{meta_path} names {names}: the two files are from different rankers"
            )
        dim = config.image_dim
        basis = _load_basis(directory / BASIS_FILE, dim) if dim else None
        return cls(config, booster, names, best_iteration, info, basis)


def _load_basis(path: Path, dim: int) -> np.ndarray:
    """The image projection a ranker with ``image_dim`` was saved with; DataError naming the
    file when it is missing or unreadable."""
    if not path.is_file():
        raise DataError(f"ranker file {path} not found (the ranker sets ranker.image_dim)")
    try:
        basis = load_file(path)["basis"]
    except (OSError, KeyError, SafetensorError) as error:
        raise DataError(f"cannot read ranker file {path}: {error}") from None
    if basis.ndim != 2 or basis.shape[0] != dim:
        raise DataError(
            f"ranker file {path} holds a {basis.shape} projection, not {dim} rows as the "
            "ranker's image_dim says: the files are from different rankers"
        )
    return basis


def lightgbm_params(config: RankerConfig) -> dict[str, Any]:
    """LightGBM's parameters for the LambdaRank fit of ``config.lightgbm`` (deterministic)."""
    gbm = config.lightgbm
    params: dict[str, Any] = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [EVAL_AT],
        "num_leaves": gbm.num_leaves,
        "learning_rate": gbm.learning_rate,
        "min_data_in_leaf": gbm.min_data_in_leaf,
        "feature_fraction": gbm.feature_fraction,
        "bagging_fraction": gbm.bagging_fraction,
        "bagging_freq": 1 if gbm.bagging_fraction < 1.0 else 0,
        "lambda_l2": gbm.lambda_l2,
        "seed": gbm.seed,
        "deterministic": True,
        "force_row_wise": True,  # with deterministic: the same trees on every run
        "verbosity": -1,
    }
    if gbm.threads:
        params["num_threads"] = gbm.threads
    return params


def train_lambdarank(
    train: LabelledPairs, valid: LabelledPairs | None, config: RankerConfig, log_every: int = 0
) -> Ranker:
    """Boost at most ``config.lightgbm.n_estimators`` rounds, stopping when ndcg@12 on
    ``valid`` has not improved for ``early_stopping_rounds``; without validation queries (None
    or no group) every round is kept. log_every: print the metric every that many rounds."""
    if not len(train.groups):
        raise DataError(
            "no training query has a target among its candidates: the ranker has nothing to "
            "learn from (more candidates per source or more training baskets may help)"
        )
    params = lightgbm_params(config)
    train_set = train.dataset()
    has_valid = valid is not None and len(valid.groups) > 0
    valid_sets: list[lightgbm.Dataset] = []
    callbacks: list[Callable[..., Any]] = []
    history: dict[str, dict[str, list[float]]] = {}  # valid ndcg@12 after each round
    if has_valid:
        assert valid is not None
        if valid.feature_names != train.feature_names:
            raise ValueError("train and valid pairs have different features")
        valid_sets = [valid.dataset(reference=train_set)]
        callbacks.append(
            lightgbm.early_stopping(config.lightgbm.early_stopping_rounds, verbose=False)
        )
        callbacks.append(lightgbm.record_evaluation(history))
    if log_every:
        callbacks.append(lightgbm.log_evaluation(log_every))
    booster = lightgbm.train(
        params,
        train_set,
        num_boost_round=config.lightgbm.n_estimators,
        valid_sets=valid_sets,
        valid_names=["valid"] if has_valid else None,
        callbacks=callbacks,
    )
    best = booster.best_iteration if has_valid and booster.best_iteration > 0 else None
    best_iteration = best or booster.current_iteration()
    gains = booster.feature_importance(importance_type="gain", iteration=best_iteration)
    info: dict[str, Any] = {
        "best_iteration": best_iteration,
        "feature_importance": dict(
            sorted(zip(train.feature_names, gains.tolist(), strict=True), key=lambda kv: -kv[1])
        ),
    }
    if has_valid:
        info[f"valid_ndcg@{EVAL_AT}"] = float(booster.best_score["valid"][f"ndcg@{EVAL_AT}"])
        # LightGBM's validation ndcg (over the validation queries with a target among their
        # candidates) after each round boosted: what fewer trees, each a cost per candidate
        # when serving, would read
        info[f"valid_ndcg@{EVAL_AT}_by_round"] = list(history["valid"][f"ndcg@{EVAL_AT}"])
    return Ranker(config, booster, list(train.feature_names), best_iteration, info)


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into JSON's types."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
