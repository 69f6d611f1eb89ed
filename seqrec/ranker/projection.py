"""Narrower image vectors for the ranker: the catalogue's unit image vectors projected onto
their top ``image_dim`` principal directions (`RankerConfig.image_dim`).

An image encoder's vectors are wide (EfficientNet-Lite0: 1280) and the ranker reads many of
them per query (the `new_image` source scans every new item, the image cosine features read
each candidate's row), so their width is most of the bytes a query moves. The basis is the top
right singular vectors of the unit rows (uncentred, so that dot products, the cosines the
ranker reads, are kept best); the projected rows are not put back to unit length, so that their
dot products stay the closest approximation of the full-width cosines.

The basis is fitted once, when the ranker is trained, and saved with it: every later context
(``seqrec eval``, the service, items a live shop adds) projects with the saved basis rather than
fitting its own (another catalogue or processor would give another basis, and the trees were
fitted to this one's cosines). What a width costs and keeps: `benchmarks/ranker_image_dim.py`.
"""

from __future__ import annotations

import numpy as np

from seqrec.baselines import normalise_rows
from seqrec.data.dataset import DataError

CHUNK = 8192  # rows converted to float64 at a time (a full-size catalogue's would not fit)


def fit_image_basis(image: np.ndarray | None, dim: int) -> np.ndarray | None:
    """[dim, D] float32 orthonormal rows: the top ``dim`` right singular vectors of the unit
    rows of ``image`` [N, D] (zero rows, items without an image, add nothing); None when ``dim``
    is 0 or there are no image vectors."""
    if not dim or image is None:
        return None
    unit = np.asarray(normalise_rows(np.asarray(image, dtype=np.float32)))  # [N, D] float32
    check_image_dim(dim, unit.shape[1])
    gram = np.zeros((unit.shape[1], unit.shape[1]), dtype=np.float64)  # [D, D]
    for start in range(0, len(unit), CHUNK):
        block = unit[start : start + CHUNK].astype(np.float64)  # [b, D]
        gram += block.T @ block
    _, directions = np.linalg.eigh(gram)  # [D, D], eigenvalues ascending
    return np.ascontiguousarray(directions[:, ::-1][:, :dim].T, dtype=np.float32)  # [dim, D]


def check_image_dim(dim: int, width: int) -> None:
    """DataError unless ``dim`` (`RankerConfig.image_dim`) is 0 or below the image ``width``:
    checked once the features are built, before any model is trained."""
    if dim >= width:
        raise DataError(
            f"ranker.image_dim = {dim} is not below the image vectors' width {width}: "
            f"set it below {width}, or 0 to read the vectors as encoded"
        )


def project_rows(unit: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """[N, dim] float32: the rows of ``unit`` [N, D] on ``basis`` [dim, D], in float64 before
    the cast (the same float32 values whatever the BLAS threads or batch), ``CHUNK`` rows at a
    time."""
    if unit.shape[1] != basis.shape[1]:
        raise DataError(
            f"the ranker's image projection is {basis.shape[1]}-d but the image vectors are "
            f"{unit.shape[1]}-d: they come from another image encoder than the ranker's"
        )
    projected = np.empty((len(unit), len(basis)), dtype=np.float32)  # [N, dim]
    basis_t = basis.T.astype(np.float64)  # [D, dim]
    for start in range(0, len(unit), CHUNK):
        block = np.asarray(unit[start : start + CHUNK], dtype=np.float64)  # [b, D]
        projected[start : start + CHUNK] = block @ basis_t
    return projected
