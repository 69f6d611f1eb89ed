"""Cosines of (query, item) pairs to each query's latest history items, in compiled loops.

The content sources score candidates by their summed cosine to the query's last items and the
features read the max and mean of the same cosines: both come from `slot_cosines`, a
[pairs, last_n] matrix (one column per slot of `last_slots`). Rows of the vectors are unit
vectors (or zero: no content), so a dot product is a cosine. The loops (numba) read each
candidate's row in place: a gathered copy of a few hundred 1280-d image rows per query cost more
than the products (benchmarks/results/ranker_latency.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from seqrec.ranker.context import Vectors
from seqrec.ranker.queries import Queries, history_events


def last_slots(queries: Queries, last_n: int) -> np.ndarray:
    """[B, last_n] int64 each query's latest ``last_n`` history items (oldest first, a repeated
    item in each of its slots), -1 where the history is shorter. Built once per Queries."""
    key = ("last_slots", last_n)
    if key not in queries.memo:
        rows, items, _, from_end = history_events(queries)
        out = np.full((len(queries), last_n), -1, dtype=np.int64)
        kept = from_end < last_n
        out[rows[kept], last_n - 1 - from_end[kept]] = items[kept]
        out.flags.writeable = False
        queries.memo[key] = out
    return queries.memo[key]  # type: ignore[return-value]


@dataclass
class Layout:
    """Pairs grouped by query: each query's pairs are a slice of ``order``."""

    order: np.ndarray  # [P] pair indices sorted by query row
    starts: np.ndarray  # [B + 1] where each query's pairs begin in ``order``
    rows: np.ndarray  # [P] query row of each sorted pair

    @classmethod
    def of(cls, rows: np.ndarray, n_queries: int) -> Layout:
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.searchsorted(sorted_rows, np.arange(n_queries + 1))
        return cls(order, starts, sorted_rows)


def csr_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """(owner [M], column [M], value [M]): the stored entries of ``matrix[rows]``, owner = the
    position in ``rows`` of the row each came from (read from the CSR arrays, no new matrix)."""
    starts = matrix.indptr[rows]
    sizes = matrix.indptr[np.asarray(rows) + 1] - starts  # [R]
    flat = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))
    owner = np.repeat(np.arange(len(sizes)), sizes)
    return owner, matrix.indices[flat], matrix.data[flat]


def slot_profiles(vectors: Vectors, last: np.ndarray) -> np.ndarray:
    """[B, D] float64 dense: the sum of each row's ``last`` items' vectors (filled slots only;
    a repeated item counts each time)."""
    filled = last >= 0  # [B, last_n]
    if not sp.issparse(vectors):
        gathered = np.asarray(vectors)[np.maximum(last, 0)]  # [B, last_n, D]
        return np.einsum("bsd,bs->bd", gathered, filled.astype(gathered.dtype), dtype=np.float64)
    vectors = sp.csr_matrix(vectors)
    slot_rows, slot_items = np.nonzero(filled)
    owner, columns, values = csr_entries(vectors, last[slot_rows, slot_items])
    width = vectors.shape[1]
    key = slot_rows[owner] * width + columns
    return np.bincount(key, weights=values, minlength=len(last) * width).reshape(len(last), width)


def slot_cosines(
    vectors: Vectors, items: np.ndarray, last: np.ndarray, layout: Layout
) -> np.ndarray:
    """[P, last_n] float64 dot product of ``vectors[items[p]]`` with each of its query's
    ``last`` items ([B, last_n], `last_slots`; the query of pair p is given by ``layout``);
    0 in the slots of a shorter history. Dense rows are summed in their own dtype (float32:
    as BLAS would), sparse rows entry by entry against the query's last items scattered into
    a [V, last_n] scratch table."""
    out = np.zeros((len(items), last.shape[1]))
    if not len(items):
        return out
    items, last = np.asarray(items, dtype=np.int64), np.asarray(last, dtype=np.int64)
    if sp.issparse(vectors):
        rows = sp.csr_matrix(vectors)
        terms = (rows.indptr, rows.indices, rows.data)
        _sparse_slots(*terms, rows.shape[1], items, last, layout.order, layout.starts, out)
    else:
        _dense_slots(np.asarray(vectors), items, last, layout.order, layout.rows, out)
    return out


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _dense_slots(vectors, items, last, order, rows, out):
    for at in range(order.shape[0]):
        pair = order[at]
        candidate = vectors[items[pair]]
        for slot in range(last.shape[1]):
            other = last[rows[at], slot]
            if other >= 0:
                history = vectors[other]
                total = np.float32(0.0)
                for dim in range(candidate.shape[0]):
                    total += candidate[dim] * history[dim]
                out[pair, slot] = total


@numba.njit(nogil=True)
def _sparse_slots(indptr, indices, data, width, items, last, order, starts, out):  # noqa: PLR0913, PLR0917
    n_slots = last.shape[1]
    scratch = np.zeros((width, n_slots))  # [V, last_n] one query's last items by term
    for query in range(starts.shape[0] - 1):
        if starts[query] == starts[query + 1]:
            continue
        for slot in range(n_slots):  # scatter the query's last items: term -> slot values
            other = last[query, slot]
            if other >= 0:
                for entry in range(indptr[other], indptr[other + 1]):
                    scratch[indices[entry], slot] = data[entry]
        for at in range(starts[query], starts[query + 1]):
            pair = order[at]
            item = items[pair]
            for entry in range(indptr[item], indptr[item + 1]):
                term, value = indices[entry], data[entry]
                for slot in range(n_slots):
                    out[pair, slot] += value * scratch[term, slot]
        for slot in range(n_slots):  # clear what was scattered
            other = last[query, slot]
            if other >= 0:
                for entry in range(indptr[other], indptr[other + 1]):
                    scratch[indices[entry], slot] = 0.0
