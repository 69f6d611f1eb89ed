"""Each item's top-k neighbours without N x N work: by content (cosine) or by co-occurrence.

Content (`top_neighbours`): rows are unit vectors, dense or sparse (TF-IDF terms), so the inner
product is the cosine. Up to ``EXACT_LIMIT`` items every pair is compared in row blocks; above
it an inverted-file index (faiss ``IndexIVFFlat``, inner product; chosen over HNSW by
`benchmarks/neighbours.py` for its build time and its deterministic build) proposes
candidates:

- dense rows are searched as they are, so the similarities it returns are exact;
- sparse rows are first projected to ``PROJECTION_DIM`` dimensions (truncated SVD, seeded),
  ``CANDIDATES`` x k candidates are searched there, and their exact cosine on the sparse rows
  decides the k kept.

Only the neighbour set is approximate (its recall against the exact search is measured in
`benchmarks/results/neighbours.md`). The output is the same either way: [N, k] item indices
and [N, k] float32 similarities, each row ordered by similarity, ties by item index. A row
with no content (all zeros) gets similarity 0 everywhere, and zero rows are nobody's
neighbour above similarity 0. The index is built from a seeded k-means on one machine's
BLAS, so the result is the same from run to run on a machine (the thread count can change
float rounding in the k-means, hence which candidates a near-tie keeps).

Co-occurrence (`cooccurrence_top`): the top-n of ``X^T X`` for a [U, N] user-item matrix,
computed for blocks of items whose product is bounded in size, never the whole [N, N] matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from seqrec.progress import stage

log = logging.getLogger(__name__)

EXACT_LIMIT = 20_000  # catalogues up to this size compare every pair
PROJECTION_DIM = 64  # sparse rows: width of the SVD the candidates are searched in
NPROBE = 32  # inverted lists scanned per query
QUERY_BLOCK = 8192  # queries searched at a time
COOCCURRENCE_BUDGET = 20_000_000  # entries of X^T X held at once by `cooccurrence_top`

Advance = Callable[[int], None]  # told how many items are done


def top_neighbours(
    content,
    k: int,
    block: int = 1024,
    exact_limit: int | None = None,
    seed: int = 0,
    advance: Advance | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """([N, k] int64 items, [N, k] float32 cosines) of unit-row ``content`` (dense or sparse).

    Exact below ``exact_limit`` items (default `EXACT_LIMIT`), an IVF index above it."""
    limit = EXACT_LIMIT if exact_limit is None else exact_limit
    count = min(k, content.shape[0])
    if content.shape[0] <= limit or not _has_faiss():
        return exact_top(content, count, block, advance)
    return approximate_top(content, count, seed, advance)


def exact_top(content, count: int, block: int = 1024, advance: Advance | None = None):
    """Every pair compared, ``block`` rows at a time: ([N, count] int64, [N, count] float32)."""
    n_items = content.shape[0]
    transposed = content.T.tocsr() if sp.issparse(content) else content.T
    items = np.empty((n_items, count), dtype=np.int64)
    sims = np.empty((n_items, count), dtype=np.float32)
    for start in range(0, n_items, block):
        dense = content[start : start + block] @ transposed  # [b, N]
        dense = dense.toarray() if sp.issparse(dense) else np.asarray(dense)
        top = np.argpartition(-dense, count - 1, axis=1)[:, :count]  # [b, K] unordered
        order, values = ordered(top, np.take_along_axis(dense, top, axis=1))
        items[start : start + len(order)] = order
        sims[start : start + len(order)] = values
        if advance is not None:
            advance(len(order))
    return items, sims


def ordered(items: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (items, sims) [b, K] ordered by similarity, ties by item index."""
    order = np.lexsort((items, -sims), axis=1)  # [b, K]
    return np.take_along_axis(items, order, axis=1), np.take_along_axis(sims, order, axis=1)


