"""`seqrec bench` with ``[ranker] enabled``: the two-stage ranker's rows and what explains them.

Rows, each evaluated like every other bench row (`seqrec.experiment.evaluate_model`, the
features reading each stage's fit table strictly before each cutoff):

- ``two-stage ranker`` (kind ``ranker``): fitted and evaluated as `seqrec train` does it
  (`seqrec.experiment.with_ranker`) on top of the sequence model the bench trained for the
  config's own model row: its test figures are the ones ``seqrec eval`` gives the bundle;
- ``ranker without image features`` / ``... text features`` / ``... the sequence model`` (kind
  ``ranker ablation``): the same with ``ranker.without`` extended by that family (``ranker with
  ... features`` / ``... the sequence model``, with it taken out of ``without``, for a family the
  config already goes without), skipped with a
  note when the data has no such family;
- ``candidates only`` (kind ``ranker ablation``): the merged candidate set without the learned
  ranker, in the order of `seqrec.ranker.candidates.interleaved` (best rank over the sources,
  ties by source order); its notes give the candidate recall.

Beside the rows, `RankerSummary` holds each candidate source's recall of the test targets at its
configured N, the merged set's recall, and the ranker's top features by gain (`seqrec.bench_report`
renders them).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from seqrec.bench import BenchRow
from seqrec.bundle_ranker import ranker_reads_model, ranker_scorer
from seqrec.config import ExperimentConfig
from seqrec.data.split import EvalTask
from seqrec.experiment import Outcome, Prepared, evaluate_model, held_out, with_ranker
from seqrec.models.recommender import SequenceRecommender, build_model
from seqrec.ranker.candidates import candidate_recall, dense_scores, generate, merge, n_of
from seqrec.ranker.config import RankerConfig
from seqrec.ranker.context import RankerContext
from seqrec.ranker.events import Events
from seqrec.ranker.fit import ranker_context, target_labels
from seqrec.ranker.nested import past_model
from seqrec.ranker.queries import Queries, queries_from_task
from seqrec.ranker.sources import enabled_sources
from seqrec.scoring import ModelScorer

log = logging.getLogger(__name__)

MAIN_ROW = "two-stage ranker"
ABLATION_ROWS = {  # ranker.without family -> row name
    "image": "ranker without image features",
    "text": "ranker without text features",
    "sequence": "ranker without the sequence model",
}
ADDED_ROWS = {  # a family the config's ranker goes without -> the row that adds it back
    "image": "ranker with image features",
    "text": "ranker with text features",
    "sequence": "ranker with the sequence model",
}
CANDIDATES_ROW = "candidates only"
QUERY_BATCH = 2048  # test queries whose candidates are held at once for the recall table
TOP_FEATURES = 20


@dataclass
class RankerSummary:
    """What the report shows beside the ranker rows (plain data, as in the report's JSON)."""

    sources: list[dict] = field(default_factory=list)  # {"source", "n", "recall", "only"}
    candidate_recall: float = float("nan")  # share of test targets among the merged candidates
    max_candidates: int = 0
    importance: dict[str, float] = field(default_factory=dict)  # top features by gain
    notes: list[str] = field(default_factory=list)  # skipped ablations, model provenance

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class CandidateOrder:
    """The merged candidates of ``config``'s sources as a full-catalogue scorer, without the
    learned ranker (`interleaved` order), every other item tied below them."""

    config: RankerConfig
    context: RankerContext

    def score_queries(self, queries: Queries) -> np.ndarray:  # [B, N]
        found = generate(queries, self.context, self.config)
        return dense_scores(found, len(queries), self.context.n_items)


def source_recall_table(
    config: RankerConfig, context: RankerContext, task: EvalTask
) -> tuple[list[dict], float]:
    """Each enabled source's recall of ``task``'s targets at its configured N (share of the
    targets among its candidates), the share of targets no other source proposes among the
    merged candidates, and the merged set's recall (`candidate_recall`)."""
    sources = enabled_sources(config, context)
    queries, targets = queries_from_task(task), task.targets()
    n_targets = len(task.target_items)
    found_by = dict.fromkeys((source.name for source in sources), 0.0)  # targets found
    only_by = dict.fromkeys(found_by, 0.0)
    merged_found = 0.0
    for start in range(0, len(queries), QUERY_BATCH):
        batch = queries.subset(slice(start, start + QUERY_BATCH))
        batch_targets = targets[start : start + QUERY_BATCH]
        in_batch = sum(len(items) for items in batch_targets)
        found = {s.name: s.candidates(batch, context, n_of(config, s)) for s in sources}
        for name, candidates in found.items():
            found_by[name] += candidate_recall(candidates, batch_targets) * in_batch
        merged = merge(len(batch), found, config.max_candidates)
        merged_found += candidate_recall(merged, batch_targets) * in_batch
        hit = target_labels(merged.rows, merged.items, batch_targets, context.n_items)  # [P]
        proposers = sum((ranks > 0).astype(np.int64) for ranks in merged.ranks.values())  # [P]
        for name, ranks in merged.ranks.items():
            only_by[name] += float((hit & (ranks > 0) & (proposers == 1)).sum())
    share = 1.0 / max(n_targets, 1)
    table = [
        {
            "source": source.name,
            "n": n_of(config, source),
            "recall": found_by[source.name] * share,
            "only": only_by[source.name] * share,
        }
        for source in sources
    ]
    return table, merged_found * share


def chosen_model(config: ExperimentConfig, prepared: Prepared, trained: Outcome):
    """The sequence model that chose the epoch on validation, trained on ``split.train`` only:
    the trained model itself, or rebuilt from its kept weights when it was then refit."""
    if trained.refit is None:
        return trained.model
    model = build_model(config.model, prepared.features, prepared.dataset.n_items)
    assert trained.train.state_dict is not None  # fit keeps the best epoch's weights
    model.load_state_dict(trained.train.state_dict)
    return model.cpu().eval()


def absent_families(prepared: Prepared) -> dict[str, str]:
    """Feature families these items lack, with the reason: an ablation of one would repeat the
    full ranker."""
    absent = {}
    if prepared.features.image is None:
        absent["image"] = "the items have no image features"
    if not prepared.dataset.schema.text_columns and prepared.features.text is None:
        absent["text"] = "the items have no text"
    return absent


def group_tasks(task: EvalTask) -> dict[str, EvalTask]:
    """``task`` split by target: "cold" keeps the targets never sold before their shopper's
    cutoff (in ``task.fit``; without cutoffs: never sold in it), "warm" the others; each keeps
    the shoppers with a target left."""
    timed = task.cutoffs is not None
    events = Events(task.fit, task.n_items, 1 if timed else None)  # only "before" is asked
    cutoffs = task.cutoffs if timed else np.full(len(task), events.t_max + 1)
    lengths = np.diff(task.target_indptr)  # [U]
    rows = np.repeat(np.arange(len(task)), lengths)  # [T] ascending
    items = np.asarray(task.target_items, dtype=np.int64)  # [T]
    cold = events.count(items, np.asarray(cutoffs)[rows]) == 0  # [T]
    out = {}
    for group, mask in (("cold", cold), ("warm", ~cold)):
        counts = np.bincount(rows[mask], minlength=len(task))  # [U]
        users = np.flatnonzero(counts > 0)
        part = task.subset(users)
        part.target_indptr = np.r_[0, np.cumsum(counts[users])].astype(np.int64)
        part.target_items = items[mask]
        out[group] = part
    return out


def warm_cold_notes(config: ExperimentConfig, scorers: dict, task: EvalTask) -> list[str]:
    """One note per scorer: its ndcg@12 on the cold and on the warm test targets
    (`group_tasks`)."""
    groups = group_tasks(task)
    metric = config.eval.main_metric
    notes = [
        f"warm/cold split of the test targets: cold = never sold before the shopper's cutoff "
        f"({len(groups['cold'].target_items)} targets of {len(groups['cold'])} shoppers), "
        f"warm = the rest ({len(groups['warm'].target_items)} of {len(groups['warm'])})"
    ]
    for name, scorer in scorers.items():
        figures = {
            group: evaluate_model(config, scorer, part, bootstrap=0).metrics[metric]
            for group, part in groups.items()
        }
        notes.append(f"{name}: {metric} cold {figures['cold']:.4f}, warm {figures['warm']:.4f}")
    return notes


@dataclass
class RankerBench:
    """The ranker rows of one bench run: its data and the sequence model trained for it
    (``chosen``: on ``split.train`` only; ``trained.model``: what test is scored with)."""

    config: ExperimentConfig
    prepared: Prepared
    trained: Outcome
    chosen: SequenceRecommender
    past: SequenceRecommender | None = None  # the nested model (`past_model`), trained once
    fitted: dict[str, Outcome] = field(default_factory=dict)  # row name -> its outcome

    def nested_model(self) -> tuple[SequenceRecommender, float]:
        """The nested sequence model shared by the rows that read the model, and the seconds
        its training took here (0 once trained)."""
        if self.past is not None:
            return self.past, 0.0
        begin = time.perf_counter()
        split, epochs = self.prepared.split, self.trained.train.best_epoch + 1
        n_items = self.prepared.dataset.n_items
        self.past = past_model(self.config, split, self.prepared.features, n_items, epochs)
        return self.past, time.perf_counter() - begin

    def ranker_row(
        self, name: str, kind: str, ranker_config: RankerConfig
    ) -> tuple[BenchRow, dict]:
        """The row of a ranker of ``ranker_config`` and its feature importance by gain."""
        begin = time.perf_counter()
        config = dataclasses.replace(self.config, ranker=ranker_config)
        past, seconds_past = None, 0.0
        if ranker_reads_model(ranker_config):
            past, seconds_past = self.nested_model()
        fitted = with_ranker(
            config, self.prepared, self.prepared.features, self.chosen, self.trained, past
        )
        assert fitted.ranker is not None and fitted.test is not None and fitted.valid is not None
        ranker = fitted.ranker
        notes = f"best iteration {ranker.best_iteration}"
        if ranker_config.without:
            notes += f", without {', '.join(ranker_config.without)}"
        if seconds_past:
            notes += f"; nested sequence model trained in {seconds_past:.0f} s"
        self.fitted[name] = fitted
        valid = fitted.valid.metrics[config.eval.main_metric]
        row = BenchRow(name, kind, fitted.test, valid, time.perf_counter() - begin, notes)
        return row, ranker.info.get("feature_importance", {})

    def candidates_row(self) -> tuple[BenchRow, RankerSummary]:
        """The merged candidates alone, with the sources' recall table (after the main row,
        whose image projection its candidates are read with)."""
        begin = time.perf_counter()
        config, split = self.config, self.prepared.split
        reads = ranker_reads_model(config.ranker)
        results, summary = {}, RankerSummary(max_candidates=config.ranker.max_candidates)
        prepared = self.prepared
        main = self.fitted[MAIN_ROW].ranker
        assert main is not None
        basis = main.image_basis  # None when the ranker reads the image vectors as encoded
        for stage, model in (("valid", self.chosen), ("test", self.trained.model)):
            task = held_out(config, split, stage)
            scorer = ModelScorer(model, config.model.max_len) if reads else None
            context = ranker_context(prepared.dataset, prepared.features, task.fit, scorer, basis)
            if stage == "test":
                summary.sources, summary.candidate_recall = source_recall_table(
                    config.ranker, context, task
                )
            bootstrap = 0 if stage == "valid" else None
            results[stage] = evaluate_model(
                config, CandidateOrder(config.ranker, context), task, bootstrap
            )
        notes = (
            f"candidate recall {summary.candidate_recall:.4f} (share of test targets among at "
            f"most {config.ranker.max_candidates} candidates); ordered by best source rank"
        )
        valid = results["valid"].metrics[config.eval.main_metric]
        seconds = time.perf_counter() - begin
        row = BenchRow(CANDIDATES_ROW, "ranker ablation", results["test"], valid, seconds, notes)
        return row, summary


def _test_scorers(bench: RankerBench, task: EvalTask) -> dict:
    """The main ranker and every baseline as scorers of the test ``task`` (baselines fitted on
    its fit table)."""
    from seqrec.bench import baseline_rankers  # seqrec.bench imports this module lazily

    prepared = bench.prepared
    fitted = bench.fitted[MAIN_ROW]
    assert fitted.ranker is not None
    model = ModelScorer(bench.trained.model, bench.config.model.max_len)
    scorers: dict[str, object] = {
        MAIN_ROW: ranker_scorer(fitted.ranker, prepared.dataset, prepared.features, task.fit, model)
    }
    for name, baseline in baseline_rankers(prepared).items():
        baseline.fit(task.fit, prepared.dataset.n_items)
        scorers[name] = baseline
    return scorers


def ablation_configs(
    config: RankerConfig, absent: dict[str, str]
) -> tuple[list[tuple[str, RankerConfig]], list[str]]:
    """The ablation rows' (name, ranker config) for ``config``, and notes on those skipped
    (``absent``: family -> why the data lacks it). A family ``config`` uses is left out; one it
    already goes without is added back."""
    rows, notes = [], []
    without = list(config.without or [])
    for family, name in ABLATION_ROWS.items():
        if family in absent:
            notes.append(f"{name}: skipped, {absent[family]}")
            log.warning("%s skipped: %s", name, absent[family])
            continue
        if family in without:
            name, changed = ADDED_ROWS[family], [other for other in without if other != family]
        else:
            changed = [*without, family]
        rows.append((name, dataclasses.replace(config, without=changed)))
    return rows, notes


def ranker_rows(
    config: ExperimentConfig,
    prepared: Prepared,
    trained: Outcome,
    add: Callable[[BenchRow], None],
) -> RankerSummary:
    """The ranker, its ablations and the candidate set alone on top of ``trained`` (the config's
    own sequence model, trained by the bench), each row handed to ``add`` when finished; returns
    what the report shows beside them."""
    bench = RankerBench(config, prepared, trained, chosen_model(config, prepared, trained))
    row, importance = bench.ranker_row(MAIN_ROW, "ranker", config.ranker)
    add(row)
    ablations, notes = ablation_configs(config.ranker, absent_families(prepared))
    for name, ablated in ablations:
        add(bench.ranker_row(name, "ranker ablation", ablated)[0])
    row, summary = bench.candidates_row()
    add(row)
    test_task = held_out(config, prepared.split, "test")
    notes += warm_cold_notes(config, _test_scorers(bench, test_task), test_task)
    top = sorted(importance.items(), key=lambda pair: -pair[1])[:TOP_FEATURES]
    summary.importance = {name: float(value) for name, value in top}
    summary.notes = notes
    return summary


__all__ = ["CandidateOrder", "RankerSummary", "ranker_rows", "source_recall_table"]
