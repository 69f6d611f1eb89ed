"""Benchmark on one split: baselines, sequence models and modality ablations, one table.

Every ranker goes through the same harness (`seqrec.evaluate.evaluate`): full-catalogue ranking
of the test targets, fitted on ``train`` + ``valid`` for baselines, trained on ``train`` with the
epoch chosen on ``valid`` for models. Nothing is chosen on test. With ``[ranker] enabled``, the
two-stage ranker, its ablations and its candidate set alone follow as rows of their own
(`seqrec.ranker.bench_rows`), on top of the config's own model row. `run_bench` returns the rows
as a `BenchReport`; `seqrec.bench_report` writes and renders it (markdown, JSON, chart).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqrec import baselines
from seqrec.config import ConfigError, ExperimentConfig
from seqrec.data.dataset import DataError
from seqrec.evaluate import EvalResult
from seqrec.experiment import Prepared, evaluate_model, held_out, train_on
from seqrec.features.build import FeatureConfig, fit_item_features
from seqrec.features.text import TextConfig, tfidf_terms
from seqrec.models.recommender import BACKBONES

log = logging.getLogger(__name__)

ABLATIONS = ("id_only", "text_only", "image_only", "concat", "product", "attention")
ONE_MODALITY = {"text_only": "text", "image_only": "image"}  # ablation -> the modality it keeps


@dataclass
class BenchRow:
    name: str
    kind: str  # baseline | model | ablation | ranker | ranker ablation
    test: EvalResult
    valid_metric: float | None = None  # the model-selection metric on validation
    seconds: float = 0.0
    notes: str = ""


@dataclass
class BenchReport:
    config: ExperimentConfig
    dataset: str
    rows: list[BenchRow] = field(default_factory=list)
    seconds: float = 0.0
    command: str = ""
    # with [ranker] enabled: candidate recall per source, feature importance, notes
    # (`seqrec.ranker.bench_rows.RankerSummary.to_dict`)
    ranker: dict | None = None


def _window(time_unit: str, days: int) -> int | None:
    return {"day": days, "second": days * 86400}.get(time_unit)


def sentence_vectors(prepared: Prepared, cache_dir: Path | None = None) -> np.ndarray | None:
    """[N, D] pretrained sentence-encoder vectors of the item texts, for the text-embedding
    content KNN baseline: the model's own when it uses the sentence encoder, otherwise encoded
    here with the default (packaged) one, through the feature cache. None when the items have
    no text or the sentence model cannot be loaded (the reason is logged)."""
    featurizer = prepared.featurizer
    if prepared.features.text is not None and featurizer.config.text.encoder == "sentence":
        return prepared.features.text.numpy()
    if not prepared.dataset.schema.text_columns:
        return None
    config = FeatureConfig(
        text=TextConfig(encoder="sentence", device=featurizer.config.text.device),
        use_image=False,
        use_categories=False,
        use_numeric=False,
        text_columns=featurizer.config.text_columns,
    )
    try:
        built = fit_item_features(prepared.dataset, config, cache_dir=cache_dir)
    except DataError as error:
        log.warning("no text-embedding content KNN baseline: %s", error)
        return None
    return None if built.features.text is None else built.features.text.numpy()


def baseline_rankers(
    prepared: Prepared, cache_dir: Path | None = None
) -> dict[str, baselines.Baseline]:
    """The heuristics every model must beat, fitted later on the task's fit table only."""
    dataset, features = prepared.dataset, prepared.features
    rankers: dict[str, baselines.Baseline] = {"popularity": baselines.Popularity()}
    window = _window(dataset.time_unit, 28)
    if window is not None:
        rankers["popularity (last 28 days)"] = baselines.Popularity(window)
    rankers["repeat, then popularity"] = baselines.RepeatThenPopularity(window)
    rankers["item co-occurrence KNN"] = baselines.ItemKNN()
    columns = dataset.schema.text_columns
    if columns:
        vectors = tfidf_terms(dataset.items, columns)  # [N, V] sparse TF-IDF
        rankers["TF-IDF content KNN"] = baselines.ContentKNN(vectors, last_n=5)
        rankers["repeat, then TF-IDF content KNN"] = baselines.RepeatThenContentKNN(vectors, 5)
    sentences = sentence_vectors(prepared, cache_dir)
    if sentences is not None:
        rankers["text-embedding content KNN"] = baselines.ContentKNN(sentences, 5)
    if features.image is not None:
        rankers["image-embedding content KNN"] = baselines.ContentKNN(features.image.numpy(), 5)
    return rankers


