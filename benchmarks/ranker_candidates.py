"""Candidate recall of the two-stage ranker's sources on the validation baskets: how large N per
source and the merged cap should be, and what co-purchase window finds most.

    python benchmarks/ranker_candidates.py --config experiments/hm_ranker.toml \
        --data ../shared/data/hm --out benchmarks/results/hm_ranker_candidates

Everything reads the validation task only (context over ``split.train``, each query the log
before its cutoff); the test split is never read. Sources that read the sequence model are left
out (they need a trained model). Reported:

- recall@N of each source for several N (share of the validation targets among its top N), on
  all targets and on the targets never sold before the cutoff ("unsold");
- co-purchase by window (days before the refit period) and unit (shopper, basket);
- the merged set's recall at several sizes and caps, with the seconds candidates and features
  take per 1,000 queries (the cost the ranker pays at training and serving time);
- with ``--fit``: the valid ndcg@12 of a ranker without the sequence model fitted with each
  merged configuration (past baskets, early stopping on validation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from seqrec.config import load_config
from seqrec.experiment import evaluate_model, prepare
from seqrec.ranker import candidates as cands
from seqrec.ranker.candidates import source_ranks
from seqrec.ranker.config import RankerConfig, SourceSizes
from seqrec.ranker.features import feature_matrix
from seqrec.ranker.fit import fit_ranker, ranker_context, target_labels
from seqrec.ranker.queries import queries_from_task
from seqrec.ranker.scorer import RankerScorer
from seqrec.ranker.sources import CoPurchase, enabled_sources

SIZES_N = (10, 20, 30, 50, 100, 200)
WINDOWS = (0, 28, 90)
UNITS = ("shopper", "basket")


def recall_at(found, targets, unsold, n_items: int, sizes=SIZES_N) -> dict[int, tuple]:
    """{N: (recall, unsold recall)} of one source's candidates cut at each N by its rank."""
    ranks = source_ranks(found)
    hit = target_labels(found.rows, found.items, targets, n_items)  # [C]
    is_unsold = np.isin(found.rows * n_items + found.items, unsold)  # [C]
    n_targets = sum(len(t) for t in targets)
    n_unsold = len(unsold)
    out = {}
    for n in sizes:
        top = ranks <= n
        out[n] = (
            float((hit & top).sum() / max(n_targets, 1)),
            float((hit & top & is_unsold).sum() / max(n_unsold, 1)),
        )
    return out


def unsold_targets(queries, targets, context) -> np.ndarray:
    """Keys (row * N + item) of the targets never sold before their query's cutoff."""
    rows = np.repeat(np.arange(len(targets)), [len(t) for t in targets])
    items = np.concatenate(targets).astype(np.int64)
    sold = context.events.count(items, queries.cutoffs[rows])
    return np.sort(rows[sold == 0] * context.n_items + items[sold == 0])


def merged_configs(base: RankerConfig) -> dict[str, RankerConfig]:
    """The merged configurations compared: the config's, without the new-item sources, every
    size doubled (new-item sources 100 / 40, cap 400), and the config's with co-purchase over
    the last 90 days within baskets."""
    sizes = base.sources
    doubled = SourceSizes(**{k: 2 * v for k, v in dataclasses.asdict(sizes).items()})
    return {
        "config": base,
        "config without new-item sources": dataclasses.replace(
            base, sources=dataclasses.replace(sizes, new_tfidf=0, new_image=0)
        ),
        "x2 sizes, new_tfidf 100, new_image 40, cap 400": dataclasses.replace(
            base,
            max_candidates=400,
            sources=dataclasses.replace(doubled, new_tfidf=100, new_image=40),
        ),
        "config, co-purchase last 90 days within baskets": dataclasses.replace(
            base, cooccurrence_days=90, cooccurrence_within="basket"
        ),
    }


