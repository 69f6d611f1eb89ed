"""The ranker's trees compiled to native code (tl2cgen), for the few hundred rows of a query.

LightGBM's ``predict`` walks each tree through its node arrays; tl2cgen writes the trees out
as C (one ``if`` per split, the thresholds inlined) and a C compiler builds them into a shared
library, which walks the same trees faster (`benchmarks/results/ranker_latency.md`). Both sum
the leaf values in tree order in double precision, so the scores are the same, bit for bit
(`CompiledTrees` makes the two read the same values): `compile_trees` checks that on probe
rows (each split's threshold, the values beside it, missing values) and returns None, with
the reason, when they differ or when there is no C compiler (``gcc``, ``clang`` or ``cc`` on
``PATH``): the caller keeps LightGBM's walk.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

logger = logging.getLogger(__name__)

COMPILERS = ("gcc", "clang", "cc")
PROBE_ROWS = 4096
TREES_PER_FILE = 25  # C source files of this many trees each, compiled in parallel
# optimised for size: a query's walk meets the trees' code once, among the rest of its work,
# where fewer instruction bytes can beat unrolled ones (benchmarks/results/ranker_latency.md
# times both on the same rows)
OPTIONS = ("-Os",)
LOW_WORD = 0xFFFFFFFF  # the compiled code's "missing" mark, in a float64's low half
ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: values this near 0 are read as 0


class CompiledTrees:
    """A booster's trees as a loaded shared library: ``trees(rows)`` -> [P] float64 raw
    scores of the feature rows [P, F], as ``booster.predict`` gives them.

    Two readings of a value would differ from LightGBM's and are made the same. LightGBM reads
    a value within `ZERO` of zero as zero, so such values are set to zero before the compiled
    code reads them. The compiled code marks a missing value by setting a float64's low 32
    bits, so it would read a present value with that bit pattern (about one in 2**32) as
    missing: rows holding one are scored by ``booster`` instead."""

    def __init__(self, predictor: Any, booster: lightgbm.Booster):
        self.predictor, self.booster = predictor, booster
        self.lock = threading.Lock()  # one call at a time (a live shop warms up a new catalogue)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        import tl2cgen

        if rows.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        rows = np.asarray(rows, dtype=np.float64)
        cleaned = np.where(np.abs(rows) <= ZERO, 0.0, rows)  # [P, F] a copy
        cleaned = np.ascontiguousarray(cleaned)  # C order, as tl2cgen reads it
        with self.lock:
            scores = self.predictor.predict(tl2cgen.DMatrix(cleaned, dtype="float64"))
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)  # [P]
        # a NaN marked too (numpy's and the CPU's have a zero low word) only goes to booster
        low_bits = cleaned.view(np.uint64) & np.uint64(LOW_WORD)
        marked = np.flatnonzero((low_bits == LOW_WORD).any(axis=1))
        if len(marked):
            scores[marked] = self.booster.predict(rows[marked], num_threads=1)
        return scores


def compiler() -> str | None:
    """The C compiler tl2cgen is given: the first of `COMPILERS` on ``PATH``, else None."""
    return next((name for name in COMPILERS if shutil.which(name)), None)


def compile_trees(
    booster: lightgbm.Booster, n_trees: int, options: tuple[str, ...] = OPTIONS
) -> tuple[CompiledTrees | None, str]:
    """``booster``'s first ``n_trees`` trees compiled (with the compiler ``options``), with ""
    as the reason; or None and why not (no compiler, tl2cgen missing or failing, scores that
    differ from LightGBM's)."""
    tool = compiler()
    if tool is None:
        return None, f"no C compiler on PATH (looked for {', '.join(COMPILERS)})"
    try:
        import tl2cgen
        import treelite
    except ImportError as error:
        return None, f"tl2cgen is not installed ({error})"
    kept = lightgbm.Booster(model_str=booster.model_to_string(num_iteration=n_trees))
    output = io.StringIO()  # tl2cgen prints its own progress and version notes
    try:
        with contextlib.redirect_stdout(output), tempfile.TemporaryDirectory() as folder:
            library = Path(folder) / "trees.so"
            model = treelite.frontend.from_lightgbm(kept)
            files = {"parallel_comp": -(-n_trees // TREES_PER_FILE)}  # compiled side by side
            tl2cgen.export_lib(
                model, tool, library, files, nthread=os.cpu_count(), options=list(options)
            )
            trees = CompiledTrees(tl2cgen.Predictor(library, nthread=1), kept)
    except Exception as error:  # noqa: BLE001 - any failure leaves LightGBM's walk in place
        return None, f"tl2cgen could not compile the trees ({type(error).__name__}: {error})"
    finally:
        logger.debug("tl2cgen output: %s", output.getvalue())
    probes = probe_rows(kept)
    expected = kept.predict(probes, num_threads=1)
    differ = int(np.sum(trees(probes) != expected))
    if differ:
        return None, f"the compiled trees score {differ} of {len(probes)} probe rows otherwise"
    return trees, ""


def probe_rows(booster: lightgbm.Booster, n_rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """[n_rows, F] float64 rows that reach every side of the trees' splits: each column draws
    from its split thresholds, the floats just beside them, 0 and NaN (missing)."""
    thresholds = split_thresholds(booster)
    rng = np.random.default_rng(seed)
    rows = np.empty((n_rows, len(thresholds)))  # [P, F]
    for column, values in enumerate(thresholds):
        at = np.array(sorted(values), dtype=np.float64)
        pool = np.concatenate(
            [at, np.nextafter(at, -np.inf), np.nextafter(at, np.inf), [0.0, np.nan]]
        )
        rows[:, column] = rng.choice(pool, size=n_rows)
    return rows


def split_thresholds(booster: lightgbm.Booster) -> list[set[float]]:
    """Each feature's numeric split thresholds over all of ``booster``'s trees."""
    thresholds: list[set[float]] = [set() for _ in range(booster.num_feature())]
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            if isinstance(node["threshold"], (int, float)):
                thresholds[node["split_feature"]].add(float(node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
    return thresholds
