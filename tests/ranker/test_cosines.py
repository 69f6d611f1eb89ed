"""`seqrec.ranker.cosines`: slots of the last items, CSR entries, profiles and slot cosines."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from seqrec.baselines import normalise_rows
from seqrec.ranker.cosines import Layout, csr_entries, last_slots, slot_cosines, slot_profiles
from seqrec.ranker.queries import Queries


def unit_rows(seed: int, n_items: int = 12, width: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_items, width)) * (rng.random((n_items, width)) < 0.4)
    dense[3] = 0.0  # an item without content
    return normalise_rows(dense)


def queries() -> Queries:
    histories = [np.array([1, 2, 2, 5]), np.array([7]), np.array([], dtype=np.int64)]
    return Queries(histories, [np.arange(len(h)) for h in histories], np.array([9, 9, 9]))


def test_last_slots_hold_the_latest_items_oldest_first():
    slots = last_slots(queries(), 3)
    np.testing.assert_array_equal(slots, [[2, 2, 5], [-1, -1, 7], [-1, -1, -1]])


def test_csr_entries_are_the_rows_stored_entries():
    matrix = sp.csr_matrix(unit_rows(0))
    rows = np.array([4, 3, 4, 0])
    owner, columns, values = csr_entries(matrix, rows)
    rebuilt = np.zeros((len(rows), matrix.shape[1]))
    rebuilt[owner, columns] = values
    np.testing.assert_array_equal(rebuilt, matrix[rows].toarray())


@pytest.mark.parametrize("sparse", [False, True])
def test_slot_profiles_sum_the_filled_slots(sparse):
    dense = unit_rows(1)
    vectors = sp.csr_matrix(dense) if sparse else dense.astype(np.float32)
    slots = last_slots(queries(), 3)
    expected = np.stack([dense[[2, 2, 5]].sum(0), dense[7], np.zeros(dense.shape[1])])
    np.testing.assert_allclose(slot_profiles(vectors, slots), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_slot_cosines_match_the_dot_products(dtype):
    """Dense and sparse rows give each pair's dot product with its own query's slots, whatever
    the pairs' order; slots of a shorter history hold 0; no pairs, no rows."""
    dense = unit_rows(2)
    slots = last_slots(queries(), 3)
    rows = np.array([1, 0, 0, 2, 1, 0])
    items = np.array([4, 3, 9, 1, 7, 2])
    layout = Layout.of(rows, len(slots))
    filled = slots[rows] >= 0
    expected = np.einsum("pd,psd->ps", dense[items], dense[np.maximum(slots[rows], 0)])
    for vectors in (dense.astype(dtype), sp.csr_matrix(dense.astype(dtype))):
        got = slot_cosines(vectors, items, slots, layout)
        assert got.shape == (len(items), 3) and got.dtype == np.float64
        np.testing.assert_allclose(got[filled], expected[filled], rtol=1e-5, atol=1e-7)
        assert (got[~filled] == 0).all()
        empty = slot_cosines(vectors, items[:0], slots, Layout.of(rows[:0], len(slots)))
        assert empty.shape == (0, 3)
