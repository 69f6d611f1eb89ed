"""Bench reports on disk: the document, its markdown and its chart.

A bench report is one document (`report_document`: every figure, the command, the machine, the
date) written as ``<name>.json``. ``<name>.md`` (table with 95% bootstrap CIs and the paired
differences against the best baseline) and ``<name>.png`` (bar chart with error bars) are
rendered from that document alone, so `rewrite_report` renders them again from the JSON without
rerunning anything. Notes a person adds below `seqrec.report.NOTES_MARKER` in the ``.md`` are
kept when the report is written again.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqrec.config import config_to_dict
from seqrec.constraints import read_document
from seqrec.data.dataset import DataError
from seqrec.evaluate import cold_items_note, paired_difference
from seqrec.report import machine, markdown_table, utc_now, write_keeping_notes

if TYPE_CHECKING:
    from seqrec.bench import BenchReport, BenchRow

log = logging.getLogger(__name__)

# what `render_markdown` reads from a report document ("paired" is optional)
REPORT_KEYS = ("name", "dataset", "command", "machine", "date", "seconds", "config", "rows")

# --- the bench report document ------------------------------------------------------------------


def table_columns(ks: list[int], with_cold: bool = True) -> list[str]:
    """The report's metric columns at the largest k; ``cold:recall@k`` only ``with_cold``."""
    k = max(ks)
    return (
        [f"ndcg@{k}", f"map@{k}", f"recall@{k}", f"hr@{k}", f"precision@{k}", f"f1@{k}", "mrr"]
        + ([f"cold:recall@{k}"] if with_cold else [])
        + [f"ndcg@{other}" for other in ks if other != k]
    )


def paired_rows(report: BenchReport) -> list[dict]:
    """Each row that is not a baseline (models, ablations, the two-stage ranker and its
    ablations) against the baseline with the highest test main metric:
    ``{"name", "against", "differences": {metric: (mean, low, high)}}`` for the main metric,
    recall and cold recall (`seqrec.evaluate.paired_difference`). Empty without both kinds."""
    columns = table_columns(report.config.eval.ks)
    baseline_rows = [row for row in report.rows if row.kind == "baseline"]
    model_rows = [row for row in report.rows if row.kind != "baseline"]
    if not baseline_rows or not model_rows:
        return []
    main = columns[0]
    best = max(baseline_rows, key=lambda row: np.nan_to_num(row.test.metrics[main], nan=-1.0))
    return [_paired(row, best, columns, report.config.eval.bootstrap) for row in model_rows]


def ranker_paired_rows(report: BenchReport) -> list[dict]:
    """Each sequence model row and each ranker ablation row against the full two-stage ranker
    (the first ``ranker`` row), as `paired_rows`: whether the ranker beats the models alone, and
    what leaving out image or text features, the sequence model or the learned ranker changes.
    Empty without a ranker row."""
    columns = table_columns(report.config.eval.ks)
    full = next((row for row in report.rows if row.kind == "ranker"), None)
    others = [row for row in report.rows if row.kind in ("model", "ranker ablation")]
    if full is None:
        return []
    return [_paired(row, full, columns, report.config.eval.bootstrap) for row in others]


def _paired(row: BenchRow, against: BenchRow, columns: list[str], bootstrap: int) -> dict:
    """``row`` minus ``against`` on the main metric, recall and (when ``against`` has cold
    users) cold recall, with paired bootstrap CIs."""
    main, recall, cold = columns[0], columns[2], f"cold:{columns[2]}"
    return {
        "name": row.name,
        "against": against.name,
        "differences": {
            metric: paired_difference(row.test, against.test, metric, bootstrap)
            for metric in (main, recall, cold)
            if metric != cold or against.test.counts.get("cold:users", 0)
        },
    }