def ablation_config(config: ExperimentConfig, ablation: str) -> ExperimentConfig:
    item_net = config.model.item_net
    if ablation == "id_only":
        item_net = dataclasses.replace(item_net, modalities=[], use_id_embedding=True)
    elif ablation in ONE_MODALITY:
        item_net = dataclasses.replace(item_net, modalities=[ONE_MODALITY[ablation]])
    elif ablation in ("concat", "product", "attention"):
        item_net = dataclasses.replace(item_net, modalities=None, fusion=ablation)
    else:
        raise ValueError(f"unknown ablation {ablation!r}; choose from {ABLATIONS}")
    model = dataclasses.replace(config.model, item_net=item_net)
    return dataclasses.replace(config, model=model)


def check_runs(models: list[str], ablations: list[str]) -> None:
    """Raise a `ConfigError` naming every unknown model or ablation, before anything runs."""
    unknown = [f"model {name!r}" for name in models if name not in BACKBONES]
    unknown += [f"ablation {name!r}" for name in ablations if name not in ABLATIONS]
    if unknown:
        raise ConfigError(
            f"unknown {', '.join(unknown)}; models: {', '.join(BACKBONES)}; "
            f"ablations: {', '.join(ABLATIONS)}"
        )


def training_runs(
    config: ExperimentConfig, prepared: Prepared, models: list[str], ablations: list[str]
) -> list[tuple[str, str, ExperimentConfig]]:
    """``(row name, kind, config)`` of each model and ablation to train, the sequence model alone
    (``[ranker]`` off: the ranker has rows of its own); an ablation that keeps a modality the
    items lack is skipped with a warning."""
    config = model_only(config)
    runs = [
        (
            model,
            "model",
            dataclasses.replace(config, model=dataclasses.replace(config.model, model=model)),
        )
        for model in models
    ]
    modalities = prepared.features.modalities()
    for ablation in ablations:
        needed = ONE_MODALITY.get(ablation)
        if needed is not None and needed not in modalities:
            log.warning("ablation %s skipped: the items have no %s features", ablation, needed)
            continue
        runs.append(
            (f"{config.model.model}: {ablation}", "ablation", ablation_config(config, ablation))
        )
    return runs


def run_bench(
    config: ExperimentConfig,
    prepared: Prepared,
    models: list[str],
    ablations: list[str],
    include_baselines: bool = True,
    on_row: Callable[[BenchRow], None] | None = None,
    on_epoch: Callable[[str, dict], None] | None = None,
    cache_dir: Path | None = None,
) -> BenchReport:
    check_runs(models, ablations)
    started = time.perf_counter()
    report = BenchReport(config=config, dataset=prepared.dataset.name)
    test_task = held_out(config, prepared.split, "test")

    def add(row: BenchRow) -> None:
        report.rows.append(row)
        if on_row is not None:
            on_row(row)

    if include_baselines:
        for name, ranker in baseline_rankers(prepared, cache_dir).items():
            begin = time.perf_counter()
            ranker.fit(test_task.fit, prepared.dataset.n_items)
            result = evaluate_model(config, ranker, test_task)
            add(BenchRow(name, "baseline", result, seconds=time.perf_counter() - begin))

    own = None  # the config's own model row, which the ranker is fitted on top of
    for name, kind, run_config in training_runs(config, prepared, models, ablations):
        begin = time.perf_counter()
        outcome = train_on(
            run_config,
            prepared,
            on_epoch=None if on_epoch is None else functools.partial(on_epoch, name),
        )
        assert outcome.test is not None  # one process: it evaluates (only rank 0 does)
        if kind == "model" and name == config.model.model:
            own = outcome
        add(
            BenchRow(
                name,
                kind,
                outcome.test,
                valid_metric=outcome.train.best_metric,
                seconds=time.perf_counter() - begin,
                notes=f"best epoch {outcome.train.best_epoch + 1}"
                + ("" if outcome.refit is None else ", refit on train + valid"),
            )
        )
    if config.ranker.enabled:
        report.ranker = _ranker_part(config, prepared, own, add, on_epoch)
    report.seconds = time.perf_counter() - started
    return report


def model_only(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with ``[ranker]`` off: what a model or ablation row trains."""
    return dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, enabled=False))


def _ranker_part(config, prepared, own, add, on_epoch) -> dict:
    """The two-stage ranker's rows (`seqrec.ranker.bench_rows`) on top of the config's own
    sequence model: its model row's, trained here when no model row trained it."""
    from seqrec.ranker.bench_rows import ranker_rows  # lightgbm only when a ranker runs

    notes = []
    if own is None:
        label = f"{config.model.model} for the ranker"
        own = train_on(
            model_only(config),
            prepared,
            on_epoch=None if on_epoch is None else functools.partial(on_epoch, label),
        )
        notes.append(f"sequence model ({config.model.model}) trained for the ranker alone")
    summary = ranker_rows(config, prepared, own, add)
    summary.notes = notes + summary.notes
    return summary.to_dict()


__all__ = ["ABLATIONS", "BenchReport", "BenchRow", "check_runs", "run_bench"]
