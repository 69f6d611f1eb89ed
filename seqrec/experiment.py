"""One experiment end to end: load -> split -> item features -> model -> train -> bundle.

This is what `seqrec train`, `seqrec demo`, `seqrec bench` and `seqrec tune` call; the CLI only
maps flags to an `ExperimentConfig`. Follow it top to bottom to see the whole data flow.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqrec import distributed
from seqrec.bundle import save_bundle
from seqrec.config import ExperimentConfig
from seqrec.data.dataset import Dataset
from seqrec.data.load import load_dataset
from seqrec.data.split import EvalTask, Split, split_dataset
from seqrec.evaluate import EvalResult, evaluate
from seqrec.features.build import ItemFeaturizer, fit_item_features
from seqrec.features.item_features import ItemFeatures
from seqrec.models.recommender import SequenceRecommender, build_model
from seqrec.train import ModelScorer, TrainResult, fit


@dataclass
class Prepared:
    """Everything a model is trained from, computed once and shared by several models."""

    dataset: Dataset
    split: Split
    features: ItemFeatures
    featurizer: ItemFeaturizer  # fitted encoders, saved in bundles to encode new items


@dataclass
class Outcome:
    model: SequenceRecommender
    train: TrainResult  # the run that chose the epoch on validation
    refit: TrainResult | None  # with train.refit: the model trained on train + valid
    valid: EvalResult | None  # None on ranks other than 0 under torchrun
    test: EvalResult | None
    bundle: Path | None


def prepare(
    config: ExperimentConfig, data_path: str | Path, cache_dir: Path | None = None, progress=None
) -> Prepared:
    dataset = load_dataset(
        data_path,
        format=config.data.format,
        on_error=config.data.on_error,
        text_columns=config.data.text_columns,
    )
    split = split_dataset(dataset, config.split)
    built = fit_item_features(dataset, config.features, cache_dir=cache_dir, progress=progress)
    return Prepared(dataset, split, built.features, built.featurizer)


def evaluate_model(
    config: ExperimentConfig, scorer, task: EvalTask, bootstrap: int | None = None
) -> EvalResult:
    return evaluate(
        scorer,
        task,
        ks=tuple(config.eval.ks),
        remove_seen=config.eval.remove_seen,
        bootstrap=config.eval.bootstrap if bootstrap is None else bootstrap,
    )


def train_on(
    config: ExperimentConfig,
    prepared: Prepared,
    out_dir: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    features: ItemFeatures | None = None,
) -> Outcome:
    """Train one model on prepared data; write a bundle when ``out_dir`` is given.

    ``features`` overrides the prepared features (modality ablations use a subset). With
    ``config.train.refit``, the epoch chosen on validation is trained again from scratch on
    train + valid, the data the baselines are fitted on for test; validation figures stay those
    of the model that chose the epoch, test figures and the bundle are the refit model's.
    """
    torch.manual_seed(config.train.seed)
    features = prepared.features if features is None else features
    model = build_model(config.model, features, prepared.dataset.n_items)
    checkpoint = refit_checkpoint = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = out_dir / "checkpoint.pt"
        refit_checkpoint = out_dir / "refit_checkpoint.pt"

    def validate(scorer: ModelScorer, task: EvalTask) -> dict[str, float]:
        result = evaluate_model(config, scorer, task, bootstrap=0)
        return distributed.reduce_metrics(result.metrics, result.counts)

    def run_fit(
        model: SequenceRecommender, split: Split, validate_with=validate, **options
    ) -> TrainResult:
        return fit(
            model,
            split,
            config.train,
            max_len=config.model.max_len,
            validate=validate_with,
            main_metric=config.eval.main_metric,
            on_epoch=on_epoch,
            **options,
        )

    result = run_fit(model, prepared.split, checkpoint_path=checkpoint)
    model.load_state_dict(result.state_dict)
    chosen, refit, trained_on = model, None, prepared.split.train
    if config.train.refit:
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, features, prepared.dataset.n_items)
        refit_split = prepared.split.with_valid_in_train()
        refit = run_fit(
            model,
            refit_split,
            validate_with=None,  # a refit trains a fixed number of epochs
            checkpoint_path=refit_checkpoint,
            fixed_epochs=result.best_epoch + 1,
        )
        model.load_state_dict(refit.state_dict)
        trained_on = refit_split.train
    chosen.cpu().eval()
    model.cpu().eval()
    if not distributed.is_main():  # rank 0 alone evaluates on test and writes the bundle
        distributed.barrier()
        return Outcome(model, result, refit, None, None, None)
    valid = evaluate_model(
        config, ModelScorer(chosen, config.model.max_len), prepared.split.task("valid")
    )
    test = evaluate_model(
        config, ModelScorer(model, config.model.max_len), prepared.split.task("test")
    )
    bundle = None
    if out_dir is not None:
        popularity = np.bincount(
            trained_on["item_idx"].to_numpy(), minlength=prepared.dataset.n_items
        )
        metrics = {
            "best_epoch": result.best_epoch,
            "refit_epochs": None if refit is None else len(refit.history),
            "valid": valid.metrics,
            "test": test.metrics,
            "test_ci": {name: list(bounds) for name, bounds in test.ci.items()},
            "history": result.history,
            "refit_history": None if refit is None else refit.history,
        }
        bundle = save_bundle(
            out_dir,
            config,
            prepared.dataset,
            features,
            model,
            popularity,
            metrics,
            prepared.featurizer,
        )
        checkpoint.unlink(missing_ok=True)
        refit_checkpoint.unlink(missing_ok=True)
    distributed.barrier()
    return Outcome(model, result, refit, valid, test, bundle)


def run_train(
    config: ExperimentConfig,
    data_path: str | Path,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress=None,
    on_epoch: Callable[[dict], None] | None = None,
) -> Outcome:
    prepared = prepare(config, data_path, cache_dir=cache_dir, progress=progress)
    return train_on(config, prepared, out_dir=out_dir, on_epoch=on_epoch)


def copy_config(config: ExperimentConfig, **changes) -> ExperimentConfig:
    """A deep copy with top-level sections replaced (for ablations and tuning trials)."""
    copied = dataclasses.replace(config)
    for name, value in changes.items():
        setattr(copied, name, value)
    return copied


def remove_bundle(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
