import numpy as np
import pytest

from seqrec.data.dataset import DataError
from seqrec.ranker import projection
from seqrec.ranker.projection import fit_image_basis, project_rows


def _vectors(seed: int = 0, n: int = 200, rank: int = 6, width: int = 32) -> np.ndarray:
    """[n, width] float32 rows spanning ``rank`` directions, plus a few all-zero rows (items
    without an image)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, width))  # [n, width]
    vectors[::17] = 0.0
    return vectors.astype(np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.where(norms > 0, norms, 1), 0).astype(np.float32)


def test_the_basis_has_orthonormal_rows_of_the_vectors_width():
    basis = fit_image_basis(_vectors(), 4)
    assert basis is not None and basis.shape == (4, 32) and basis.dtype == np.float32
    np.testing.assert_allclose(basis @ basis.T, np.eye(4), atol=1e-5)


def test_vectors_spanning_fewer_directions_than_the_width_keep_their_cosines_exactly():
    vectors = _vectors(rank=6)
    unit = _unit(vectors)
    narrow = project_rows(unit, fit_image_basis(vectors, 6))  # [n, 6]
    np.testing.assert_allclose(narrow @ narrow.T, unit @ unit.T, atol=1e-5)
    assert not narrow[::17].any()  # items without an image stay without


def test_a_narrower_basis_keeps_the_strongest_directions_first():
    rng = np.random.default_rng(1)
    scales = np.array([10.0, 5.0, 1.0, 0.1])  # four directions of falling weight
    vectors = (rng.normal(size=(300, 4)) * scales) @ np.linalg.qr(rng.normal(size=(16, 4)))[0].T
    unit = _unit(vectors)
    errors = []
    for dim in (1, 2, 3, 4):
        narrow = project_rows(unit, fit_image_basis(vectors, dim))
        errors.append(np.abs(narrow @ narrow.T - unit @ unit.T).mean())
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-5


def test_no_width_or_no_images_means_no_projection():
    assert fit_image_basis(_vectors(), 0) is None
    assert fit_image_basis(None, 8) is None


def test_a_width_not_below_the_vectors_is_refused_with_a_message():
    with pytest.raises(DataError, match=r"ranker\.image_dim = 32 is not below .* width 32"):
        fit_image_basis(_vectors(width=32), 32)


def test_vectors_of_another_encoder_are_refused_with_a_message():
    basis = fit_image_basis(_vectors(width=32), 4)
    with pytest.raises(DataError, match="another image encoder"):
        project_rows(np.ones((3, 64), np.float32), basis)


def test_a_row_projects_the_same_alone_as_among_the_catalogue():
    vectors = _vectors(seed=3)
    unit = _unit(vectors)
    basis = fit_image_basis(vectors, 5)
    together = project_rows(unit, basis)
    for row in (0, 5, 101):
        np.testing.assert_array_equal(project_rows(unit[row : row + 1], basis)[0], together[row])


def test_a_catalogue_read_in_chunks_gives_the_same_projection(monkeypatch):
    vectors = _vectors(seed=4, n=300)
    unit = _unit(vectors)
    whole_basis = fit_image_basis(vectors, 5)
    whole = project_rows(unit, whole_basis)
    monkeypatch.setattr(projection, "CHUNK", 7)  # many chunks and a short last one
    chunked_basis = fit_image_basis(vectors, 5)
    np.testing.assert_allclose(np.abs(chunked_basis), np.abs(whole_basis), atol=1e-6)
    np.testing.assert_array_equal(project_rows(unit, whole_basis), whole)