def approximate_top(content, count: int, seed: int = 0, advance: Advance | None = None):
    """IVF search over the rows with content (see the module docstring)."""
    n_items = content.shape[0]
    present = np.flatnonzero(_row_norms(content) > 0)  # [M] items with content
    items = np.tile(np.arange(count, dtype=np.int64), (n_items, 1))  # zero rows: sims 0
    sims = np.zeros((n_items, count), dtype=np.float32)
    if advance is not None:
        advance(n_items - len(present))
    if len(present) == 0:
        return items, sims
    rows = content[present]
    if sp.issparse(rows):
        found, found_sims = _sparse_search(sp.csr_matrix(rows), count, seed, advance)
    else:
        found, found_sims = _dense_search(
            np.ascontiguousarray(rows, np.float32), count, seed, advance
        )
    items[present] = np.where(found >= 0, present[np.maximum(found, 0)], -1)
    sims[present] = found_sims
    items[present], sims[present] = _padded(items[present], sims[present])
    return items, sims


def _dense_search(vectors: np.ndarray, count: int, seed: int, advance: Advance | None):
    """Top ``count`` of unit ``vectors`` [M, D] among themselves by an IVF search: ([M, count]
    row indices, -1 where fewer were found; [M, count] their exact inner products)."""
    index = ivf_index(vectors, seed)
    found = np.empty((len(vectors), count), dtype=np.int64)
    sims = np.empty((len(vectors), count), dtype=np.float32)
    for start in range(0, len(vectors), QUERY_BLOCK):
        part = slice(start, start + QUERY_BLOCK)
        sims[part], found[part] = index.search(vectors[part], count)  # [b, count] each
        if advance is not None:
            advance(len(sims[part]))
    return found, sims


def _sparse_search(rows: sp.csr_matrix, count: int, seed: int, advance: Advance | None):
    """`_dense_search` for sparse unit ``rows`` [M, V]: the rows are clustered on a projection
    (`_projection`), and each cluster's rows are compared exactly, on the sparse rows, with the
    rows of the ``NPROBE`` clusters whose centres are nearest to its own centre."""
    vectors = _projection(rows, seed)
    index = ivf_index(vectors, seed)
    centres = index.quantizer.reconstruct_n(0, index.nlist)  # [L, P]
    _, lists = index.quantizer.search(vectors, 1)  # [M, 1] each row's cluster
    lists = lists.ravel()
    _, probes = index.quantizer.search(centres, index.nprobe)  # [L, nprobe]
    members = np.argsort(lists, kind="stable")  # rows grouped by cluster
    bounds = np.searchsorted(lists[members], np.arange(index.nlist + 1))
    found = np.full((rows.shape[0], count), -1, dtype=np.int64)
    sims = np.full((rows.shape[0], count), -np.inf, dtype=np.float32)
    for cluster in range(index.nlist):
        queries = members[bounds[cluster] : bounds[cluster + 1]]
        if len(queries) == 0:
            continue
        pool = np.concatenate([members[bounds[c] : bounds[c + 1]] for c in probes[cluster]])
        pool = np.sort(pool)
        dense = (rows[queries] @ rows[pool].T).toarray()  # [q, |pool|]
        keep = min(count, len(pool))
        top = np.argpartition(-dense, keep - 1, axis=1)[:, :keep]  # [q, keep]
        found[queries, :keep] = pool[top]
        sims[queries, :keep] = np.take_along_axis(dense, top, axis=1)
        if advance is not None:
            advance(len(queries))
    return found, sims


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        log.warning("faiss is not installed: comparing every pair of items (quadratic)")
        return False
    return True


def _row_norms(content) -> np.ndarray:
    if sp.issparse(content):
        return np.sqrt(np.asarray(content.multiply(content).sum(axis=1)).ravel())
    return np.linalg.norm(np.asarray(content), axis=1)


