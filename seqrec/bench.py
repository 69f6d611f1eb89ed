"""Benchmark on one split: baselines, sequence models and modality ablations, one table.

Every ranker goes through the same harness (`seqrec.evaluate.evaluate`): full-catalogue ranking
of the test targets, fitted on ``train`` + ``valid`` for baselines, trained on ``train`` with the
epoch chosen on ``valid`` for models. Nothing is chosen on test. `write_report` writes
``<name>.json`` (every figure, the command, machine, date, wall time) and renders from it
``<name>.md`` (table with 95% bootstrap CIs; notes a person adds below its marker line are kept
when the report is written again) and ``<name>.png`` (bar chart with error bars).
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
import scipy.sparse as sp

from seqrec import baselines
from seqrec.config import ConfigError, ExperimentConfig, config_to_dict
from seqrec.data.dataset import DataError
from seqrec.evaluate import EvalResult, cold_items_note, evaluate, paired_difference
from seqrec.experiment import Prepared, evaluate_model, train_on
from seqrec.features.build import FeatureConfig, fit_item_features
from seqrec.features.text import TextConfig, TextEncoder, item_texts
from seqrec.models.recommender import BACKBONES

log = logging.getLogger(__name__)

ABLATIONS = ("id_only", "text_only", "image_only", "concat", "product", "attention")
ONE_MODALITY = {"text_only": "text", "image_only": "image"}  # ablation -> the modality it keeps


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


# plain word TF-IDF (sklearn's defaults plus English stop words), as in the reference figures
# of the H&M subset's README (benchmarks/hm_baselines.py compares variants)
CONTENT_TFIDF = TextConfig(
    encoder="tfidf",
    ngram_range=(1, 1),
    min_df=1,
    max_features=0,
    sublinear_tf=False,
    svd_dim=0,
    column_names="no",
)


def tfidf_terms(items, columns: list[str], config: TextConfig = CONTENT_TFIDF):
    """[N, V] sparse, L2-normalised TF-IDF rows of the items' text columns: what the TF-IDF
    content KNN baselines compare."""
    texts = item_texts(items, columns)
    return sp.csr_matrix(TextEncoder(config).fit(texts).pipeline.transform(texts))


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
    modalities = prepared.features.modalities()
    for ablation in ablations:
        needed = ONE_MODALITY.get(ablation)
        if needed is not None and needed not in modalities:
            log.warning("ablation %s skipped: the items have no %s features", ablation, needed)
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


def cpu_model() -> str:
    """The processor's model name as /proc/cpuinfo gives it (else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table_columns(ks: list[int], with_cold: bool = True) -> list[str]:
    """The report's metric columns at the largest k; ``cold:recall@k`` only ``with_cold``."""
    k = max(ks)
    return (
        [f"ndcg@{k}", f"map@{k}", f"recall@{k}", f"hr@{k}", f"precision@{k}", f"f1@{k}", "mrr"]
        + ([f"cold:recall@{k}"] if with_cold else [])
        + [f"ndcg@{other}" for other in ks if other != k]
    )


def paired_rows(report: BenchReport) -> list[dict]:
    """Each model and ablation row against the baseline with the highest test main metric:
    ``{"name", "against", "differences": {metric: (mean, low, high)}}`` for the main metric,
    recall and cold recall (`seqrec.evaluate.paired_difference`). Empty without both kinds."""
    columns = table_columns(report.config.eval.ks)
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


# Everything above this line in ``<name>.md`` is written by `write_document`; whatever a person
# adds below it is kept when the report is written again (a rerun, or `seqrec report`).
NOTES_MARKER = "<!-- notes below this line are kept when seqrec writes this report again -->"


# what `render_markdown` reads from a report document ("paired" is optional)
REPORT_KEYS = ("name", "dataset", "command", "machine", "date", "seconds", "config", "rows")


def report_document(report: BenchReport, name: str) -> dict:
    """The report as plain data, the content of ``<name>.json``: the markdown and the chart are
    rendered from this alone (`render_markdown`, `write_document`)."""
    return {
        "name": name,
        "dataset": report.dataset,
        "command": report.command or " ".join(sys.argv),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
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
        "paired": paired_rows(report),
    }


