"""The README's results table quotes the committed bench reports: each figure must be the JSON's."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def results_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Results so far") :]
    section = section[: section.index("\n## ")]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_the_readme_results_table_quotes_the_committed_reports():
    rows = results_rows()
    assert len(rows) >= 4
    for _, row_name, what, headline, second, report in rows:
        document = json.loads(
            (ROOT / "benchmarks/results" / report.strip("`")).with_suffix(".json").read_text()
        )
        by_name = {row["name"]: row for row in document["rows"]}
        row = by_name[row_name.strip("`")]
        metric, value, low, high = re.fullmatch(r"(\S+) (\S+) \[(\S+), (\S+)\]", headline).groups()
        metric = metric.lower()
        assert f"{row['test'][metric]:.4f}" == value, (row_name, metric)
        assert [f"{bound:.4f}" for bound in row["ci"][metric]] == [low, high], (row_name, metric)
        other, other_value = second.split(" ")
        assert f"{row['test'][other.lower()]:.4f}" == other_value, (row_name, other)
        if what == "best baseline":
            baselines = [entry for entry in document["rows"] if entry["kind"] == "baseline"]
            assert row is max(baselines, key=lambda entry: entry["test"][metric])
