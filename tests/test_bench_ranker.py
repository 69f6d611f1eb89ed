"""`seqrec bench` with ``[ranker] enabled``: the ranker's rows, its ablations, the candidate
sources' recall and the report sections they fill."""

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from seqrec.bench import run_bench
from seqrec.bench_report import render_markdown, report_document, write_report
from seqrec.config import apply_overrides
from seqrec.data.split import EvalTask, make_task
from seqrec.experiment import prepare
from seqrec.ranker import bench_rows
from seqrec.ranker.candidates import Candidates
from seqrec.ranker.config import RankerConfig
from seqrec.ranker.context import RankerContext
from seqrec.ranker.events import Events

SMALL_RANKER = {
    "ranker.enabled": True,
    "ranker.lightgbm.n_estimators": 20,
    "ranker.lightgbm.num_leaves": 7,
    "ranker.lightgbm.min_data_in_leaf": 5,
    "ranker.lightgbm.early_stopping_rounds": 5,
    "ranker.lightgbm.threads": 1,
    "ranker.train_baskets": 2,
}


@pytest.fixture(scope="module")
def prepared_shop(demo_shop, tiny_config, tmp_path_factory):
    """(config with a small ranker, prepared tiny demo shop, feature cache)."""
    cache = tmp_path_factory.mktemp("cache")
    config = apply_overrides(tiny_config, {"train.epochs": 1, "model.model": "mlp", **SMALL_RANKER})
    return config, prepare(config, demo_shop, cache_dir=cache), cache


@pytest.fixture(scope="module")
def ranker_bench(prepared_shop):
    """One bench of the tiny demo shop with a small ranker: baselines, the config's model row
    (the model the ranker reads) and the ranker's rows."""
    config, prepared, cache = prepared_shop
    return run_bench(config, prepared, models=["mlp"], ablations=[], cache_dir=cache)


def test_the_bench_adds_the_ranker_its_ablations_and_the_candidates_alone(ranker_bench):
    kinds = {row.name: row.kind for row in ranker_bench.rows}
    assert kinds["two-stage ranker"] == "ranker"
    assert kinds["ranker without text features"] == "ranker ablation"
    assert kinds["ranker without the sequence model"] == "ranker ablation"
    assert kinds["candidates only"] == "ranker ablation"
    # the tiny config reads no images: that ablation is skipped, with a note saying why
    assert "ranker without image features" not in kinds
    assert any("image features: skipped" in note for note in ranker_bench.ranker["notes"])
    for row in ranker_bench.rows:
        if row.kind.startswith("ranker"):
            assert np.isfinite(row.test.metrics["ndcg@12"]), row.name
            assert np.isfinite(row.valid_metric), row.name
            low, high = row.test.ci["ndcg@12"]
            assert low <= row.test.metrics["ndcg@12"] <= high
    assert (
        "candidate recall"
        in next(r for r in ranker_bench.rows if r.name == "candidates only").notes
    )


def test_each_ranker_row_is_paired_with_the_best_baseline_and_ablations_with_the_ranker(
    ranker_bench,
):
    document = report_document(ranker_bench, "tiny")
    baselines = [row for row in ranker_bench.rows if row.kind == "baseline"]
    best = max(baselines, key=lambda row: row.test.metrics["ndcg@12"])
    by_name = {row.name: row for row in ranker_bench.rows}
    paired = {entry["name"]: entry for entry in document["paired"]}
    for name in ("two-stage ranker", "ranker without text features", "candidates only"):
        assert paired[name]["against"] == best.name
        mean, low, high = paired[name]["differences"]["ndcg@12"]
        expected = by_name[name].test.metrics["ndcg@12"] - best.test.metrics["ndcg@12"]
        assert mean == pytest.approx(expected) and low <= mean <= high
    # the sequence model rows and the ablations, each minus the full ranker
    ablations = {entry["name"]: entry for entry in document["paired_ranker"]}
    models = {row.name for row in ranker_bench.rows if row.kind == "model"}
    assert models and set(ablations) == models | {
        row.name for row in ranker_bench.rows if row.kind == "ranker ablation"
    }
    for name in ("candidates only", *models):
        mean = ablations[name]["differences"]["ndcg@12"][0]
        expected = (
            by_name[name].test.metrics["ndcg@12"]
            - by_name["two-stage ranker"].test.metrics["ndcg@12"]
        )
        assert ablations[name]["against"] == "two-stage ranker"
        assert mean == pytest.approx(expected)


