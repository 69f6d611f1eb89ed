"""Bench reports on disk (markdown, JSON, chart) and the helpers every report shares."""

import re

import pytest

from seqrec import report
from seqrec.bench import run_bench
from seqrec.bench_report import render_markdown, report_document, rewrite_report, write_report
from seqrec.data.dataset import DataError
from seqrec.experiment import prepare
from seqrec.report import NOTES_MARKER, code_version, markdown_table


def test_a_markdown_table_has_a_header_a_rule_and_one_line_per_row():
    lines = markdown_table(["ranker", "ndcg@12"], [["popularity", "0.0056"], ["gru", 0.5]])
    assert lines == [
        "| ranker | ndcg@12 |",
        "|---|---|",
        "| popularity | 0.0056 |",
        "| gru | 0.5 |",
    ]


def test_the_machine_line_names_the_cpu_cores_python_and_the_versions_given():
    facts = {"cpu": "AMD EPYC", "cores": 2, "python": "3.11.7", "torch": "2.14.1"}
    assert report.machine_line(facts) == "AMD EPYC, 2 cores, Python 3.11.7, torch 2.14.1"
    line = report.machine(numpy="2.4.6")
    assert line.startswith(report.cpu_model()) and line.endswith(", numpy 2.4.6")
    assert f", {report.usable_cores()} cores, Python " in line


def test_notes_below_the_marker_are_kept_and_a_file_without_it_is_backed_up(tmp_path):
    path = tmp_path / "analysis.md"
    report.write_keeping_notes(path, "# analysis\n\n| a |\n")
    assert path.read_text() == "# analysis\n\n| a |\n\n" + NOTES_MARKER + "\n"
    path.write_text(path.read_text() + "The first run was on a busy machine.\n")
    report.write_keeping_notes(path, "# analysis\n\n| b |\n")
    assert path.read_text() == (
        "# analysis\n\n| b |\n\n" + NOTES_MARKER + "\nThe first run was on a busy machine.\n"
    )
    path.write_text("hand-written\n")
    report.write_keeping_notes(path, "# analysis\n")
    assert path.with_name("analysis.md.bak").read_text() == "hand-written\n"
    assert path.read_text() == "# analysis\n\n" + NOTES_MARKER + "\n"


def test_the_markdown_is_rendered_from_the_json_and_keeps_notes_below_the_marker(
    demo_shop, tiny_config, tmp_path
):
    prepared = prepare(tiny_config, demo_shop, cache_dir=tmp_path / "cache")
    bench_report = run_bench(
        tiny_config, prepared, models=[], ablations=[], cache_dir=tmp_path / "cache"
    )
    md_path, json_path, png_path = write_report(bench_report, tmp_path / "results", "tiny")
    written = md_path.read_text()
    assert written.rstrip("\n").endswith(NOTES_MARKER)
    notes = "\nThe popularity row is a sanity check, not a target.\n"
    md_path.write_text(written + notes)
    # rendering again from the JSON alone gives the same table and keeps the person's notes
    png_path.unlink()
    assert rewrite_report(json_path) == [md_path, json_path, png_path]
    assert md_path.read_text() == written + notes and png_path.exists()
    # so does a rerun of the bench into the same folder
    write_report(bench_report, tmp_path / "results", "tiny")
    assert md_path.read_text().endswith(NOTES_MARKER + "\n" + notes)
    # a report without the marker (hand-edited, or from an older seqrec) is kept beside it
    md_path.write_text("# tiny\n\nhand-written analysis\n")
    write_report(bench_report, tmp_path / "results", "tiny")
    assert md_path.with_name("tiny.md.bak").read_text() == "# tiny\n\nhand-written analysis\n"
    assert md_path.read_text().rstrip("\n").endswith(NOTES_MARKER)


def test_the_cold_column_is_left_out_when_no_test_target_is_cold(demo_shop, tiny_config, tmp_path):
    prepared = prepare(tiny_config, demo_shop, cache_dir=tmp_path / "cache")
    bench_report = run_bench(tiny_config, prepared, models=[], ablations=[])
    document = report_document(bench_report, "tiny")
    for row in document["rows"]:
        row["counts"]["cold:users"] = 3
    assert "| cold:recall@12 |" in render_markdown(document)
    for row in document["rows"]:
        row["counts"]["cold:users"] = 0
    table = render_markdown(document)
    assert "cold:recall@12" not in table and "nan" not in table
    header = next(line for line in table.splitlines() if line.startswith("| ranker"))
    first_row = next(line for line in table.splitlines() if line.startswith("| popularity |"))
    assert header.count("|") == first_row.count("|")


def test_rewriting_a_file_that_is_not_a_bench_report_names_the_problem(tmp_path):
    with pytest.raises(DataError, match="report not found"):
        rewrite_report(tmp_path / "missing.json")
    (tmp_path / "hm.json").write_text("{}")
    with pytest.raises(DataError, match=r"is a folder; give one report's JSON file \(there: hm"):
        rewrite_report(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        rewrite_report(broken)
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    with pytest.raises(DataError, match="not a seqrec bench report: it lacks name, dataset"):
        rewrite_report(other)
    assert other.read_text() == '{"rows": []}'  # nothing the user gave is changed


def test_code_version_names_the_package_and_the_checkouts_commit():
    """The seqrec version, then the commit when it runs from the project's git checkout."""
    assert re.fullmatch(r"seqrec \S+( at [0-9a-f]{12}(\+changes)?)?", code_version())
