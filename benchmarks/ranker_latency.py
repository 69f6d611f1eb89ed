"""Latency of the two-stage ranker (`seqrec.ranker.scorer.RankerScorer`) in-process, per step.

Loads a dataset (default: the shared H&M slice), splits it (leave the last basket out), builds
the item features (TF-IDF + SVD text, images from the feature cache) and either loads a fitted
ranker (``--ranker DIR`` with ``ranker.txt`` / ``ranker.json``) or fits one on the split
(`seqrec.ranker.fit.fit_ranker`). Queries are real test shoppers: their last ``--history``
purchases with their times, at their test cutoffs (shoppers with a shorter history are left
out; the list is cycled when fewer than ``--queries`` remain). Reports:

1. one-off costs: the content neighbour graphs per modality and the first query;
2. one query at a time: p50 / p90 / p99 of the whole ``score_queries`` ([1, N] scores) and of
   ``candidates_and_scores`` (what a top-k answer needs), and the p50 of each step;
3. batches of ``--batch`` queries (the server micro-batches): the same per batch.

The server's HTTP overhead is not included (`serve_load.py` measures the service). With
``--bundle DIR`` (a two-stage bundle of the same data) the scorer is the one the service builds
(`seqrec.serve.recommender.Recommender`: the bundle's log, its sequence model in the served
runtime), on one torch and one BLAS thread as in a server process.

    python benchmarks/ranker_latency.py --out benchmarks/results/ranker_latency.md
    python benchmarks/ranker_latency.py --bundle runs/hmr --out /tmp/ranker_latency_hmr.md
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from seqrec.bundle import load_bundle
from seqrec.data.load import load_dataset
from seqrec.data.split import SplitConfig, split_dataset
from seqrec.features.build import FeatureConfig, fit_item_features
from seqrec.features.text import TextConfig
from seqrec.ranker import candidates, features
from seqrec.ranker.candidates import n_of
from seqrec.ranker.compiled import CompiledTrees, compile_trees
from seqrec.ranker.config import RankerConfig
from seqrec.ranker.fit import fit_ranker, ranker_context
from seqrec.ranker.model import Ranker
from seqrec.ranker.queries import Queries, queries_from_task
from seqrec.ranker.scorer import RankerScorer
from seqrec.ranker.sources import ContentNeighbours, content_graph, enabled_sources
from seqrec.report import markdown_table, run_facts, run_lines, write_keeping_notes
from seqrec.serve.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]


def timed(call: Callable[[], object]) -> float:
    """Milliseconds ``call`` takes."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def clock(steps: dict[str, list[float]], name: str, call: Callable, *args):
    """``call(*args)``, its milliseconds appended to ``steps[name]``."""
    start = time.perf_counter()
    out = call(*args)
    steps.setdefault(name, []).append((time.perf_counter() - start) * 1000)
    return out


def test_queries(task, history: int, count: int) -> tuple[list[Queries], int]:
    """``count`` one-query batches of real shoppers' last ``history`` purchases (cycled), and
    how many distinct shoppers they come from."""
    every = queries_from_task(task)
    long = [row for row, items in enumerate(every.histories) if len(items) >= history]
    if not long:
        raise SystemExit(f"no test shopper has {history} purchases; use a smaller --history")
    out = []
    for at in range(count):
        row, last = long[at % len(long)], slice(-history, None)
        histories, times = [every.histories[row][last]], [every.times[row][last]]
        out.append(Queries(histories, times, every.cutoffs[[row]]))
    return out, len(long)


def joined(parts: list[Queries]) -> Queries:
    return Queries(
        [q.histories[0] for q in parts],
        [q.times[0] for q in parts],
        np.array([q.cutoffs[0] for q in parts]),
    )


def percentiles(values: list[float]) -> list[str]:
    return [f"{np.percentile(values, p):.2f}" for p in (50, 90, 99)]


def step_times(
    scorer: RankerScorer, batches: list[Queries], unrolled: CompiledTrees | None
) -> dict[str, list[float]]:
    """Milliseconds per batch of each step: every source, the merged candidates, features,
    the trees walked by LightGBM and (when compiled) by the compiled code, also as compiled
    with -O3 (``unrolled``, against the service's `seqrec.ranker.compiled.OPTIONS`), the dense
    [B, N] scores, and the whole calls (which walk the compiled trees when there are)."""
    ranker, context = scorer.ranker, scorer.context
    steps: dict[str, list[float]] = {}
    for batch in batches:
        for source in enabled_sources(ranker.config, context):
            n = n_of(ranker.config, source)
            clock(steps, source.name, source.candidates, batch, context, n)
        found = clock(
            steps, "candidates (generate)", candidates.generate, batch, context, ranker.config
        )
        names, matrix = clock(
            steps, "features", features.feature_matrix, batch, found, context, ranker.config
        )
        matrix = scorer.in_ranker_order(names, matrix)
        values = clock(steps, "trees: LightGBM predict", lightgbm_walk, ranker, matrix)
        walks = {"trees: compiled": ranker.trees, "trees: compiled with -O3": unrolled}
        for name, walk in walks.items():
            if walk is not None and not np.array_equal(clock(steps, name, walk, matrix), values):
                raise SystemExit(f"{name} scored a query otherwise than LightGBM")
        clock(
            steps,
            "dense scores [B, N]",
            candidates.dense_scores,
            found,
            len(batch),
            context.n_items,
            values.astype(np.float32),
        )
        clock(steps, "candidates_and_scores", scorer.candidates_and_scores, batch)
        clock(steps, "score_queries", scorer.score_queries, batch)
    return steps