def _projection(rows, seed: int) -> np.ndarray:
    """[M, P] float32 unit rows: a seeded truncated SVD of sparse ``rows`` [M, V]."""
    from sklearn.decomposition import TruncatedSVD

    dim = min(PROJECTION_DIM, rows.shape[1] - 1, rows.shape[0] - 1)
    if dim < 1:
        return np.asarray(rows.toarray(), dtype=np.float32)
    vectors = TruncatedSVD(n_components=dim, random_state=seed).fit_transform(rows)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def ivf_index(vectors: np.ndarray, seed: int, nprobe: int = NPROBE):
    """A trained and filled faiss ``IndexIVFFlat`` (inner product) over ``vectors`` [M, D]
    (row i has id i), searching ``nprobe`` of its lists."""
    import faiss

    n_rows, dim = vectors.shape
    n_lists = int(max(1, min(4 * np.sqrt(n_rows), n_rows // 39)))  # 39+ training rows a list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, n_lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(vectors)
    index.add(vectors)
    index.nprobe = min(nprobe, n_lists)
    return index


def _padded(items: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (items, sims) [b, K] ordered; places without an item (-1) get similarity 0 and
    the lowest item indices not already in the row."""
    count = items.shape[1]
    sims = np.where(items >= 0, sims, -np.inf).astype(np.float32)
    items, sims = ordered(items, sims)
    for row in np.flatnonzero((items < 0).any(axis=1)):  # fewer found than count: rare
        known = items[row][items[row] >= 0]
        spare = np.setdiff1d(np.arange(count + len(known)), known)[: count - len(known)]
        row_sims = np.concatenate([sims[row][items[row] >= 0], np.zeros(len(spare))])
        padded = ordered(np.concatenate([known, spare])[None], row_sims[None].astype(np.float32))
        items[row], sims[row] = padded[0][0], padded[1][0]
    return items, sims


def keep_top_neighbours(sim: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each row (ties by lower column index)."""
    sim = sim.tocsr()
    sim.sort_indices()
    lengths = np.diff(sim.indptr)
    rows = np.repeat(np.arange(sim.shape[0]), lengths)
    order = np.lexsort((sim.indices, -sim.data, rows))  # by row, then score desc, then column
    rank_in_row = np.arange(len(order)) - sim.indptr[rows[order]]
    keep = order[rank_in_row < n]
    return sp.csr_matrix((sim.data[keep], (rows[keep], sim.indices[keep])), shape=sim.shape)


def cooccurrence_top(
    matrix: sp.csr_matrix,
    n: int,
    kind: str = "cosine",
    keep_self: bool = False,
    budget: int = COOCCURRENCE_BUDGET,
) -> sp.csr_matrix:
    """[N, N] sparse: each item's ``n`` largest co-occurrences in the [U, N] ``matrix``, as
    ``keep_top_neighbours(cooccurrence_similarity(matrix, kind, keep_self), n)`` gives them,
    computed for blocks of items whose rows of ``X^T X`` hold at most about ``budget``
    entries (one item's row is never split)."""
    if kind not in ("cosine", "count"):
        raise ValueError(f"unknown similarity {kind!r}; use 'cosine' or 'count'")
    matrix = sp.csr_matrix(matrix)
    n_items = matrix.shape[1]
    by_item = matrix.T.tocsr()  # [N, U]
    counts = np.asarray(by_item.multiply(by_item).sum(axis=1)).ravel()  # co(i, i)
    norms = np.sqrt(counts)
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    user_lengths = np.diff(matrix.indptr).astype(np.int64)  # items per user
    row_bound = np.minimum(by_item @ user_lengths, n_items)  # entries in each row of X^T X
    parts = []
    with stage("co-occurrence neighbours", total=n_items, unit="items") as advance:
        for start, stop in _budget_blocks(row_bound, budget):
            block = _cooccurrence_rows(matrix, by_item[start:stop], inv, start, kind, keep_self)
            parts.append(keep_top_neighbours(block, n))
            advance(stop - start)
    if not parts:
        return sp.csr_matrix((n_items, n_items))
    return sp.csr_matrix(sp.vstack(parts, format="csr"))


def _cooccurrence_rows(matrix, rows, inv: np.ndarray, start: int, kind: str, keep_self: bool):
    """[b, N] rows ``start:start + b`` of the co-occurrence similarity; ``rows`` [b, U] are
    those items' columns of the [U, N] ``matrix``, ``inv`` [N] 1 / sqrt(co(i, i)) (or 0)."""
    block = sp.csr_matrix(rows @ matrix)  # [b, N]
    if kind == "cosine":
        block = sp.csr_matrix(sp.diags(inv[start : start + rows.shape[0]]) @ block @ sp.diags(inv))
    if not keep_self:
        block.setdiag(0.0, k=start)  # item start + r sits in row r
        block.eliminate_zeros()
    return block


def _budget_blocks(sizes: np.ndarray, budget: int):
    """(start, stop) runs of consecutive rows whose ``sizes`` add up to at most ``budget``
    (a row larger than the budget alone)."""
    start, total = 0, 0
    for row, size in enumerate(sizes.tolist()):
        if row > start and total + size > budget:
            yield start, row
            start, total = row, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)
