"""Cosines of (query, item) pairs to each query's latest history items, in blocks of queries.

The content sources score candidates by their summed cosine to the query's last items and the
features read the max and mean of the same cosines: both come from `slot_cosines`, a
[pairs, last_n] matrix (one column per slot of `last_slots`). Rows of the vectors are unit
vectors (or zero: no content), so a dot product is a cosine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from seqrec.ranker.context import Vectors
from seqrec.ranker.queries import Queries, history_events

PAIR_CHUNK = 1 << 15  # pairs per block of cosines (bounds the gathered vector rows)
HISTORY_CELLS = 1 << 20  # values of the densified last items per block of sparse cosines, at most


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
    """Pairs grouped by query, each at a slot of a [queries, width] grid."""

    order: np.ndarray  # [P] pair indices sorted by query row
    starts: np.ndarray  # [B + 1] where each query's pairs begin in ``order``
    rows: np.ndarray  # [P] query row of each sorted pair
    within: np.ndarray  # [P] its position among its query's pairs
    width: int  # the most pairs of one query

    @classmethod
    def of(cls, rows: np.ndarray, n_queries: int) -> Layout:
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.searchsorted(sorted_rows, np.arange(n_queries + 1))
        within = np.arange(len(sorted_rows)) - starts[sorted_rows]
        return cls(order, starts, sorted_rows, within, int(within.max(initial=0)) + 1)


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS (numpy's matmul) runs on the calling thread only."""
    return _blas().limit(limits=1, user_api="blas")


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
    slots of a shorter history hold any value (callers mask them). Per block of queries: dense
    rows in one batched product of each query's pairs (padded to the widest query) with its
    last items; sparse rows entry by entry against the block's last items densified (at most
    ``HISTORY_CELLS`` values)."""
    sparse = sp.issparse(vectors)
    vectors = sp.csr_matrix(vectors) if sparse else np.asarray(vectors)
    last_n = last.shape[1]
    per_block = max(1, PAIR_CHUNK // layout.width)
    if sparse:
        fit = HISTORY_CELLS // max(vectors.shape[1] * last_n, 1)
        per_block = max(1, min(per_block, fit))
    out = np.zeros((len(items), last_n))
    for first in range(0, len(last), per_block):
        stop = min(first + per_block, len(last))
        lo, hi = layout.starts[first], layout.starts[stop]
        if lo == hi:
            continue
        local, picked = layout.rows[lo:hi] - first, layout.order[lo:hi]
        history = np.maximum(last[first:stop], 0)  # [b, last_n]
        if sparse:
            out[picked] = _sparse_block(vectors, items[picked], local, history)
            continue
        grid = np.zeros((stop - first, layout.width), dtype=np.int64)  # [b, width] 0 = padding
        grid[local, layout.within[lo:hi]] = items[picked]
        with one_blas_thread():  # small products: waking BLAS's thread pool costs more
            sims = np.matmul(vectors[grid], vectors[history].transpose(0, 2, 1))  # [b, width, n]
        out[picked] = sims[local, layout.within[lo:hi]]
    return out


def _sparse_block(
    vectors: sp.csr_matrix, items: np.ndarray, local: np.ndarray, history: np.ndarray
) -> np.ndarray:
    """[p, last_n] the cosines of one block of sparse rows: the block's last items densified
    ([b * V, last_n]: query, term -> slots), each stored entry of a candidate's row times its
    own query's row of that, summed per candidate."""
    b, last_n = history.shape
    width = vectors.shape[1]
    owner, columns, values = csr_entries(vectors, history.ravel())
    dense = np.zeros((b * width, last_n))
    dense[(owner // last_n) * width + columns, owner % last_n] = values
    pair, columns, values = csr_entries(vectors, items)  # [M] entries of the candidates' rows
    products = dense[local[pair] * width + columns] * values[:, None]  # [M, last_n]
    out = np.zeros((len(items), last_n))
    if len(pair):  # entries come grouped by candidate, in order
        firsts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        out[pair[firsts]] = np.add.reduceat(products, firsts, axis=0)
    return out