def test_the_report_has_the_candidate_sources_table_and_the_importance_panel(
    ranker_bench, tmp_path
):
    md_path, json_path, png_path = write_report(ranker_bench, tmp_path, "tiny")
    text = md_path.read_text()
    assert "### Candidate sources" in text
    sources = ranker_bench.ranker["sources"]
    assert {row["source"] for row in sources} >= {"repeats", "trending"}
    for row in sources:
        assert 0.0 <= row["only"] <= row["recall"] <= 1.0
        assert f"| {row['source']} | {row['n']} | {row['recall']:.4f} |" in text
    recall = ranker_bench.ranker["candidate_recall"]
    assert max(row["recall"] for row in sources) <= recall <= 1.0  # the union finds more
    assert f"| merged | {ranker_bench.ranker['max_candidates']} | {recall:.4f} |" in text
    assert "the ablations against the full ranker (two-stage ranker)" in text
    importance = ranker_bench.ranker["importance"]
    assert 0 < len(importance) <= 20
    assert list(importance.values()) == sorted(importance.values(), reverse=True)
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    # rendered again from the JSON alone: the same markdown
    assert text.startswith(render_markdown(json.loads(json_path.read_text())))


def test_a_bench_without_a_ranker_keeps_the_old_rows_and_document(prepared_shop, ranker_bench):
    config, prepared, cache = prepared_shop
    config = apply_overrides(config, {"ranker.enabled": False})
    report = run_bench(config, prepared, models=[], ablations=[], cache_dir=cache)
    baselines = [row.name for row in ranker_bench.rows if row.kind == "baseline"]
    assert [row.name for row in report.rows] == baselines and report.ranker is None
    document = report_document(report, "tiny")
    assert "ranker" not in document and "paired_ranker" not in document
    assert "Two-stage ranker" not in render_markdown(document)


@dataclass
class FixedSource:
    """A candidate source proposing fixed (query row, item) pairs, whatever the queries."""

    name: str
    pairs: list[tuple[int, int]]

    def candidates(self, queries, context, n):
        rows, items = np.array(self.pairs).T
        return Candidates(rows, items, np.ones(len(rows), dtype=np.float32))


def test_each_source_recall_counts_the_targets_it_proposes_and_those_only_it_proposes(
    monkeypatch,
):
    task = EvalTask(
        stage="test",
        users=np.array([10, 11]),
        history_indptr=np.array([0, 1, 2]),
        history_items=np.array([0, 1]),
        target_indptr=np.array([0, 2, 3]),
        target_items=np.array([4, 5, 6]),
        fit=pd.DataFrame({"user_id": [10, 11], "item_idx": [0, 1], "timestamp": [0, 0]}),
        n_items=10,
        history_times=np.array([0, 0]),
        cutoffs=np.array([1, 1]),
    )
    sources = [
        FixedSource("repeats", [(0, 4), (1, 6), (1, 9)]),
        FixedSource("trending", [(0, 4), (0, 5)]),
    ]
    monkeypatch.setattr(bench_rows, "enabled_sources", lambda config, context: sources)
    context = RankerContext(n_items=10, events=Events(task.fit, 10, day=1))
    table, merged = bench_rows.source_recall_table(RankerConfig(), context, task)
    assert table == [
        {"source": "repeats", "n": RankerConfig().sources.repeats, "recall": 2 / 3, "only": 1 / 3},
        {
            "source": "trending",
            "n": RankerConfig().sources.trending,
            "recall": 2 / 3,
            "only": 1 / 3,
        },
    ]
    assert merged == 1.0


def test_warm_and_cold_targets_split_by_sales_before_each_cutoff():
    fit = pd.DataFrame(
        {"user_id": ["a", "b", "b", "c"], "item_idx": [1, 1, 2, 4], "timestamp": [1, 1, 5, 1]}
    )
    held = pd.DataFrame(
        {"user_id": ["a", "a", "b", "c"], "item_idx": [2, 3, 1, 2], "timestamp": [10, 10, 6, 4]}
    )
    groups = bench_rows.group_tasks(make_task("test", fit, held, n_items=6))
    # a: 2 sold at 5 < 10 (warm), 3 never (cold); b: 1 warm; c: 2 sells only at 5 >= 4 (cold)
    assert groups["cold"].users.tolist() == ["a", "c"]
    assert [t.tolist() for t in groups["cold"].targets()] == [[3], [2]]
    assert groups["warm"].users.tolist() == ["a", "b"]
    assert [t.tolist() for t in groups["warm"].targets()] == [[2], [1]]
    assert groups["cold"].cutoffs.tolist() == [10, 4]


def test_an_ablation_adds_back_a_family_the_config_goes_without():
    config = RankerConfig(without=["image"])
    rows, notes = bench_rows.ablation_configs(config, absent={"sequence": "no model"})
    by_name = {name: ablated.without for name, ablated in rows}
    assert by_name == {
        "ranker with image features": [],
        "ranker without text features": ["image", "text"],
    }
    assert notes == ["ranker without the sequence model: skipped, no model"]