def run(args) -> dict:
    config = load_config(args.config)
    prepared = prepare(config, args.data)
    split, dataset, features = prepared.split, prepared.dataset, prepared.features
    task = split.task("valid")
    queries, targets = queries_from_task(task), task.targets()
    context = ranker_context(dataset, features, split.train)
    unsold = unsold_targets(queries, targets, context)
    result: dict = {"queries": len(queries), "targets": int(sum(len(t) for t in targets))}
    result["unsold_targets"] = len(unsold)
    per_source = {}
    for source in enabled_sources(config.ranker, context):
        found = source.candidates(queries, context, max(SIZES_N))
        per_source[source.name] = recall_at(found, targets, unsold, context.n_items)
        per_source[source.name]["unsold_candidates"] = _unsold_share(found, context, queries)
    result["sources"] = per_source
    copurchase = {}
    for days in WINDOWS:
        for unit in UNITS:
            source = CoPurchase(last_n=config.ranker.history_last_n, days=days, within=unit)
            found = source.candidates(queries, context, max(SIZES_N))
            copurchase[f"{days or 'all'} days, {unit}"] = recall_at(
                found, targets, unsold, context.n_items
            )
    result["cooccurrence"] = copurchase
    merged = {}
    for name, ranker_config in merged_configs(config.ranker).items():
        begin = time.perf_counter()
        found = cands.generate(queries, context, ranker_config)
        generated = time.perf_counter()
        feature_matrix(queries, found, context, ranker_config)
        featured = time.perf_counter()
        hit = target_labels(found.rows, found.items, targets, context.n_items)
        per_1000 = 1000.0 / max(len(queries), 1)
        entry = {
            "recall": float(hit.sum() / result["targets"]),
            "unsold_recall": float(
                (hit & np.isin(found.rows * context.n_items + found.items, unsold)).sum()
                / max(result["unsold_targets"], 1)
            ),
            "candidates_per_query": len(found) / max(len(queries), 1),
            "seconds_candidates_per_1000": (generated - begin) * per_1000,
            "seconds_features_per_1000": (featured - generated) * per_1000,
        }
        if args.fit:
            fitted_config = dataclasses.replace(ranker_config, without=["sequence"])
            ranker = fit_ranker(dataset, split, features, fitted_config)
            scored = evaluate_model(config, RankerScorer(ranker, context), task, bootstrap=0)
            entry["valid_ndcg@12"] = scored.metrics["ndcg@12"]
            entry["best_iteration"] = ranker.best_iteration
        merged[name] = entry
        logging.info("%s: %s", name, entry)
    result["merged"] = merged
    return result


def _unsold_share(found, context, queries) -> int:
    """Candidates (pairs) whose item was never sold before the query's cutoff."""
    sold = context.events.count(found.items, queries.cutoffs[found.rows])
    return int((sold == 0).sum())


def report(result: dict, args, seconds: float) -> str:
    lines = [
        f"# Candidate recall of the ranker's sources on validation (`{args.config}`)",
        "",
        f"- command: `python benchmarks/ranker_candidates.py --config {args.config} --data "
        f"{args.data} --out {args.out}{' --fit' if args.fit else ''}`",
        f"- machine: 2 cores (shared with other jobs), Python {platform.python_version()}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; wall time {seconds:.0f} s",
        f"- validation queries: {result['queries']}, targets: {result['targets']}, of them "
        f"never sold before their cutoff (unsold): {result['unsold_targets']}",
        "",
        "## Recall@N per source (all targets / unsold targets)",
        "",
        "| source | " + " | ".join(f"N={n}" for n in SIZES_N) + " | unsold candidates at N=200 |",
        "|---|" + "---|" * (len(SIZES_N) + 1),
    ]
    for name, row in result["sources"].items():
        cells = [f"{row[n][0]:.4f} / {row[n][1]:.4f}" for n in SIZES_N]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['unsold_candidates']} |")
    lines += [
        "",
        "## Co-purchase by window and unit (all targets / unsold targets)",
        "",
        "| co-purchase | " + " | ".join(f"N={n}" for n in SIZES_N) + " |",
        "|---|" + "---|" * len(SIZES_N),
    ]
    for name, row in result["cooccurrence"].items():
        cells = [f"{row[n][0]:.4f} / {row[n][1]:.4f}" for n in SIZES_N]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Merged candidates",
        "",
        "| sizes | recall | unsold recall | candidates per query | s candidates / 1k queries"
        " | s features / 1k queries | valid ndcg@12 (ranker without sequence model) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["merged"].items():
        ndcg = f"{row['valid_ndcg@12']:.4f}" if "valid_ndcg@12" in row else ""
        lines.append(
            f"| {name} | {row['recall']:.4f} | {row['unsold_recall']:.4f} | "
            f"{row['candidates_per_query']:.0f} | {row['seconds_candidates_per_1000']:.2f} | "
            f"{row['seconds_features_per_1000']:.2f} | {ndcg} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="report path without extension")
    parser.add_argument("--fit", action="store_true", help="fit a ranker per merged config")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    begin = time.perf_counter()
    result = run(args)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(report(result, args, time.perf_counter() - begin))


if __name__ == "__main__":
    main()
