import json

import numpy as np
import pytest

from seqrec import bench
from seqrec.bench import ablation_config, run_bench, write_report
from seqrec.config import apply_overrides
from seqrec.data.dataset import DataError
from seqrec.experiment import prepare


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


def test_the_markdown_is_rendered_from_the_json_and_keeps_notes_below_the_marker(
    demo_shop, tiny_config, tmp_path
):
    prepared = prepare(tiny_config, demo_shop, cache_dir=tmp_path / "cache")
    report = run_bench(tiny_config, prepared, models=[], ablations=[], cache_dir=tmp_path / "cache")
    md_path, json_path, png_path = write_report(report, tmp_path / "results", "tiny")
    written = md_path.read_text()
    assert written.rstrip("\n").endswith(bench.NOTES_MARKER)
    notes = "\nThe popularity row is a sanity check, not a target.\n"
    md_path.write_text(written + notes)
    # rendering again from the JSON alone gives the same table and keeps the person's notes
    png_path.unlink()
    assert bench.rewrite_report(json_path) == [md_path, json_path, png_path]
    assert md_path.read_text() == written + notes and png_path.exists()
    # so does a rerun of the bench into the same folder
    write_report(report, tmp_path / "results", "tiny")
    assert md_path.read_text().endswith(bench.NOTES_MARKER + "\n" + notes)
    # a report without the marker (hand-edited, or from an older seqrec) is kept beside it
    md_path.write_text("# tiny\n\nhand-written analysis\n")
    write_report(report, tmp_path / "results", "tiny")
    assert md_path.with_name("tiny.md.bak").read_text() == "# tiny\n\nhand-written analysis\n"
    assert md_path.read_text().rstrip("\n").endswith(bench.NOTES_MARKER)


def test_the_cold_column_is_left_out_when_no_test_target_is_cold(demo_shop, tiny_config, tmp_path):
    prepared = prepare(tiny_config, demo_shop, cache_dir=tmp_path / "cache")
    report = run_bench(tiny_config, prepared, models=[], ablations=[], include_baselines=True)
    document = bench.report_document(report, "tiny")
    for row in document["rows"]:
        row["counts"]["cold:users"] = 3
    assert "| cold:recall@12 |" in bench.render_markdown(document)
    for row in document["rows"]:
        row["counts"]["cold:users"] = 0
    table = bench.render_markdown(document)
    assert "cold:recall@12" not in table and "nan" not in table
    header = next(line for line in table.splitlines() if line.startswith("| ranker"))
    first_row = next(line for line in table.splitlines() if line.startswith("| popularity |"))
    assert header.count("|") == first_row.count("|")


def test_rewriting_a_file_that_is_not_a_bench_report_names_the_problem(tmp_path):
    with pytest.raises(DataError, match="report not found"):
        bench.rewrite_report(tmp_path / "missing.json")
    (tmp_path / "hm.json").write_text("{}")
    with pytest.raises(DataError, match=r"is a folder; give one report's JSON file \(there: hm"):
        bench.rewrite_report(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        bench.rewrite_report(broken)
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    with pytest.raises(DataError, match="not a seqrec bench report: it lacks name, dataset"):
        bench.rewrite_report(other)
    assert other.read_text() == '{"rows": []}'  # nothing the user gave is changed
