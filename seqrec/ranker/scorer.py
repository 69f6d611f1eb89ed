"""The fitted ranker as a full-catalogue scorer: candidates, their features, LightGBM's scores.

    queries (histories, times, cutoffs)
      -> CandidateSet [P pairs]       the sources' candidates (`candidates.generate`)
      -> features [P, F]              one row per pair (`features.feature_matrix`)
      -> ranker scores [P]            LightGBM LambdaRank
      -> scores [B, N] float32        candidates by ranker score, every other item tied below

`seqrec.evaluate.evaluate` calls `RankerScorer.score_queries` (time-aware: each query reads the
log before its cutoff); callers without times (`score`) ask at the end of the context's log.
"""

from __future__ import annotations

import numpy as np

from seqrec.data.dataset import DataError
from seqrec.ranker import candidates, features
from seqrec.ranker.candidates import CandidateSet
from seqrec.ranker.context import RankerContext
from seqrec.ranker.model import Ranker
from seqrec.ranker.queries import Queries

SERIAL_ROWS = 5000  # LightGBM predicts fewer pairs than this on one thread (no pool start-up)


class RankerScorer:
    """Scores of ``ranker`` for queries, reading ``context`` (the log before each cutoff, the
    items' content): deterministic for the same queries and context."""

    def __init__(self, ranker: Ranker, context: RankerContext):
        self.ranker, self.context = ranker, context

    def candidates_and_scores(self, queries: Queries) -> tuple[CandidateSet, np.ndarray]:
        """The queries' candidates and their [P] float64 ranker scores (higher = better)."""
        found = candidates.generate(queries, self.context, self.ranker.config)
        names, matrix = features.feature_matrix(queries, found, self.context, self.ranker.config)
        matrix = self.in_ranker_order(names, matrix)  # [P, F]
        threads = 1 if len(found) < SERIAL_ROWS else 0
        return found, self.ranker.predict(matrix, threads=threads)

    def score_queries(self, queries: Queries) -> np.ndarray:
        """[B, N] float32: each query's candidates by ranker score, above every other item."""
        found, values = self.candidates_and_scores(queries)
        return candidates.dense_scores(
            found, len(queries), self.context.n_items, values=values.astype(np.float32)
        )

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """[B, N] float32 for histories without times: every history item is taken as bought
        at the end of the context's log, and each query asks right after it."""
        return self.score_queries(candidates.latest_queries(histories, self.context.events))

    def in_ranker_order(self, names: list[str], matrix: np.ndarray) -> np.ndarray:
        expected = self.ranker.feature_names
        if names == expected:
            return matrix
        missing = [name for name in expected if name not in names]
        if missing:
            raise DataError(
                f"the ranker was trained with features this data cannot give: "
                f"{', '.join(missing)} (is a modality, the sequence model or a column missing?)"
            )
        position = {name: column for column, name in enumerate(names)}
        return matrix[:, [position[name] for name in expected]]
