"""Top-k neighbours: the approximate path against the exact one, zero rows, determinism, and the
blocked co-occurrence top-k against the whole product."""

import numpy as np
import pytest
import scipy.sparse as sp

from seqrec.baselines import cooccurrence_similarity, keep_top_neighbours
from seqrec.models.affinity import neighbour_graph, unit_rows
from seqrec.neighbours import cooccurrence_top, exact_top, top_neighbours

pytest.importorskip("faiss")


def clustered(n: int = 800, dim: int = 24, clusters: int = 12, seed: int = 0) -> np.ndarray:
    """[n, dim] unit rows drawn from a Gaussian mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    rows = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return unit_rows(rows.astype(np.float32))


def sparse_clustered(n: int = 800, vocab: int = 400, seed: int = 0) -> sp.csr_matrix:
    """[n, vocab] sparse unit rows: each row a few words of its topic and a few of any."""
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, vocab, size=(16, 20))
    rows, cols = [], []
    for row in range(n):
        words = np.concatenate([rng.choice(topics[row % 16], 6), rng.integers(0, vocab, 3)])
        rows += [row] * len(words)
        cols += list(words)
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, vocab))
    return unit_rows(counts)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(
        np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(found, exact, strict=True)])
    )


@pytest.mark.parametrize("make", [clustered, sparse_clustered])
def test_approximate_path_finds_the_exact_neighbours_with_exact_similarities(make):
    content = make()
    exact, exact_sims = exact_top(content, 20)
    items, sims = top_neighbours(content, 20, exact_limit=10)  # forced onto the index
    assert items.shape == sims.shape == (content.shape[0], 20)
    assert recall(items, exact) > 0.9
    dense = content.toarray() if sp.issparse(content) else content
    true = np.einsum("nd,nkd->nk", dense, dense[items])  # [N, K] cosine of every kept pair
    np.testing.assert_allclose(sims, true, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-7).all()  # each row ordered by similarity
    assert (sims[:, -1] <= exact_sims[:, -1] + 1e-5).all()  # never better than exact


@pytest.mark.parametrize("make", [clustered, sparse_clustered])
def test_rows_without_content_get_no_neighbours_and_are_nobodys(make):
    content = make()
    empty = np.arange(0, content.shape[0], 7)
    if sp.issparse(content):
        content = sp.csr_matrix(
            sp.diags((~np.isin(np.arange(content.shape[0]), empty)) * 1.0) @ content
        )
    else:
        content = content.copy()
        content[empty] = 0.0
    for limit in (10, None):  # approximate, exact
        items, sims = top_neighbours(content, 15, exact_limit=limit)
        assert (sims[empty] == 0).all()
        assert not np.isin(items[sims > 0], empty).any()
        assert (items >= 0).all() and (items < content.shape[0]).all()


@pytest.mark.parametrize("make", [clustered, sparse_clustered])
def test_approximate_path_is_deterministic(make):
    first = top_neighbours(make(), 10, exact_limit=10)
    second = top_neighbours(make(), 10, exact_limit=10)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_neighbour_graph_keeps_its_output_on_both_paths():
    content = clustered(300)
    items, sims = neighbour_graph(content, 8, exact_limit=10)
    exact_items, exact_sims = neighbour_graph(content, 8)
    assert items.dtype == exact_items.dtype and sims.dtype == exact_sims.dtype
    assert (items[:, 0] == np.arange(300)).float().mean() > 0.95  # itself first
    assert recall(items.numpy(), exact_items.numpy()) > 0.9


@pytest.mark.parametrize(("kind", "keep_self"), [("cosine", False), ("count", True)])
def test_blocked_cooccurrence_top_equals_the_whole_product(kind, keep_self):
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 200, 3000), rng.zipf(1.5, 3000) % 150
    matrix = sp.csr_matrix((np.ones(3000), (users, items)), shape=(200, 150))
    matrix.data[:] = 1.0
    whole = keep_top_neighbours(cooccurrence_similarity(matrix, kind, keep_self), 5)
    blocked = cooccurrence_top(matrix, 5, kind, keep_self, budget=500)  # many blocks
    assert (blocked != whole).nnz == 0
    assert blocked.nnz == whole.nnz > 0