def report_document(report: BenchReport, name: str) -> dict:
    """The report as plain data, the content of ``<name>.json``: the markdown and the chart are
    rendered from this alone (`render_markdown`, `write_document`)."""
    document = {
        "name": name,
        "dataset": report.dataset,
        "command": report.command or shlex.join(sys.argv),
        "machine": machine(),
        "date": utc_now(),
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
    if report.ranker is not None:  # [ranker] enabled: its sources, importance, ablations
        document["ranker"] = report.ranker
        document["paired_ranker"] = ranker_paired_rows(report)
    return document


# --- rendering: markdown and chart --------------------------------------------------------------


def render_markdown(document: dict) -> str:
    """``<name>.md`` above the notes marker: header, table with CIs, paired differences. The
    cold-recall column is left out when no test target is cold (it would read nan)."""
    rows = document["rows"]
    any_cold = any(row["counts"].get("cold:users", 0) for row in rows)
    columns = table_columns(document["config"]["eval"]["ks"], with_cold=any_cold)
    lines = _header_lines(document)
    lines += ["", *_results_table(document, columns)]
    paired = document.get("paired") or []
    if paired:
        lines += ["", *_paired_table(paired, columns[0])]
    if document.get("ranker"):
        lines += ["", *_ranker_lines(document, columns[0])]
    return "\n".join(lines) + "\n"


def _header_lines(document: dict) -> list[str]:
    """Title, command, machine, date, split and protocol, as a list."""
    config, rows = document["config"], document["rows"]
    counts = rows[0]["counts"] if rows else {}
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
    refit = ""
    if config["train"].get("refit", False):  # reports older than refit lack the key
        refit = ", then trained again from scratch on train + valid for that many epochs (refit)"
    lines.append(
        "- ranking over the whole catalogue; baselines fitted on train + valid, models trained "
        f"on train with the epoch chosen on validation ({config['eval']['main_metric']})"
        f"{refit}; 95% bootstrap CIs over users in brackets"
    )
    return lines


def _results_table(document: dict, columns: list[str]) -> list[str]:
    """One row per ranker; the main metric, recall and cold recall with their CIs."""
    main, recall = columns[0], columns[2]
    with_ci = (main, recall, f"cold:{recall}")
    nan = float("nan")
    rows = []
    for row in document["rows"]:
        cells = []
        for column in columns:
            value = row["test"].get(column, nan)
            if column in with_ci:
                low, high = row["ci"].get(column, (nan, nan))
                cells.append(f"{value:.4f} [{low:.4f}, {high:.4f}]")
            else:
                cells.append(f"{value:.4f}")
        valid = "" if row["valid_metric"] is None else f"{row['valid_metric']:.4f}"
        rows.append(
            [row["name"], row["kind"], valid, *cells, f"{row['seconds']:.0f}", row["notes"]]
        )
    main_metric = document["config"]["eval"]["main_metric"]
    header = ["ranker", "kind", f"valid {main_metric}", *columns, "seconds", "notes"]
    return markdown_table(header, rows)


def _paired_table(paired: list[dict], main: str) -> list[str]:
    """Each model row minus the best baseline, with the paired bootstrap CI."""
    return [
        f"Paired differences against the best baseline on test {main} "
        f"({paired[0]['against']}): each",
        "row's value minus the baseline's over the same users, 95% paired bootstrap CI",
        "(users resampled together for both rankers); a CI that excludes 0 separates them.",
        "",
        *_differences(paired),
    ]


def _differences(paired: list[dict]) -> list[str]:
    """The table of `paired_rows` entries: each row's differences with their CIs."""
    names = list(paired[0]["differences"])
    rows = [
        [entry["name"], *(_difference(*values) for values in entry["differences"].values())]
        for entry in paired
    ]
    return markdown_table(["ranker", *(f"{column} difference" for column in names)], rows)


def _difference(mean: float, low: float, high: float) -> str:
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def _ranker_lines(document: dict, main: str) -> list[str]:
    """The two-stage ranker's sections: its ablations against it (paired), the candidate
    sources' recall of the test targets, notes, and the features it splits on most."""
    ranker, paired = document["ranker"], document.get("paired_ranker") or []
    lines = ["## Two-stage ranker"]
    if paired:
        lines += [
            "",
            f"The sequence models and the ablations against the full ranker "
            f"({paired[0]['against']}) on test {main}: each row's value minus the ranker's over "
            "the same users, 95% paired bootstrap CI (below 0: the ranker is better).",
            "",
            *_differences(paired),
        ]
    table = [
        [r["source"], r["n"], f"{r['recall']:.4f}", f"{r['only']:.4f}"] for r in ranker["sources"]
    ]
    table.append(["merged", ranker["max_candidates"], f"{ranker['candidate_recall']:.4f}", ""])
    lines += [
        "",
        "### Candidate sources",
        "",
        "Share of the test targets each source proposes alone among its N candidates per "
        "shopper (recall@N), and the share no other source proposes; the merged set keeps at "
        f"most {ranker['max_candidates']} candidates per shopper.",
        "",
        *markdown_table(["source", "N", "recall@N", "only this source"], table),
    ]
    if ranker.get("notes"):
        lines += ["", *(f"- {note}" for note in ranker["notes"])]
    if ranker.get("importance"):
        top = ", ".join(f"{name} ({value:.0f})" for name, value in ranker["importance"].items())
        count = len(ranker["importance"])
        lines += ["", f"Features by total gain in the ranker's trees (top {count}): {top}."]
    return lines


def _plot(document: dict, path: Path) -> None:
    """A horizontal bar per ranker: test main metric with its 95% CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = table_columns(document["config"]["eval"]["ks"])[0]
    rows = document["rows"]
    names = [row["name"] for row in rows]
    values = np.array([row["test"].get(metric, np.nan) for row in rows])  # [R]
    bounds = np.array([row["ci"].get(metric, (np.nan, np.nan)) for row in rows]).reshape(-1, 2)
    errors = np.abs(np.stack([values - bounds[:, 0], bounds[:, 1] - values]))  # [2, R]
    kinds = ("baseline", "model", "ablation", "ranker", "ranker ablation")
    colours = dict(zip(kinds, ("#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c", "#98df8a"), strict=True))
    importance = (document.get("ranker") or {}).get("importance") or {}
    height = 0.45 * len(names) + 1.5
    if importance:  # a second panel: the ranker's features by gain
        fig, (axis, right) = plt.subplots(
            1, 2, figsize=(15, max(height, 0.3 * len(importance) + 1.5))
        )
        _importance_panel(right, importance)
    else:
        fig, axis = plt.subplots(figsize=(8, height))
    axis.barh(names, values, xerr=errors, color=[colours[row["kind"]] for row in rows], capsize=3)
    axis.invert_yaxis()
    axis.set_xlabel(f"test {metric} (95% bootstrap CI)")
    axis.set_title(f"{document['dataset']}: full-catalogue ranking")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _importance_panel(axis, importance: dict[str, float]) -> None:
    """Horizontal bars: the ranker's top features by total gain, largest on top."""
    axis.barh(list(importance), list(importance.values()), color="#2ca02c")
    axis.invert_yaxis()
    axis.set_xlabel("total gain in the ranker's trees")
    axis.set_title(f"two-stage ranker: top {len(importance)} features")


# --- writing ------------------------------------------------------------------------------------


def write_document(document: dict, out_dir: Path) -> list[Path]:
    """``<name>.md`` (notes below the marker of an existing one kept), ``.json`` and ``.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = document["name"]
    md_path = out_dir / f"{name}.md"
    write_keeping_notes(md_path, render_markdown(document))
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(document, indent=2))
    png_path = out_dir / f"{name}.png"
    _plot(document, png_path)
    return [md_path, json_path, png_path]


def write_report(report: BenchReport, out_dir: Path, name: str) -> list[Path]:
    """A finished bench run as ``<name>.md``, ``.json`` and ``.png`` in ``out_dir``."""
    return write_document(report_document(report, name), out_dir)


def rewrite_report(json_path: Path) -> list[Path]:
    """Render ``<name>.md`` and ``.png`` again from a report's JSON, in its folder (after a
    change to the report's format); the figures are the JSON's, nothing is rerun."""
    json_path = Path(json_path)
    if json_path.is_dir():
        reports = ", ".join(sorted(path.name for path in json_path.glob("*.json"))) or "none"
        raise DataError(f"{json_path} is a folder; give one report's JSON file (there: {reports})")
    document = read_document(json_path, "report", "JSON", DataError)
    missing = [key for key in REPORT_KEYS if key not in document]
    if missing:
        raise DataError(f"{json_path} is not a seqrec bench report: it lacks {', '.join(missing)}")
    return write_document(document, json_path.parent)