def render_markdown(document: dict) -> str:
    """``<name>.md`` above the notes marker: header, table with CIs, paired differences. The
    cold-recall column is left out when no test target is cold (it would read nan)."""
    config, rows = document["config"], document["rows"]
    counts = rows[0]["counts"] if rows else {}
    any_cold = any(row["counts"].get("cold:users", 0) for row in rows)
    columns = table_columns(config["eval"]["ks"], with_cold=any_cold)
    main, recall = columns[0], columns[2]
    main_metric = config["eval"]["main_metric"]
    note = cold_items_note(counts)
    lines = [
        f"# {document['name']}: benchmark on `{document['dataset']}`",
        "",
        f"- command: `{document['command']}`",
        f"- machine: {document['machine']}",
        f"- date: {document['date']}; wall time {document['seconds']:.0f} s",
        f"- split: {config['split']['method']}; remove seen items: "
        f"{config['eval']['remove_seen']}; test users: {counts.get('users', 0)}, "
        f"users with a cold target: {counts.get('cold:users', 0)}",
    ]
    if "cold:items" in counts:  # reports older than the cold-item counts lack them
        lines.append(
            f"- cold items (no interaction in train + valid): {counts['cold:items']}, of them "
            f"test targets: {counts['cold:target_items']}" + (f" (warning: {note})" if note else "")
        )
    lines += [
        "- ranking over the whole catalogue; baselines fitted on train + valid, models trained "
        f"on train with the epoch chosen on validation ({main_metric})"
        + (
            ", then trained again from scratch on train + valid for that many epochs (refit)"
            if config["train"].get("refit", False)  # reports older than refit lack the key
            else ""
        )
        + "; 95% bootstrap CIs over users in brackets",
        "",
        f"| ranker | kind | valid {main_metric} | " + " | ".join(columns) + " | seconds | notes |",
        "|" + "---|" * (len(columns) + 5),
    ]
    nan = float("nan")
    for row in rows:
        cells = []
        for column in columns:
            value = row["test"].get(column, nan)
            if column in (main, recall, f"cold:{recall}"):
                low, high = row["ci"].get(column, (nan, nan))
                cells.append(f"{value:.4f} [{low:.4f}, {high:.4f}]")
            else:
                cells.append(f"{value:.4f}")
        valid = "" if row["valid_metric"] is None else f"{row['valid_metric']:.4f}"
        lines.append(
            f"| {row['name']} | {row['kind']} | {valid} | "
            + " | ".join(cells)
            + f" | {row['seconds']:.0f} | {row['notes']} |"
        )
    paired = document.get("paired") or []
    if paired:
        names = list(paired[0]["differences"])
        lines += [
            "",
            f"Paired differences against the best baseline on test {main} "
            f"({paired[0]['against']}): each",
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
    return "\n".join(lines) + "\n"


def write_document(document: dict, out_dir: Path) -> list[Path]:
    """``<name>.md`` (notes below the marker of an existing one kept), ``.json`` and ``.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = document["name"]
    md_path = out_dir / f"{name}.md"
    notes = NOTES_MARKER + "\n"  # the marker and what a person wrote below it
    if md_path.is_file():
        previous = md_path.read_text()
        if (at := previous.find(NOTES_MARKER)) >= 0:
            notes = previous[at:]
        else:  # without the marker, generated and written text cannot be told apart
            backup = md_path.with_name(f"{name}.md.bak")
            md_path.replace(backup)
            log.warning("%s had no notes marker; the previous file is kept as %s", md_path, backup)
    md_path.write_text(render_markdown(document) + "\n" + notes)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(document, indent=2))
    png_path = out_dir / f"{name}.png"
    _plot(document, png_path)
    return [md_path, json_path, png_path]


def write_report(report: BenchReport, out_dir: Path, name: str) -> list[Path]:
    return write_document(report_document(report, name), out_dir)


def rewrite_report(json_path: Path) -> list[Path]:
    """Render ``<name>.md`` and ``.png`` again from a report's JSON, in its folder (after a
    change to the report's format); the figures are the JSON's, nothing is rerun."""
    json_path = Path(json_path)
    if json_path.is_dir():
        reports = ", ".join(sorted(path.name for path in json_path.glob("*.json"))) or "none"
        raise DataError(f"{json_path} is a folder; give one report's JSON file (there: {reports})")
    if not json_path.is_file():
        raise DataError(f"report not found: {json_path}")
    try:
        document = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{json_path} is not valid JSON: {error}") from None
    missing = [key for key in REPORT_KEYS if key not in document]
    if missing:
        raise DataError(f"{json_path} is not a seqrec bench report: it lacks {', '.join(missing)}")
    return write_document(document, json_path.parent)


def _plot(document: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = table_columns(document["config"]["eval"]["ks"])[0]
    rows = document["rows"]
    names = [row["name"] for row in rows]
    values = np.array([row["test"].get(metric, np.nan) for row in rows])
    bounds = np.array([row["ci"].get(metric, (np.nan, np.nan)) for row in rows]).reshape(-1, 2)
    errors = np.abs(np.stack([values - bounds[:, 0], bounds[:, 1] - values]))
    colours = {"baseline": "#9e9e9e", "model": "#1f77b4", "ablation": "#ff7f0e"}
    fig, axis = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    axis.barh(names, values, xerr=errors, color=[colours[row["kind"]] for row in rows], capsize=3)
    axis.invert_yaxis()
    axis.set_xlabel(f"test {metric} (95% bootstrap CI)")
    axis.set_title(f"{document['dataset']}: full-catalogue ranking")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "ABLATIONS",
    "BenchReport",
    "BenchRow",
    "evaluate",
    "report_document",
    "rewrite_report",
    "run_bench",
    "write_report",
]
