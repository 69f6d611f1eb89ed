"""What the width of the ranker's image vectors costs a served two-stage bundle, per query.

The ranker reads image vectors three times per query: the `new_image` source scores every new
item of the cutoff (a [new items, D] scan), the `content_image` source re-scores its pool, and
the image cosine features read each candidate's row. With EfficientNet-Lite0's D = 1280 that
is several MB per query. This script projects the catalogue's unit image vectors onto their top
``k`` principal directions as a ranker with ``image_dim = k`` does (`seqrec.ranker.projection`),
and reports for each ``k`` of ``--dims`` and the full width:

1. the share of the vectors' energy kept and the error of the cosine of random item pairs;
2. the share of the full-width image sources' candidates (`content_image`, `new_image`) that
   the projected vectors propose too, on the timed queries;
3. the mean time of one query (``RankerScorer.candidates_and_scores``, the scorer ``seqrec serve``
   builds, one torch and one BLAS thread) over popular 50-item histories, each width's context
   with its own neighbour graph, rounds alternating between widths.

Timing and cosine error only: the bundle's ranker was trained on full-width cosines, so its
ranking with projected vectors is not measured here (a ranker trained on them is:
``seqrec bench --set ranker.image_dim=k``).

    python benchmarks/ranker_image_dim.py --bundle runs/hmr
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from load_client import popular_items
from threadpoolctl import threadpool_limits

from seqrec.bundle import load_bundle
from seqrec.ranker.candidates import latest_queries, n_of
from seqrec.ranker.context import PeriodCache, RankerContext
from seqrec.ranker.projection import fit_image_basis, project_rows
from seqrec.ranker.scorer import RankerScorer
from seqrec.ranker.sources import ContentNeighbours, content_graph, enabled_sources
from seqrec.report import markdown_table, run_facts, run_lines, write_keeping_notes
from seqrec.serve.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]
PAIRS = 20_000  # random item pairs for the cosine error


def cosine_error(full: np.ndarray, narrow: np.ndarray, seed: int) -> tuple[float, float]:
    """Mean and p99 absolute error of the cosine of random pairs of items with a vector."""
    rng = np.random.default_rng(seed)
    with_vector = np.flatnonzero(np.abs(full).sum(axis=1) > 0)
    first, second = rng.choice(with_vector, PAIRS), rng.choice(with_vector, PAIRS)
    exact = np.einsum("pd,pd->p", full[first].astype(np.float64), full[second])
    approx = np.einsum("pd,pd->p", narrow[first].astype(np.float64), narrow[second])
    error = np.abs(approx - exact)
    return float(error.mean()), float(np.percentile(error, 99))


def image_neighbours(scorer: RankerScorer) -> int | None:
    """The neighbours per item of the ranker's `content_image` source; None when it is off."""
    for source in enabled_sources(scorer.ranker.config, scorer.context):
        if isinstance(source, ContentNeighbours) and source.modality == "image":
            return source.neighbours
    return None


def with_image(
    context: RankerContext, vectors: np.ndarray, neighbours: int | None
) -> RankerContext:
    """``context`` with these image vectors, its own caches, the image neighbour graph built
    (untimed) when the ranker reads one."""
    narrow = dataclasses.replace(
        context,
        vectors={**context.vectors, "image": vectors},
        cache={k: v for k, v in context.cache.items() if "image" not in k},
        periods=PeriodCache(),
    )
    if neighbours is not None:
        content_graph(narrow, "image", neighbours)
    return narrow


def kept_candidates(full: RankerScorer, narrow: RankerScorer, queries: list) -> str:
    """Per image source: the share of ``full``'s candidates that ``narrow`` proposes too."""
    shares = []
    for source in enabled_sources(full.ranker.config, full.context):
        if source.name not in ("content_image", "new_image"):
            continue
        n = n_of(full.ranker.config, source)
        kept = total = 0
        for query in queries:
            wide = set(source.candidates(query, full.context, n).items.tolist())
            total += len(wide)
            kept += len(wide & set(source.candidates(query, narrow.context, n).items.tolist()))
        shares.append(f"{source.name} {kept / max(total, 1):.3f}")
    return ", ".join(shares) or "-"


def query_ms(scorer: RankerScorer, histories: list[np.ndarray]) -> float:
    """Mean milliseconds of one query over ``histories`` (after one untimed pass)."""
    queries = [latest_queries([h], scorer.context.events) for h in histories]
    for query in queries[:20]:
        scorer.candidates_and_scores(query)
    start = time.perf_counter()
    for query in queries:
        scorer.candidates_and_scores(query)
    return (time.perf_counter() - start) * 1000 / len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a two-stage bundle")
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ranker_image_dim.md")
    args = parser.parse_args()

    facts = run_facts(torch=torch.__version__)
    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")  # as a server process
    served = Recommender(load_bundle(args.bundle))
    if served.ranker is None or "image" not in served.ranker.context.vectors:
        raise SystemExit(f"{args.bundle} has no ranker reading image vectors")
    if served.ranker.ranker.image_basis is not None:
        raise SystemExit(f"{args.bundle}'s ranker reads projected image vectors already")
    scorer = served.ranker
    full = np.asarray(scorer.context.vectors["image"], dtype=np.float32)  # [N, D] unit rows
    singular = np.linalg.svd(full.astype(np.float64), compute_uv=False)
    energy = np.cumsum(singular**2) / np.sum(singular**2)
    neighbours = image_neighbours(scorer)
    widths = [d for d in args.dims if d < full.shape[1]]
    scorers = {
        full.shape[1]: RankerScorer(scorer.ranker, with_image(scorer.context, full, neighbours))
    }
    errors = {full.shape[1]: (0.0, 0.0)}
    for width in widths:
        narrow = project_rows(full, fit_image_basis(full, width))
        errors[width] = cosine_error(full, narrow, args.seed)
        scorers[width] = RankerScorer(scorer.ranker, with_image(scorer.context, narrow, neighbours))
    histories = [
        np.array([served.index[str(i)] for i in row], dtype=np.int64)
        for row in popular_items(args.bundle, (args.queries, 50), args.seed)
    ]
    queries = [latest_queries([h], scorer.context.events) for h in histories]
    kept = {
        width: kept_candidates(scorers[full.shape[1]], one, queries)
        for width, one in scorers.items()
    }
    times: dict[int, list[float]] = {width: [] for width in scorers}
    for _ in range(args.rounds):
        for width, one in scorers.items():
            times[width].append(query_ms(one, histories))

    rows = [
        [
            width,
            f"{energy[width - 1]:.3f}",
            f"{errors[width][0]:.4f}",
            f"{errors[width][1]:.4f}",
            kept[width],
            " / ".join(f"{ms:.2f}" for ms in times[width]),
            f"{np.median(times[width]):.2f}",
        ]
        for width in scorers
    ]
    header = ["image width", "energy kept", "cosine error mean", "p99", "candidates kept"]
    header += ["ms per query (rounds)"]
    lines = [
        "# The ranker's image vector width: cost per query of a served two-stage bundle",
        "",
        *run_lines(facts),
        f"- bundle: `{args.bundle}` ({scorer.context.n_items:,} items, "
        f"image vectors {full.shape[1]}-d)",
        f"- queries: {args.queries} popular 50-item histories (`load_client.popular_items`, "
        f"seed {args.seed}), one at a time, {args.rounds} rounds alternating between widths",
        "- timing and cosine error only: the ranker was trained on the full-width cosines",
        "",
        *markdown_table([*header, "median ms"], rows),
        "",
    ]
    write_keeping_notes(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
