"""Top-100 neighbour graphs without N x N work: exact vs the IVF path (`seqrec.neighbours`).

Each case runs in its own process (peak resident memory is the process's own): synthetic unit
vectors from a Gaussian mixture (dense, as text / image / fused embeddings are) and sparse
TF-IDF-like rows (topic words plus random words), at 10k / 30k / 105k items, and the H&M subset's
TF-IDF terms when ``--hm`` is given. Recall@100 against the exact top-100 is measured on
``--sample`` query rows (the exact graph of all rows is timed only up to ``--exact-max`` items).

    python benchmarks/neighbours.py [--sizes 10000 30000 105000] [--hm ../shared/data/hm]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import scipy.sparse as sp

K = 100
OUT = Path(__file__).parent / "results"


def mixture(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(10, n // 100), dim)).astype(np.float32)
    rows = centres[rng.integers(0, len(centres), n)]
    rows += rng.normal(scale=0.8, size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def sparse_terms(n: int, vocab: int = 30_000, seed: int = 0) -> sp.csr_matrix:
    """[n, vocab] unit rows: 30 words of the item's topic (of n // 50) and 20 of any."""
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, vocab, size=(max(10, n // 50), 60))
    topic_words = topics[rng.integers(0, len(topics), n)]  # [n, 60]
    picks = rng.integers(0, 60, size=(n, 30))
    words = np.concatenate([np.take_along_axis(topic_words, picks, 1),
                            rng.zipf(1.3, size=(n, 20)) % vocab], axis=1)  # fmt: skip
    rows = np.repeat(np.arange(n), words.shape[1])
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, words.ravel())), (n, vocab))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix)


def hm_terms(path: str) -> sp.csr_matrix:
    from seqrec.data.load import load_dataset
    from seqrec.features.text import TextConfig, TextEncoder, item_texts
    from seqrec.models.affinity import unit_rows

    items = load_dataset(path).items
    texts = item_texts(items, [c for c in items.columns if c.endswith(("_name", "_desc"))])
    return unit_rows(TextEncoder(TextConfig(svd_dim=0)).fit(texts).terms(texts))


def content_of(case: dict):
    if case["data"] == "dense":
        return mixture(case["n"], case["dim"])
    if case["data"] == "sparse":
        return sparse_terms(case["n"])
    return hm_terms(case["path"])


def run_case(case: dict) -> dict:
    """One case, in this process: times, peak memory, recall on a sample."""
    import resource

    from seqrec.neighbours import exact_top, top_neighbours

    content = content_of(case)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    started = time.perf_counter()
    items, _ = top_neighbours(content, K, exact_limit=0 if case["path_kind"] == "ivf" else None)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(content.shape[0], min(case["sample"], content.shape[0]), False))
    truth = _exact_rows(content, sample, exact_top)
    hits = [len(np.intersect1d(a, b)) / K for a, b in zip(items[sample], truth, strict=True)]
    return {**case, "items": content.shape[0], "seconds": seconds, "peak_gb": peak,
            "peak_gb_before": before, "recall_at_100": float(np.mean(hits))}  # fmt: skip


def _exact_rows(content, sample: np.ndarray, exact_top) -> np.ndarray:
    """Exact top-K of the ``sample`` rows against every row: [S, K]."""
    rows = content[sample]
    dense = rows @ content.T
    dense = dense.toarray() if sp.issparse(dense) else np.asarray(dense)
    return np.argpartition(-dense, K - 1, axis=1)[:, :K]


def cases(args) -> list[dict]:
    out = []
    for n in args.sizes:
        kinds_of_data = [("dense", dim) for dim in args.dims] + [("sparse", 0)] * args.sparse
        for data, dim in kinds_of_data:
            kinds = ["ivf"] + (["exact"] if n <= args.exact_max else [])
            out += [{"data": data, "dim": dim, "n": n, "path_kind": kind} for kind in kinds]
    if args.hm:
        out += [{"data": "hm_tfidf", "dim": 0, "n": 0, "path_kind": kind, "path": args.hm}
                for kind in ("exact", "ivf")]  # fmt: skip
    return [{**case, "sample": args.sample} for case in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 105_000])
    parser.add_argument("--exact-max", type=int, default=30_000)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--hm", default=None)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 1280, 128])
    parser.add_argument("--sparse", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    rows = []
    for case in cases(args):
        done = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    write(rows, shlex.join(["python", "benchmarks/neighbours.py", *sys.argv[1:]]))


def write(rows: list[dict], command: str) -> None:
    machine = f"{platform.machine()}, 2 cores shared with other jobs (timings on a busy machine)"
    meta = {"command": command, "date": date.today().isoformat(), "machine": machine}
    OUT.mkdir(exist_ok=True)
    (OUT / "neighbours.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    lines = ["# Top-100 neighbour graphs: exact vs IVF (`seqrec/neighbours.py`)", "",
             f"`{command}` on {meta['date']}, {meta['machine']}.", "",
             "Recall@100: share of the exact top-100 found, on a sample of query rows.", "",
             "| data | dim | items | path | seconds | peak RSS GB (before) | recall@100 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['data']} | {r['dim'] or 'sparse'} | {r['items']:,} | {r['path_kind']} "
                     f"| {r['seconds']:.1f} | {r['peak_gb']:.2f} ({r['peak_gb_before']:.2f}) "
                     f"| {r['recall_at_100']:.3f} |")  # fmt: skip
    (OUT / "neighbours.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
