"""Non-neural baselines: popularity, repeat purchases, item co-occurrence and content KNN.

Every baseline follows the same two calls:

- ``fit(interactions, n_items) -> self`` where ``interactions`` is ``task.fit`` (the only table
  anything may be fitted on), sorted by (user_id, timestamp) as loaders return it.
- ``score(histories) -> [B, N] float32``: one score per catalogue item for each history (item
  indices in time order). Numpy/scipy, deterministic.

"Repeat-then-X" baselines put the user's own history items first (ordered by recency or
frequency) and rank every other item by X below them (`repeat_first`: the model's history
re-rank, `seqrec.rerank`).

Ties are left as ties unless a baseline is told how to break them (``ItemKNN.tie_break``):
evaluation ranks tied targets pessimistically, so an untied-but-arbitrary order is never
rewarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.neighbours import cooccurrence_top, keep_top_neighbours  # noqa: F401 (re-export)
from seqrec.rerank import HistoryFirst, history_key


class Baseline(Protocol):
    """The two calls every baseline here answers (see the module's docstring)."""

    def fit(self, interactions: pd.DataFrame, n_items: int) -> Baseline: ...

    def score(self, histories: list[np.ndarray]) -> np.ndarray: ...  # [B, N] float32


def _history_pairs(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row [E], item [E]) of every entry of a batch of histories."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)  # [B]
    rows = np.repeat(np.arange(len(histories)), lengths)  # [E]
    items = np.concatenate(histories).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    return rows, items


def _last_n(histories: list[np.ndarray], last_n: int | None) -> list[np.ndarray]:
    return histories if last_n is None else [h[len(h) - min(len(h), last_n) :] for h in histories]


def _as_seq(histories: list[np.ndarray]) -> torch.Tensor:
    """[B, L] whole histories as the re-rank reads them (item_idx + 1, right-aligned)."""
    return histories_to_tensor(histories, max([1, *(len(h) for h in histories)]))


def repeat_scores(histories: list[np.ndarray], n_items: int, order: str = "recency") -> np.ndarray:
    """[B, N] float64 ordering key of each user's own history items, 0 for other items: distinct
    positive integers, the first item the largest (`seqrec.rerank.history_key`).

    order="recency": the most recently bought first (by its last position).
    order="frequency": the most often bought first, ties by recency.
    """
    return history_key(_as_seq(histories), n_items, order, torch.float64).numpy()


def repeat_first(base: np.ndarray, histories: list[np.ndarray], order: str) -> np.ndarray:
    """[B, N] float32: the user's history items above every other item, ordered by ``order``;
    other items keep their ``base`` score. The model's history re-rank
    (`seqrec.rerank.HistoryFirst`), run in float64."""
    scores = torch.from_numpy(np.asarray(base, dtype=np.float64))  # [B, N]
    return HistoryFirst(order)(scores, _as_seq(histories)).numpy().astype(np.float32)


def lexicographic(keys: list[np.ndarray]) -> np.ndarray:
    """[B, N] float32 dense ranks ordering items by ``keys[0]``, ties by ``keys[1]``, ...

    keys: [B, N] or [N] arrays, higher = better. Items equal on every key get equal scores (so
    a pessimistic evaluation still sees them as tied); the best item scores the most distinct
    values of its row. Exact in float32 up to 2**24 items.
    """
    shape = np.broadcast_shapes(*(np.shape(k) for k in keys))
    full = [np.broadcast_to(np.asarray(k, dtype=np.float64), shape) for k in keys]
    order = np.lexsort(full[::-1], axis=-1)  # [B, N] ascending by keys[0], then keys[1]...
    new_value = np.zeros(shape, dtype=bool)  # [B, N] sorted position starts a new value
    for key in full:
        sorted_key = np.take_along_axis(key, order, axis=-1)
        new_value[..., 1:] |= sorted_key[..., 1:] != sorted_key[..., :-1]
    dense = np.cumsum(new_value, axis=-1).astype(np.float32) + 1.0  # [B, N]
    out = np.empty(shape, dtype=np.float32)
    np.put_along_axis(out, order, dense, axis=-1)
    return out


def item_counts(interactions: pd.DataFrame, n_items: int, window: int | None) -> np.ndarray:
    """[N] interactions (rows: each unit of a multi-unit purchase) per item, within the last
    ``window`` timestamp units when given.

    The window keeps rows with ``timestamp > max_timestamp - window`` (the last ``window`` days
    for day timestamps, inclusive of the last day).
    """
    times = interactions["timestamp"].to_numpy()
    items = interactions["item_idx"].to_numpy()
    if window is not None and len(times):
        items = items[times > times.max() - window]
    return np.bincount(items, minlength=n_items).astype(np.float64)


@dataclass
class Popularity:
    """Most-bought items first, for every user.

    window_days: count only the last ``window_days`` of the fit table, in the dataset's
    timestamp units (days for H&M; the caller converts for other units). None = all time.
    """

    window_days: int | None = None

    def fit(self, interactions: pd.DataFrame, n_items: int) -> Popularity:
        self.counts_ = item_counts(interactions, n_items, self.window_days)  # [N]
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(
            self.counts_.astype(np.float32), (len(histories), len(self.counts_))
        ).copy()


@dataclass
class RepeatThenPopularity:
    """The user's own history items first (by ``order``), then popularity within ``window``."""

    window: int | None = 28
    order: str = "recency"

    def fit(self, interactions: pd.DataFrame, n_items: int) -> RepeatThenPopularity:
        self.popularity_ = Popularity(self.window).fit(interactions, n_items)
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        return repeat_first(self.popularity_.score(histories), histories, self.order)


def user_item_matrix(
    interactions: pd.DataFrame, n_items: int, binary: bool = True
) -> sp.csr_matrix:
    """[U, N] sparse user-item matrix of the fit table (1 per bought pair, or counts)."""
    users = pd.factorize(interactions["user_id"])[0]
    items = interactions["item_idx"].to_numpy()
    data = np.ones(len(items), dtype=np.float64)
    matrix = sp.csr_matrix((data, (users, items)), shape=(users.max(initial=-1) + 1, n_items))
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    return matrix


def cooccurrence_similarity(
    matrix: sp.csr_matrix, kind: str = "cosine", keep_self: bool = False
) -> sp.csr_matrix:
    """[N, N] item-item similarity from a [U, N] user-item matrix.

    kind="cosine": co(i, j) / sqrt(co(i, i) co(j, j)), where co = matrix.T @ matrix;
    kind="count": co(i, j) itself. The diagonal is zeroed unless ``keep_self``.
    """
    co = sp.csr_matrix(matrix.T @ matrix)  # [N, N]
    if kind == "cosine":
        norms = np.sqrt(co.diagonal())
        inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
        co = sp.csr_matrix(sp.diags(inv) @ co @ sp.diags(inv))
    elif kind != "count":
        raise ValueError(f"unknown similarity {kind!r}; use 'cosine' or 'count'")
    if not keep_self:
        co.setdiag(0.0)
        co.eliminate_zeros()
    return co


def _query_matrix(histories: list[np.ndarray], n_items: int, last_n: int | None, binary: bool):
    """[B, N] sparse query: the last ``last_n`` history items of each user (1 each, or counts)."""
    rows, items = _history_pairs(_last_n(histories, last_n))
    query = sp.csr_matrix((np.ones(len(items)), (rows, items)), shape=(len(histories), n_items))
    query.sum_duplicates()
    if binary:
        query.data[:] = 1.0
    return query


@dataclass
class ItemKNN:
    """Item co-occurrence KNN: items bought by the same users as the user's history items.

    A user's score for item j is the sum over their (last ``last_n``) history items h of
    sim(h, j), with sim from `cooccurrence_similarity` on the binary user-item matrix of the fit
    table (``similarity``: "cosine" or "count").
    neighbours: keep only each item's top neighbours (None = all). keep_self: an item is its own
    neighbour (so history items score too). binary_history: a history item counts once however
    often it was bought. tie_break: keys that order items with equal similarity sums, in turn:
    "popularity" (fit-table counts) and/or "recency" (the user's most recent items first); the
    scores are then exact lexicographic ranks (`lexicographic`). On sparse data many items tie
    (every item bought only by this user scores the same), so this matters: see benchmarks.
    """

    last_n: int | None = None
    neighbours: int | None = None
    keep_self: bool = False
    similarity: str = "cosine"
    binary_history: bool = True
    tie_break: tuple[str, ...] = ("popularity",)

    def fit(self, interactions: pd.DataFrame, n_items: int) -> ItemKNN:
        unknown = set(self.tie_break) - {"popularity", "recency"}
        if unknown:
            raise ValueError(f"unknown tie_break {sorted(unknown)}; use popularity, recency")
        matrix = user_item_matrix(interactions, n_items)
        if self.neighbours is not None:  # top neighbours in item blocks: bounded memory
            sim = cooccurrence_top(matrix, self.neighbours, self.similarity, self.keep_self)
        else:
            sim = cooccurrence_similarity(matrix, self.similarity, self.keep_self)
        self.sim_ = sim.tocsr()  # [N, N] float64
        self.popularity_ = item_counts(interactions, n_items, None)  # [N]
        self.n_items_ = n_items
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        query = _query_matrix(histories, self.n_items_, self.last_n, self.binary_history)
        scores = np.asarray((query @ self.sim_).todense())  # [B, N] float64
        if not self.tie_break:
            return scores.astype(np.float32)
        keys = [scores]
        for name in self.tie_break:
            if name == "popularity":
                keys.append(self.popularity_)
            else:
                keys.append(repeat_scores(histories, self.n_items_, "recency"))
        return lexicographic(keys)


def normalise_rows(vectors, dtype: type | None = None) -> np.ndarray | sp.csr_matrix:
    """L2-normalised rows of a dense array or sparse matrix (zero rows stay zero), in ``dtype``
    (default: float32 for a float32 dense array, float64 otherwise)."""
    if sp.issparse(vectors):
        vectors = sp.csr_matrix(vectors, dtype=dtype or np.float64)
        norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    else:
        vectors = np.asarray(vectors)
        default = np.float32 if vectors.dtype == np.float32 else np.float64
        vectors = vectors.astype(dtype or default)
        norms = np.linalg.norm(vectors, axis=1)
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(vectors.dtype)
    if sp.issparse(vectors):
        return sp.csr_matrix(sp.diags(inv) @ vectors)
    return vectors * inv[:, None]


@dataclass
class ContentKNN:
    """Cosine similarity of each item's content vector to the user's last ``last_n`` history
    items, summed. Needs no interactions, so cold items are scored like any other.

    item_vectors: [N, D] dense array or scipy sparse matrix (TF-IDF rows, embeddings...); rows
    are L2-normalised here, zero rows (no content) score 0. A history item is its own nearest
    neighbour (cosine 1), so recent purchases rank high too.
    binary_history: count an item repeated among the last ``last_n`` once.
    """

    item_vectors: np.ndarray | sp.spmatrix
    last_n: int | None = 5
    binary_history: bool = False

    def fit(self, interactions: pd.DataFrame, n_items: int) -> ContentKNN:
        if self.item_vectors.shape[0] != n_items:
            raise ValueError(f"item_vectors has {self.item_vectors.shape[0]} rows, not {n_items}")
        self.vectors_ = normalise_rows(self.item_vectors)  # [N, D]
        self.n_items_ = n_items
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        query = _query_matrix(histories, self.n_items_, self.last_n, self.binary_history)
        profile = query @ self.vectors_  # [B, D] sum of the history items' unit vectors
        scores = self.vectors_ @ profile.T  # [N, B]
        if sp.issparse(scores):
            scores = scores.toarray()
        return np.ascontiguousarray(np.asarray(scores).T, dtype=np.float32)  # [B, N]


@dataclass
class RepeatThenContentKNN:
    """The user's own history items first (by ``order``), then content KNN over the rest."""

    item_vectors: np.ndarray | sp.spmatrix
    last_n: int | None = 5
    order: str = "recency"

    def fit(self, interactions: pd.DataFrame, n_items: int) -> RepeatThenContentKNN:
        self.content_ = ContentKNN(self.item_vectors, self.last_n).fit(interactions, n_items)
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        return repeat_first(self.content_.score(histories), histories, self.order)
