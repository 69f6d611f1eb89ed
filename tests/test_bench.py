import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cli import _bench_table
from seqrec import bench
from seqrec.bench import BenchRow, ablation_config, run_bench
from seqrec.bench_report import table_columns, write_report
from seqrec.config import apply_overrides
from seqrec.data.dataset import DataError
from seqrec.evaluate import EvalResult
from seqrec.experiment import prepare

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_ablation_configs_change_only_the_item_net(tiny_config):
    assert ablation_config(tiny_config, "id_only").model.item_net.modalities == []
    assert ablation_config(tiny_config, "text_only").model.item_net.modalities == ["text"]
    product = ablation_config(tiny_config, "product")
    assert product.model.item_net.fusion == "product" and product.train == tiny_config.train


def test_unknown_models_and_ablations_are_refused_naming_each():
    bench.check_runs(["gru", "mlp"], ["id_only", "attention"])  # known: no error
    with pytest.raises(DataError) as caught:
        bench.check_runs(["gru", "lstm"], ["text_only", "sum"])
    message = str(caught.value)
    assert "model 'lstm'" in message and "ablation 'sum'" in message
    assert "'gru'" not in message and "'text_only'" not in message


def test_bench_writes_markdown_json_and_chart(demo_shop, tiny_config, tmp_path, caplog):
    config = apply_overrides(tiny_config, {"train.epochs": 1})
    prepared = prepare(config, demo_shop, cache_dir=tmp_path / "cache")
    report = run_bench(
        config,
        prepared,
        models=["gru"],
        ablations=["id_only", "image_only"],
        cache_dir=tmp_path / "cache",
    )
    names = [row.name for row in report.rows]
    assert "popularity" in names and "TF-IDF content KNN" in names and "gru" in names
    # the model reads TF-IDF text; the pretrained-text baseline is encoded for the bench
    assert tiny_config.features.text.encoder == "tfidf"
    assert "text-embedding content KNN" in names
    assert "transformer: id_only" in names
    assert not any("image_only" in name for name in names)  # no image features: skipped
    assert "ablation image_only skipped: the items have no image features" in caplog.text
    paths = write_report(report, tmp_path / "results", "tiny")
    assert [path.suffix for path in paths] == [".md", ".json", ".png"]
    table = paths[0].read_text()
    assert "| popularity | baseline |" in table and "machine:" in table and "command:" in table
    counts = report.rows[0].test.counts
    assert (
        f"- cold items (no interaction in train + valid): {counts['cold:items']}, of them test "
        f"targets: {counts['cold:target_items']}" in table
    )
    rows = json.loads(paths[1].read_text())["rows"]
    assert {row["name"] for row in rows} == set(names)
    for row in rows:
        low, high = row["ci"]["ndcg@12"]
        assert low <= row["test"]["ndcg@12"] <= high
    assert paths[2].read_bytes()[:4] == b"\x89PNG"
    # paired differences: every model row against the baseline with the best test ndcg@12
    paired = json.loads(paths[1].read_text())["paired"]
    baseline_rows = [row for row in report.rows if row.kind == "baseline"]
    best = max(baseline_rows, key=lambda row: row.test.metrics["ndcg@12"])
    assert [entry["name"] for entry in paired] == [
        row.name for row in report.rows if row.kind != "baseline"
    ]
    for entry in paired:
        assert entry["against"] == best.name
        row = next(row for row in report.rows if row.name == entry["name"])
        mean, low, high = entry["differences"]["ndcg@12"]
        assert mean == pytest.approx(row.test.metrics["ndcg@12"] - best.test.metrics["ndcg@12"])
        assert low <= mean <= high
    assert f"Paired differences against the best baseline on test ndcg@12 ({best.name})" in table


def test_a_refit_bench_says_so_in_its_rows_and_header(demo_shop, tiny_config, tmp_path):
    config = apply_overrides(tiny_config, {"train.epochs": 2, "train.refit": True})
    prepared = prepare(config, demo_shop, cache_dir=tmp_path / "cache")
    report = run_bench(config, prepared, models=["gru"], ablations=[], include_baselines=False)
    (row,) = report.rows
    assert row.notes.endswith("refit on train + valid")
    assert np.isfinite(row.valid_metric)  # the choosing run's validation figure
    table = write_report(report, tmp_path / "results", "tiny")[0].read_text()
    assert "trained again from scratch on train + valid" in table


def test_the_text_embedding_baseline_is_skipped_when_no_sentence_model_loads(
    demo_shop, tiny_config, tmp_path, monkeypatch, caplog
):
    prepared = prepare(tiny_config, demo_shop, cache_dir=tmp_path / "cache")

    def unavailable(*args, **kwargs):
        raise DataError("cannot load the sentence model 'all-MiniLM-L6-v2'")

    monkeypatch.setattr(bench, "fit_item_features", unavailable)
    assert bench.sentence_vectors(prepared, tmp_path / "cache") is None
    assert "cannot load the sentence model" in caplog.text
    names = bench.baseline_rankers(prepared, tmp_path / "cache")
    assert "text-embedding content KNN" not in names and "TF-IDF content KNN" in names


def test_the_closing_table_prints_every_figure_whole_at_80_columns():
    """`seqrec bench` and `seqrec demo` end with this table; at 80 columns, and in a log file,
    every figure must read in full (it once read "0.0…" in every cell)."""
    document = json.loads((RESULTS / "hm.json").read_text())
    rows = [
        BenchRow(row["name"], row["kind"], EvalResult("test", (12,), metrics=row["test"]))
        for row in document["rows"]
    ]
    columns = table_columns([12])[:6]
    out = Console(width=80, file=io.StringIO())
    out.print(_bench_table(rows, columns, out))
    printed = out.file.getvalue()
    assert "…" not in printed
    assert max(len(line) for line in printed.splitlines()) <= 80
    lines = printed.splitlines()
    header = next(line for line in lines if "ndcg@12" in line)
    shown = [column for column in columns if f" {column} " in header]
    assert shown[:2] == ["ndcg@12", "map@12"]  # the headline columns come first
    assert f"{', '.join(columns[len(shown) :])}: in the report" in " ".join(printed.split())
    # one line with figures per row, in order (a long name wraps onto lines without figures)
    figure_lines = [line for line in lines if re.search(r"│ +\d\.\d{4} │", line)]
    assert len(figure_lines) == len(rows)
    for row, line in zip(rows, figure_lines, strict=True):
        assert line.startswith(f"│ {row.name.split()[0]}")
        cells = [cell.strip() for cell in line.strip("│").split("│")][1:]
        assert cells == [f"{row.test.metrics[column]:.4f}" for column in shown], row.name
