"""How often ranking through the index's candidates gives the full ranking's list, and what
each costs per request (`seqrec.serve.retrieval`; a script, not a test).

    python benchmarks/serve_retrieval.py --bundle runs/hm --data ../shared/data/hm \
        --out benchmarks/results/serve_retrieval.md

For each (candidates, nprobe) setting, a `seqrec.serve.recommender.Recommender` ranking through
the index and one scoring every item rank the same histories, one request at a time on one
thread, with the runtime ``seqrec serve`` picks. Histories: the test split's (the last
``max_len`` items of each held-out shopper, ``--data``) or, without data, ``--history`` items
drawn by popularity (50 as `benchmarks/serve_load.py` sends them; under a history-first
re-rank a long history fills the list with its own items, so the shorter ones test the index).
Reported: the share of requests whose list is the full ranking's, recall@k of the full
ranking's list, the share ranked over the whole catalogue because the candidates could not
answer (`CandidateRanking`), and the mean time per request of each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seqrec.bundle import load_bundle
from seqrec.report import machine_facts, machine_line, markdown_table
from seqrec.serve.recommender import RankQuery, Recommender
from seqrec.serve.retrieval import Retrieval

ROOT = Path(__file__).resolve().parents[1]


def histories(bundle, data: str | None, count: int, length: int, seed: int) -> list[np.ndarray]:
    """``count`` histories: held-out test shoppers' (with ``data``) or drawn by popularity."""
    rng = np.random.default_rng(seed)
    if data is None:
        weights = np.asarray(bundle.popularity, dtype=np.float64) + 1e-3
        return [rng.choice(bundle.n_items, length, p=weights / weights.sum()) for _ in range(count)]
    from seqrec.data.split import split_dataset
    from seqrec.experiment import load_data

    dataset = load_data(bundle.config, data)
    if dataset.n_items != bundle.n_items:
        sys.exit(f"{data} has {dataset.n_items} items, the bundle {bundle.n_items}: not its data")
    task = split_dataset(dataset, bundle.config.split).task("test").sample(count, seed)
    return [h for h in task.histories() if len(h)]


def measure(rec: Recommender, queries: list[RankQuery]) -> tuple[list[np.ndarray], float]:
    """(each query's list, mean ms per query), one query at a time."""
    rec.rank(queries[:5])  # first-call set-up
    start = time.perf_counter()
    lists = [rec.rank([query])[0].items for query in queries]
    return lists, (time.perf_counter() - start) / len(queries) * 1e3


def agreement(rec: Recommender, queries: list[RankQuery], truth: list[np.ndarray]) -> dict:
    """How ``rec``'s lists compare with the full ranking's ``truth``, and its time."""
    assert rec.candidates is not None
    answered = [a is not None for a in rec.candidates.rank(queries, rec.unavailable)]
    served, index_ms = measure(rec, queries)
    pairs = list(zip(served, truth, strict=True))
    return {
        "identical": float(np.mean([np.array_equal(a, b) for a, b in pairs])),
        "recall": float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in pairs])),
        "fallback": 1.0 - float(np.mean(answered)),
        "index_ms": index_ms,
    }


def run(args) -> dict:
    torch.set_num_threads(1)  # as `seqrec serve` ranks: one thread beside the HTTP loop
    bundle = load_bundle(args.bundle)
    exact = Recommender(bundle, retrieval=Retrieval("exact"))
    indexed = {}
    for candidates in args.candidates:
        for nprobe in args.nprobe:
            clock = time.perf_counter()
            rec = Recommender(bundle, retrieval=Retrieval("index", candidates, nprobe))
            indexed[(candidates, nprobe)] = (rec, time.perf_counter() - clock)
    rows = []
    for length in [0] if args.data else args.history:
        asked = histories(bundle, args.data, args.requests, length, args.seed)
        empty = np.zeros(0, dtype=np.int64)
        queries = [RankQuery(h[-bundle.config.model.max_len :], args.k, empty) for h in asked]
        truth, exact_ms = measure(exact, queries)
        for (candidates, nprobe), (rec, built) in indexed.items():
            assert rec.candidates is not None
            rows.append(
                {
                    "history": length or "test split",
                    "requests": len(queries),
                    "candidates": candidates,
                    "nprobe": min(nprobe, rec.candidates.index.nlist),
                    "lists": rec.candidates.index.nlist,
                    **agreement(rec, queries, truth),
                    "exact_ms": exact_ms,
                    "recommender_build_s": built,
                }
            )
            print(rows[-1], flush=True)
    return {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_facts(torch=torch.__version__),
        "bundle": str(args.bundle),
        "n_items": bundle.n_items,
        "model": bundle.config.model.model,
        "rerank": str(exact.scorer.rerank),
        "runtime": exact.runtime,
        "histories": "of the test split" if args.data else "drawn by popularity",
        "requests": args.requests,
        "k": args.k,
        "rows": rows,
    }


def report(figures: dict) -> str:
    header = ["history items", "requests", "candidates", "nprobe (of lists)", "identical lists",
              f"recall@{figures['k']}", "ranked in full", "ms/request",
              "exact ms/request"]  # fmt: skip
    table = [
        [
            row["history"],
            row["requests"],
            row["candidates"],
            f"{row['nprobe']} ({row['lists']})",
            f"{row['identical']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['fallback']:.4f}",
            f"{row['index_ms']:.2f}",
            f"{row['exact_ms']:.2f}",
        ]  # fmt: skip
        for row in figures["rows"]
    ]
    return "\n".join(
        [
            f"### {Path(figures['bundle']).name}: {figures['n_items']:,} items, {figures['model']}",
            "",
            f"- command: `{figures['command']}`",
            f"- date: {figures['date']}; machine: {machine_line(figures['machine'])}",
            f"- up to {figures['requests']} requests per history length, k = {figures['k']}, "
            f"histories {figures['histories']}; re-rank {figures['rerank']}; scores by "
            f"{figures['runtime']}, one thread; exact: every item scored",
            "",
            *markdown_table(header, table),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--data", default=None, help="the bundle's data: test-split histories")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--history", type=int, nargs="+", default=[50, 5, 1])
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--candidates", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/serve_retrieval.md"))
    args = parser.parse_args()
    figures = run(args)
    out = Path(args.out)
    old = out.read_text() if out.exists() else "# Ranking through an index's candidates\n\n"
    out.write_text(old.rstrip("\n") + "\n\n" + report(figures))
    runs = (
        json.loads(out.with_suffix(".json").read_text())
        if out.with_suffix(".json").exists()
        else []
    )
    out.with_suffix(".json").write_text(json.dumps([*runs, figures], indent=2))


if __name__ == "__main__":
    main()
