"""Benchmark on one split: baselines, sequence models and modality ablations, one table.

Every ranker goes through the same harness (`seqrec.evaluate.evaluate`): full-catalogue ranking
of the test targets, fitted on ``train`` + ``valid`` for baselines, trained on ``train`` with the
epoch chosen on ``valid`` for models. Nothing is chosen on test. `write_report` writes
``<name>.md`` (table with 95% bootstrap CIs, the command, machine, wall time), ``<name>.json``
and ``<name>.png`` (bar chart with error bars).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqrec import baselines
from seqrec.config import ExperimentConfig, config_to_dict
from seqrec.data.dataset import DataError
from seqrec.evaluate import EvalResult, cold_items_note, evaluate, paired_difference
from seqrec.experiment import Prepared, evaluate_model, train_on
from seqrec.features.build import FeatureConfig, fit_item_features
from seqrec.features.text import TextConfig, TextEncoder, item_texts

log = logging.getLogger(__name__)

ABLATIONS = ("id_only", "text_only", "image_only", "concat", "product", "attention")


@dataclass
class BenchRow:
    name: str
    kind: str  # baseline | model | ablation
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


def baseline_rankers(prepared: Prepared, cache_dir: Path | None = None) -> dict[str, object]:
    """The heuristics every model must beat, fitted later on the task's fit table only."""
    dataset, features = prepared.dataset, prepared.features
    rankers: dict[str, object] = {"popularity": baselines.Popularity()}
    window = _window(dataset.time_unit, 28)
    if window is not None:
        rankers["popularity (last 28 days)"] = baselines.Popularity(window)
    rankers["repeat, then popularity"] = baselines.RepeatThenPopularity(window)
    rankers["item co-occurrence KNN"] = baselines.ItemKNN()
    columns = dataset.schema.text_columns
    if columns:
        texts = item_texts(dataset.items, columns)
        # plain word TF-IDF (sklearn's defaults plus English stop words), as in the reference
        # figures of the H&M subset's README (benchmarks/hm_baselines.py compares variants)
        plain = TextConfig(
            encoder="tfidf",
            ngram_range=(1, 1),
            min_df=1,
            max_features=0,
            sublinear_tf=False,
            svd_dim=0,
            column_names="no",
        )
        tfidf = TextEncoder(plain).fit(texts)
        vectors = tfidf.pipeline.transform(texts)  # [N, V] sparse TF-IDF
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
    elif ablation == "text_only":
        item_net = dataclasses.replace(item_net, modalities=["text"])
    elif ablation == "image_only":
        item_net = dataclasses.replace(item_net, modalities=["image"])
    elif ablation in ("concat", "product", "attention"):
        item_net = dataclasses.replace(item_net, modalities=None, fusion=ablation)
    else:
        raise ValueError(f"unknown ablation {ablation!r}; choose from {ABLATIONS}")
    model = dataclasses.replace(config.model, item_net=item_net)
    return dataclasses.replace(config, model=model)


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
    started = time.perf_counter()
    report = BenchReport(config=config, dataset=prepared.dataset.name)
    test_task = prepared.split.task("test")

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

    runs = [
        (
            model,
            "model",
            dataclasses.replace(config, model=dataclasses.replace(config.model, model=model)),
        )
        for model in models
    ]
    for ablation in ablations:
        modalities = prepared.features.modalities()
        if ablation == "text_only" and "text" not in modalities:
            continue
        if ablation == "image_only" and "image" not in modalities:
            continue
        runs.append(
            (f"{config.model.model}: {ablation}", "ablation", ablation_config(config, ablation))
        )
    for name, kind, run_config in runs:
        begin = time.perf_counter()
        outcome = train_on(
            run_config,
            prepared,
            on_epoch=None if on_epoch is None else lambda row, name=name: on_epoch(name, row),
        )
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
    report.seconds = time.perf_counter() - started
    return report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table_columns(config: ExperimentConfig) -> list[str]:
    k = max(config.eval.ks)
    return [
        f"ndcg@{k}",
        f"map@{k}",
        f"recall@{k}",
        f"hr@{k}",
        f"precision@{k}",
        f"f1@{k}",
        "mrr",
        f"cold:recall@{k}",
    ] + [f"ndcg@{other}" for other in config.eval.ks if other != k]


def paired_rows(report: BenchReport) -> list[dict]:
    """Each model and ablation row against the baseline with the highest test main metric:
    ``{"name", "against", "differences": {metric: (mean, low, high)}}`` for the main metric,
    recall and cold recall (`seqrec.evaluate.paired_difference`). Empty without both kinds."""
    columns = table_columns(report.config)
    main, recall, cold = columns[0], columns[2], f"cold:{columns[2]}"
    baseline_rows = [row for row in report.rows if row.kind == "baseline"]
    model_rows = [row for row in report.rows if row.kind != "baseline"]
    if not baseline_rows or not model_rows:
        return []
    best = max(baseline_rows, key=lambda row: np.nan_to_num(row.test.metrics[main], nan=-1.0))
    bootstrap = report.config.eval.bootstrap
    return [
        {
            "name": row.name,
            "against": best.name,
            "differences": {
                metric: paired_difference(row.test, best.test, metric, bootstrap)
                for metric in (main, recall, cold)
                if metric != cold or best.test.counts.get("cold:users", 0)
            },
        }
        for row in model_rows
    ]