def lightgbm_walk(ranker: Ranker, matrix: np.ndarray) -> np.ndarray:
    return ranker.booster.predict(matrix, num_iteration=ranker.best_iteration, num_threads=1)


def served_scorer(bundle_path: Path, dataset) -> tuple[RankerScorer, str]:
    """The ranker scorer ``seqrec serve`` builds for the two-stage bundle at ``bundle_path``."""
    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")  # as `seqrec.serve.server.app_from_env`
    bundle = load_bundle(bundle_path)
    if (
        bundle.items["item_id"].astype(str).tolist()
        != dataset.items["item_id"].astype(str).tolist()
    ):
        raise SystemExit(f"{bundle_path} was not trained on these items; give its --data")
    served = Recommender(bundle)
    if served.ranker is None:
        raise SystemExit(f"{bundle_path} has no ranker")
    origin = (
        f"served from bundle `{bundle_path}` (`Recommender`, model scores by {served.runtime}, "
        f"trees walked by {served.trees})"
    )
    return served.ranker, origin


def load_or_fit(args, dataset, split, item_features) -> tuple[Ranker, str]:
    if args.ranker is not None:
        return Ranker.load(args.ranker), f"loaded from `{args.ranker}`"
    start = time.perf_counter()
    ranker = fit_ranker(dataset, split, item_features, RankerConfig())
    seconds = time.perf_counter() - start
    return ranker, f"fitted here (`fit_ranker`, default `RankerConfig`, {seconds:.0f} s)"


def one_off_lines(scorer: RankerScorer, first: Queries) -> list[str]:
    """Seconds of each content neighbour graph (on the scorer's fresh context) and of the
    first query after them."""
    lines = []
    for source in enabled_sources(scorer.ranker.config, scorer.context):
        if isinstance(source, ContentNeighbours):
            seconds = timed(
                lambda s=source: content_graph(scorer.context, s.modality, s.neighbours)
            )
            lines.append(
                f"- content neighbour graph `{source.modality}` (top {source.neighbours} per "
                f"item, {scorer.context.n_items:,} items): {seconds / 1000:.1f} s, once per context"
            )
    lines.append(f"- first query after them: {timed(lambda: scorer.score_queries(first)):.0f} ms")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hm")
    parser.add_argument("--ranker", type=Path, default=None, help="a directory with ranker.txt")
    parser.add_argument("--bundle", type=Path, default=None, help="a two-stage bundle, served")
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ranker_latency.md")
    args = parser.parse_args()

    facts = run_facts()
    dataset = load_dataset(args.data)
    split = split_dataset(dataset, SplitConfig(method="leave_last_basket_out"))
    config = FeatureConfig(text=TextConfig(encoder="tfidf", svd_dim=128))
    task = split.task("test")
    if args.bundle is not None:
        scorer, origin = served_scorer(args.bundle, dataset)
    else:
        item_features = fit_item_features(dataset, config).features
        ranker, origin = load_or_fit(args, dataset, split, item_features)
        context = ranker_context(dataset, item_features, task.fit, image_basis=ranker.image_basis)
        scorer = RankerScorer(ranker, context)
        reason = ranker.compile()
        origin += f"; trees walked by {'LightGBM: ' + reason if reason else 'compiled code'}"
    singles, distinct = test_queries(task, args.history, args.queries)
    one_off = one_off_lines(scorer, singles[0])
    unrolled = None
    if scorer.ranker.trees is not None:
        unrolled, _ = compile_trees(scorer.ranker.booster, scorer.ranker.best_iteration, ("-O3",))
    single = step_times(scorer, singles, unrolled)
    pool = singles * (1 + args.batch * args.batches // max(len(singles), 1))
    batches = [joined(pool[at * args.batch : (at + 1) * args.batch]) for at in range(args.batches)]
    batched = step_times(scorer, batches, unrolled)

    rows = [
        [name, f"{np.median(single[name]):.2f}", f"{np.median(batched[name]):.2f}"]
        for name in single
    ]
    whole = [
        [f"1 query, {name}", *percentiles(single[name])]
        for name in ("score_queries", "candidates_and_scores")
    ]
    whole += [
        [f"{args.batch} queries, {name}", *percentiles(batched[name])]
        for name in ("score_queries", "candidates_and_scores")
    ]
    lines = [
        "# Ranker latency (in-process, one core's worth of Python)",
        "",
        *run_lines(facts),
        f"- data: `{args.data}` ({dataset.n_items:,} items); ranker {origin}",
        f"- queries: {len(singles)} single queries of the last {args.history} purchases of "
        f"{distinct} real test shoppers (cycled), at their test cutoffs; {args.batches} batches "
        f"of {args.batch}",
        "",
        "## One-off costs",
        "",
        *one_off,
        "",
        "## Whole calls (ms)",
        "",
        *markdown_table(["call", "p50", "p90", "p99"], whole),
        "",
        "## p50 per step (ms)",
        "",
        *markdown_table(["step", "1 query", f"batch of {args.batch}"], rows),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_keeping_notes(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
