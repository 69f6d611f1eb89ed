"""One experiment end to end: load -> split -> item features -> model -> train -> bundle.

With ``ranker.enabled`` the sequence model is trained as before, then the two-stage ranker
(`seqrec.ranker`) is fitted on top of it, and the experiment's figures and bundle are the
ranker's (the model's own figures are kept beside them).

This is what `seqrec train`, `seqrec demo`, `seqrec bench` and `seqrec tune` call, and
`run_encode` / `run_eval` are `seqrec encode` / `seqrec eval`; the CLI only maps flags to an
`ExperimentConfig`. Follow it top to bottom to see the whole data flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from seqrec import distributed
from seqrec.bundle import load_bundle, model_for_catalogue, recover_bundle, save_bundle
from seqrec.bundle_ranker import RankerPart, ranker_reads_model, ranker_scorer
from seqrec.checkpoint import FILES as CHECKPOINT_FILES
from seqrec.config import (
    ExperimentConfig,
    build_section,
    check_runnable,
    config_to_dict,
    load_config,
)
from seqrec.constraints import check_value
from seqrec.data.dataset import Dataset
from seqrec.data.load import load_dataset
from seqrec.data.split import EvalTask, Split, SplitConfig, split_dataset
from seqrec.evaluate import EvalResult, evaluate
from seqrec.features.build import FeatureBuild, ItemFeaturizer, fit_item_features
from seqrec.features.image import ImageReport
from seqrec.features.item_features import ItemFeatures
from seqrec.features.shard import encode_rank_images
from seqrec.models.recommender import SequenceRecommender, build_model
from seqrec.preflight import check_out_dir, check_trainable
from seqrec.ranker.fit import fit_ranker
from seqrec.ranker.model import Ranker
from seqrec.ranker.nested import past_model
from seqrec.ranker.projection import check_image_dim
from seqrec.ranker.scorer import RankerScorer
from seqrec.scoring import ModelScorer
from seqrec.train import TrainResult, fit

if TYPE_CHECKING:
    from rich.progress import Progress


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
    ranker: Ranker | None = None  # with ranker.enabled; valid and test are then the ranker's
    model_valid: EvalResult | None = None  # with a ranker: the sequence model's own figures
    model_test: EvalResult | None = None


def load_data(config: ExperimentConfig, data_path: str | Path) -> Dataset:
    """The dataset at ``data_path``, read as ``config.data`` says (format, bad rows, text)."""
    return load_dataset(
        data_path,
        format=config.data.format,
        on_error=config.data.on_error,
        text_columns=config.data.text_columns,
    )


def prepare(
    config: ExperimentConfig, data_path: str | Path, cache_dir: Path | None = None, progress=None
) -> Prepared:
    """Load, split and encode the data ``config`` trains on, refusing early (before the data is
    read, then right after the split) what would otherwise fail once training has started."""
    check_runnable(config)
    dataset = load_data(config, data_path)
    split = split_dataset(dataset, config.split)
    check_trainable(split, config)
    built = fit_item_features(dataset, config.features, cache_dir=cache_dir, progress=progress)
    image = built.features.image
    if config.ranker.enabled and config.ranker.image_dim and image is not None:
        check_image_dim(config.ranker.image_dim, image.shape[1])
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


def held_out(config: ExperimentConfig, split: Split, stage: str) -> EvalTask:
    """The users whose final figures are reported at ``stage``: all of them, or the seeded
    sample of ``eval.users`` (the same users for every model evaluated with this config)."""
    return split.task(stage).sample(config.eval.users, config.train.seed)


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
        if not distributed.launched_by_torchrun():  # ranks would race; save_bundle recovers too
            recover_bundle(out_dir)  # a bundle write killed between its renames is finished
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint, refit_checkpoint = (out_dir / name for name in CHECKPOINT_FILES)

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
            settings=config_to_dict(config),  # recorded in checkpoints: resume only the same run
            **options,
        )

    result = run_fit(model, prepared.split, checkpoint_path=checkpoint)
    model.load_state_dict(_kept_weights(result))
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
        model.load_state_dict(_kept_weights(refit))
        trained_on = refit_split.train
    past = None  # the ranker's nested model: every rank trains it (a torchrun fit is collective)
    if config.ranker.enabled and ranker_reads_model(config.ranker):
        epochs, n_items = result.best_epoch + 1, prepared.dataset.n_items
        past = past_model(config, prepared.split, features, n_items, epochs)
    chosen.cpu().eval()
    model.cpu().eval()
    if not distributed.is_main():  # rank 0 alone evaluates on test and writes the bundle
        distributed.barrier()
        return Outcome(model, result, refit, None, None, None)
    valid = evaluate_model(
        config, ModelScorer(chosen, config.model.max_len), held_out(config, prepared.split, "valid")
    )
    test = evaluate_model(
        config, ModelScorer(model, config.model.max_len), held_out(config, prepared.split, "test")
    )
    outcome = Outcome(model, result, refit, valid, test, None)
    if config.ranker.enabled:
        outcome = with_ranker(config, prepared, features, chosen, outcome, past)
    if out_dir is not None:
        popularity = np.bincount(
            trained_on["item_idx"].to_numpy(), minlength=prepared.dataset.n_items
        )
        ranker = None
        if outcome.ranker is not None:  # the log its features read when served: test's
            ranker = RankerPart(outcome.ranker, prepared.split.fit_interactions("test"))
        outcome.bundle = save_bundle(
            out_dir,
            config,
            prepared.dataset,
            features,
            model,
            popularity,
            bundle_metrics(outcome),
            prepared.featurizer,
            ranker=ranker,
        )
        for name in CHECKPOINT_FILES:  # the bundle is written: no resume needs them
            (out_dir / name).unlink(missing_ok=True)
    distributed.barrier()
    return outcome


def with_ranker(
    config: ExperimentConfig,
    prepared: Prepared,
    features: ItemFeatures,
    chosen: SequenceRecommender,
    outcome: Outcome,
    past: SequenceRecommender | None = None,
) -> Outcome:
    """``outcome`` with the two-stage ranker fitted on top of its sequence model, and the
    ranker's validation and test figures in place of the model's (kept as ``model_valid`` and
    ``model_test``).

    The ranker reads the sequence model unless trained ``without = ["sequence"]``
    (`ranker_reads_model`). It is fitted with ``chosen``, the model trained on ``split.train``
    alone, whose scores early stopping reads on the validation baskets, and with ``past``
    (`past_model`, trained here when not given), the same model trained without each
    shopper's last ``ranker.train_baskets`` train baskets, which scores the training queries
    of those baskets (`seqrec.ranker.fit.fit_ranker`). It is evaluated as each stage's model
    would be served: on validation with ``chosen`` over ``split.train`` (held out: no ranker
    tree was fitted on a validation basket), on test with the bundle's model (the refit one
    with ``train.refit``) over train + valid.
    """
    split, max_len = prepared.split, config.model.max_len
    reads = ranker_reads_model(config.ranker)
    fitted_with = past_scorer = None
    seconds_past = 0.0
    if reads:
        fitted_with = ModelScorer(chosen, max_len)
        if past is None:
            clock = time.perf_counter()
            epochs = outcome.train.best_epoch + 1
            past = past_model(config, split, features, prepared.dataset.n_items, epochs)
            seconds_past = time.perf_counter() - clock
        past_scorer = ModelScorer(past, max_len)
    ranker = fit_ranker(
        prepared.dataset,
        split,
        features,
        config.ranker,
        model=fitted_with,
        past_model=past_scorer,
    )
    if reads:
        ranker.info["seconds"]["past_model"] = seconds_past  # 0: trained before, by the caller
    results = {}
    for stage, model in (("valid", chosen), ("test", outcome.model)):
        task = held_out(config, split, stage)
        scorer = ranker_scorer(
            ranker, prepared.dataset, features, task.fit, ModelScorer(model, max_len)
        )
        results[stage] = evaluate_model(config, scorer, task)
    return replace(
        outcome,
        valid=results["valid"],
        test=results["test"],
        ranker=ranker,
        model_valid=outcome.valid,
        model_test=outcome.test,
    )


def bundle_metrics(outcome: Outcome) -> dict:
    """metrics.json: the chosen epoch, validation per epoch, the figures of what the bundle
    ranks with (the ranker's in a two-stage bundle, the sequence model's then under
    ``model_valid`` / ``model_test``)."""
    assert outcome.valid is not None and outcome.test is not None  # rank 0 writes bundles
    refit = outcome.refit
    metrics = {
        "best_epoch": outcome.train.best_epoch,
        "refit_epochs": None if refit is None else len(refit.history),
        "valid": outcome.valid.metrics,
        "test": outcome.test.metrics,
        "test_ci": {name: list(bounds) for name, bounds in outcome.test.ci.items()},
        "history": outcome.train.history,
        "refit_history": None if refit is None else refit.history,
    }
    if outcome.model_valid is not None and outcome.model_test is not None:
        metrics["model_valid"] = outcome.model_valid.metrics
        metrics["model_test"] = outcome.model_test.metrics
        metrics["model_test_ci"] = {k: list(v) for k, v in outcome.model_test.ci.items()}
    return metrics


def _kept_weights(result: TrainResult) -> dict:
    """The weights `fit` kept: its best epoch's (a refit's last)."""
    assert result.state_dict is not None  # fit keeps an epoch's unless every metric was NaN
    return result.state_dict


def run_train(
    config: ExperimentConfig,
    data_path: str | Path,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress=None,
    on_epoch: Callable[[dict], None] | None = None,
) -> Outcome:
    check_out_dir(out_dir)  # before any data is read
    prepared = prepare(config, data_path, cache_dir=cache_dir, progress=progress)
    return train_on(config, prepared, out_dir=out_dir, on_epoch=on_epoch)


def run_encode(
    config: ExperimentConfig,
    data_path: str | Path,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    on_shard: Callable[[int, ImageReport], None] | None = None,
) -> FeatureBuild | None:
    """Encode every item's text and image into the feature cache (`seqrec encode`).

    Under torchrun each rank first encodes its slice of the images (`seqrec.features.shard`;
    ``on_shard(rank, report)`` hears of it); after a barrier rank 0 alone builds the item
    features, every image then a cache hit, and the other ranks return None. ``progress`` is
    shown (entered) while rank 0 builds the features, not on the other ranks.
    """
    dataset = load_data(config, data_path)
    if distributed.launched_by_torchrun():
        distributed.setup(torch.device("cpu"))
        report = encode_rank_images(dataset, config.features, cache_dir)
        if report is not None and on_shard is not None:
            on_shard(distributed.rank(), report)
        distributed.barrier()
        if not distributed.is_main():
            return None
    with progress if progress is not None else nullcontext():
        return fit_item_features(dataset, config.features, cache_dir, progress=progress)


STAGES = ("test", "valid")  # the held-out parts of a split a bundle can be evaluated on


@dataclass
class EvalOutcome:
    """What `run_eval` measured, and what a reader of the figures should know."""

    result: EvalResult
    users: int  # users of the evaluated stage
    new_items: int  # catalogue items unknown to the bundle, encoded from their content
    refit: bool  # the model was refit on train + valid: its validation figures are not held out


def run_eval(
    bundle_path: str | Path,
    data_path: str | Path,
    stage: str = "test",
    split: str | None = None,
    remove_seen: bool | None = None,
    cache_dir: Path | None = None,
    users: int | None = None,
) -> EvalOutcome:
    """Evaluate a bundle on a dataset sharing its item ids (`seqrec eval`).

    The data is split as the bundle's was (``split``: another ``split.method``) and the
    ``stage`` part ranked under the bundle's protocol (``remove_seen`` and ``users``, the
    ``eval.users`` sample, override it). Items the
    bundle has never seen are encoded from their content with its fitted featurizer. A
    two-stage bundle ranks with its ranker, whose features read the evaluated data's log (the
    stage's fit table) before each shopper's cutoff, as the service reads its recent events.
    """
    stage = check_value(stage, {"choices": STAGES}, "stage")
    other_split = None if split is None else build_section(SplitConfig, {"method": split}, "split")
    bundle = load_bundle(bundle_path)
    config = bundle.config
    if remove_seen is not None:
        config = replace(config, eval=replace(config.eval, remove_seen=remove_seen))
    if users is not None:  # a seeded sample of this many users (0: all), `held_out`
        config = replace(config, eval=replace(config.eval, users=users))
    dataset = load_data(config, data_path)
    model, features, new_items = model_for_catalogue(bundle, dataset.items, cache_dir)
    task = held_out(config, split_dataset(dataset, other_split or config.split), stage)
    model_scorer = ModelScorer(model, config.model.max_len)
    scorer: ModelScorer | RankerScorer = model_scorer
    if bundle.ranker is not None:  # over the evaluated data's log before each cutoff
        scorer = ranker_scorer(bundle.ranker.ranker, dataset, features, task.fit, model_scorer)
    result = evaluate_model(config, scorer, task)
    refit = stage == "valid" and config.train.refit
    return EvalOutcome(result, len(task), new_items, refit)


DEMO_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "demo.toml"


def demo_config() -> ExperimentConfig:
    """The demo's experiment: ``experiments/demo.toml`` of a source checkout, else defaults."""
    return load_config(DEMO_CONFIG if DEMO_CONFIG.exists() else None)