def write_report(report: BenchReport, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = table_columns(report.config)
    main = columns[0]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    counts = report.rows[0].test.counts if report.rows else {}
    lines = [
        f"# {name}: benchmark on `{report.dataset}`",
        "",
        f"- command: `{report.command or ' '.join(sys.argv)}`",
        f"- machine: {machine()}",
        f"- date: {now}; wall time {report.seconds:.0f} s",
        f"- split: {report.config.split.method}; remove seen items: "
        f"{report.config.eval.remove_seen}; test users: {counts.get('users', 0)}, "
        f"users with a cold target: {counts.get('cold:users', 0)}",
        f"- cold items (no interaction in train + valid): {counts.get('cold:items', 0)}, of "
        f"them test targets: {counts.get('cold:target_items', 0)}"
        + (f" (warning: {note})" if (note := cold_items_note(counts)) else ""),
        "- ranking over the whole catalogue; baselines fitted on train + valid, models trained "
        f"on train with the epoch chosen on validation ({report.config.eval.main_metric})"
        + (
            ", then trained again from scratch on train + valid for that many epochs (refit)"
            if report.config.train.refit
            else ""
        )
        + "; 95% bootstrap CIs over users in brackets",
        "",
        "| ranker | kind | valid "
        + report.config.eval.main_metric
        + " | "
        + " | ".join(columns)
        + " | seconds | notes |",
        "|" + "---|" * (len(columns) + 5),
    ]
    for row in report.rows:
        cells = []
        for column in columns:
            value = row.test.metrics.get(column, float("nan"))
            low, high = row.test.ci.get(column, (float("nan"), float("nan")))
            cells.append(
                f"{value:.4f} [{low:.4f}, {high:.4f}]"
                if column in (main, f"cold:{columns[2]}", columns[2])
                else f"{value:.4f}"
            )
        valid = "" if row.valid_metric is None else f"{row.valid_metric:.4f}"
        lines.append(
            f"| {row.name} | {row.kind} | {valid} | "
            + " | ".join(cells)
            + f" | {row.seconds:.0f} | {row.notes} |"
        )
    paired = paired_rows(report)
    if paired:
        reference = paired[0]["against"]
        names = list(paired[0]["differences"])
        lines += [
            "",
            f"Paired differences against the best baseline on test {main} ({reference}): each",
            "row's value minus the baseline's over the same users, 95% paired bootstrap CI",
            "(users resampled together for both rankers); a CI that excludes 0 separates them.",
            "",
            "| ranker | " + " | ".join(f"{column} difference" for column in names) + " |",
            "|" + "---|" * (len(names) + 1),
        ]
        for entry in paired:
            cells = [
                f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"
                for mean, low, high in entry["differences"].values()
            ]
            lines.append(f"| {entry['name']} | " + " | ".join(cells) + " |")
    md_path = out_dir / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    json_path = out_dir / f"{name}.json"
    json_path.write_text(
        json.dumps(
            {
                "command": report.command or " ".join(sys.argv),
                "machine": machine(),
                "date": now,
                "seconds": report.seconds,
                "config": config_to_dict(report.config),
                "rows": [
                    {
                        "name": row.name,
                        "kind": row.kind,
                        "valid_metric": row.valid_metric,
                        "seconds": row.seconds,
                        "notes": row.notes,
                        "test": row.test.metrics,
                        "ci": {key: list(value) for key, value in row.test.ci.items()},
                        "counts": row.test.counts,
                    }
                    for row in report.rows
                ],
                "paired": paired,
            },
            indent=2,
        )
    )
    png_path = out_dir / f"{name}.png"
    _plot(report, main, png_path)
    return [md_path, json_path, png_path]


def _plot(report: BenchReport, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row.name for row in report.rows]
    values = np.array([row.test.metrics.get(metric, np.nan) for row in report.rows])
    bounds = np.array([row.test.ci.get(metric, (np.nan, np.nan)) for row in report.rows])
    errors = np.abs(np.stack([values - bounds[:, 0], bounds[:, 1] - values]))
    colours = {"baseline": "#9e9e9e", "model": "#1f77b4", "ablation": "#ff7f0e"}
    fig, axis = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    axis.barh(
        names, values, xerr=errors, color=[colours[row.kind] for row in report.rows], capsize=3
    )
    axis.invert_yaxis()
    axis.set_xlabel(f"test {metric} (95% bootstrap CI)")
    axis.set_title(f"{report.dataset}: full-catalogue ranking")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["ABLATIONS", "BenchReport", "BenchRow", "run_bench", "write_report", "evaluate"]
