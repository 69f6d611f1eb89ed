"""Ranking metrics on full-catalogue scores, per user, at any cut-off k.

Everything starts from `target_ranks`: the 1-based rank of every target item of a user among all
N catalogue items. The metric functions turn those ranks into one value per user (a [U] array),
so they can be averaged, split into breakdowns and bootstrapped (`bootstrap_ci`).

Conventions:

- Ties are pessimistic: a target's rank is the number of (non-excluded) items scoring at least
  as high as it, itself included. A target tied with other items is ranked after all of them,
  other targets included, so a constant scorer earns nothing and every metric is a lower bound
  of the value for any tie-breaking order.
- Excluded items (the user's seen items when the protocol removes them) score -inf and are never
  counted above a target. A target that is itself excluded cannot be recommended at all; it is
  dropped from the user's targets (rank 0 in `target_ranks_flat`, absent from `target_ranks`).
  In the ML-1M protocol targets never occur in the history, so nothing is dropped there.
- Every user is expected to have at least one target; a user with none gets NaN.
- `mrr(ranks)` is the full mean reciprocal rank (1 / best rank, no cut-off); `mrr(ranks, k)`
  is MRR@k (0 when no target is in the top k).
"""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 24  # max elements of one [targets, N] comparison block


def target_ranks_flat(
    scores: np.ndarray,
    rows: np.ndarray,
    items: np.ndarray,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """Pessimistic 1-based ranks of (row, item) target pairs; 0 where the target is excluded.

    scores: [B, N] float; rows, items: [T] int (target t is item ``items[t]`` of row ``rows[t]``);
    excluded: [B, N] bool or None. Returns [T] int64.
    """
    scores = np.asarray(scores)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    rows = np.asarray(rows, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if excluded is not None:
        scores = np.where(excluded, -np.inf, scores)  # [B, N]
    ranks = np.zeros(len(rows), dtype=np.int64)  # [T]
    step = max(1, _CHUNK // max(1, scores.shape[1]))
    for start in range(0, len(rows), step):
        r, i = rows[start : start + step], items[start : start + step]
        row_scores = scores[r]  # [t, N]
        at_least = row_scores >= scores[r, i][:, None]  # [t, N]
        if excluded is not None:
            at_least &= ~excluded[r]
        ranks[start : start + step] = at_least.sum(axis=1)
    if excluded is not None:
        ranks[excluded[rows, items]] = 0
    return ranks


def target_ranks(
    scores: np.ndarray,
    targets: list[np.ndarray],
    exclude: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """1-based rank of each target of each user over the whole catalogue.

    scores: [B, N]; targets: B arrays of item indices; exclude: B arrays of item indices to remove
    (set to -inf, never counted above a target) or None. Ties are pessimistic. Targets that are
    themselves excluded are dropped, so a returned array can be shorter than its targets.
    """
    rows, items = _csr_pairs(targets)
    excluded = None
    if exclude is not None:
        excluded = np.zeros(scores.shape, dtype=bool)  # [B, N]
        ex_rows, ex_items = _csr_pairs(exclude)
        excluded[ex_rows, ex_items] = True
    ranks = target_ranks_flat(scores, rows, items, excluded)  # [T]
    lengths = np.array([len(t) for t in targets], dtype=np.int64)
    per_user = np.split(ranks, np.cumsum(lengths)[:-1])
    return [r[r > 0] for r in per_user]


# ---------------------------------------------------------------- per-user metrics from ranks


def _flat(ranks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR view: (ranks [T] float64, user of each rank [T], targets per user [U])."""
    counts = np.array([len(r) for r in ranks], dtype=np.int64)  # [U]
    flat = np.concatenate(ranks).astype(np.float64) if len(ranks) else np.zeros(0)  # [T]
    user = np.repeat(np.arange(len(ranks)), counts)  # [T]
    return flat, user, counts


def _per_user_sum(values: np.ndarray, user: np.ndarray, n_users: int) -> np.ndarray:
    return np.bincount(user, weights=values, minlength=n_users).astype(np.float64)  # [U]


def _n_targets(counts: np.ndarray, n_targets: np.ndarray | None) -> np.ndarray:
    n = counts if n_targets is None else np.asarray(n_targets, dtype=np.int64)
    return n.astype(np.float64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def hits_at_k(ranks: list[np.ndarray], k: int) -> np.ndarray:
    """[U] number of targets ranked in the top k."""
    flat, user, counts = _flat(ranks)
    return _per_user_sum((flat <= k).astype(np.float64), user, len(counts))


def hit_rate(ranks: list[np.ndarray], k: int) -> np.ndarray:
    """[U] hr@k (accuracy@k): 1 if any target is in the top k, else 0."""
    _, _, counts = _flat(ranks)
    return np.where(counts > 0, (hits_at_k(ranks, k) > 0).astype(np.float64), np.nan)


def precision(ranks: list[np.ndarray], k: int) -> np.ndarray:
    """[U] precision@k: hits in the top k / k (k, not min(k, N): as TREC P@k)."""
    _, _, counts = _flat(ranks)
    return np.where(counts > 0, hits_at_k(ranks, k) / k, np.nan)


def recall(ranks: list[np.ndarray], k: int, n_targets: np.ndarray | None = None) -> np.ndarray:
    """[U] recall@k: hits in the top k / number of targets (``len(ranks[u])`` by default)."""
    _, _, counts = _flat(ranks)
    return _safe_div(hits_at_k(ranks, k), _n_targets(counts, n_targets))


def f1(ranks: list[np.ndarray], k: int, n_targets: np.ndarray | None = None) -> np.ndarray:
    """[U] F1@k: harmonic mean of precision@k and recall@k (0 when both are 0)."""
    p, r = precision(ranks, k), recall(ranks, k, n_targets)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return np.where(np.isnan(p) | np.isnan(r), np.nan, out)


def average_precision(
    ranks: list[np.ndarray], k: int, n_targets: np.ndarray | None = None
) -> np.ndarray:
    """[U] AP@k as in the H&M Kaggle competition: sum of precision@rank over the hits in the top
    k, divided by min(number of targets, k).

    The j-th best-ranked target (1-based) at rank r contributes j / r. TREC AP (ir-measures
    ``AP@k``) divides by the number of targets instead; both agree when |targets| <= k.
    """
    flat, user, counts = _flat(ranks)
    order = np.lexsort((flat, user))  # by user, then rank
    flat, user = flat[order], user[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # [U]
    j = np.arange(len(flat)) - starts[user] + 1  # [T] position among the user's targets
    contrib = np.where(flat <= k, j / flat, 0.0)
    n = np.minimum(_n_targets(counts, n_targets), k)
    return _safe_div(_per_user_sum(contrib, user, len(counts)), n)


def ndcg(ranks: list[np.ndarray], k: int, n_targets: np.ndarray | None = None) -> np.ndarray:
    """[U] NDCG@k with binary relevance; the ideal DCG puts min(|targets|, k) hits on top."""
    flat, user, counts = _flat(ranks)
    dcg = _per_user_sum(np.where(flat <= k, 1.0 / np.log2(flat + 1.0), 0.0), user, len(counts))
    n = np.minimum(_n_targets(counts, n_targets), k).astype(np.int64)  # [U]
    ideal_prefix = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])  # [k+1]
    return _safe_div(dcg, ideal_prefix[n])


def mrr(ranks: list[np.ndarray], k: int | None = None) -> np.ndarray:
    """[U] reciprocal rank of the best-ranked target; full by default, MRR@k when k is given."""
    flat, user, counts = _flat(ranks)
    best = np.full(len(counts), np.inf)
    np.minimum.at(best, user, flat)
    rr = 1.0 / best
    if k is not None:
        rr = np.where(best <= k, rr, 0.0)
    return np.where(counts > 0, rr, np.nan)


METRICS = ("hr", "precision", "recall", "f1", "map", "ndcg")


def metrics_at_k(ranks: list[np.ndarray], k: int) -> dict[str, np.ndarray]:
    """All @k metrics, name -> [U]: hr, precision, recall, f1, map, ndcg (names with ``@k``)."""
    return {
        f"hr@{k}": hit_rate(ranks, k),
        f"precision@{k}": precision(ranks, k),
        f"recall@{k}": recall(ranks, k),
        f"f1@{k}": f1(ranks, k),
        f"map@{k}": average_precision(ranks, k),
        f"ndcg@{k}": ndcg(ranks, k),
    }


# ---------------------------------------------------------------- binary preference view


def pairwise_accuracy_auc(pos_scores: np.ndarray, neg_scores: np.ndarray) -> tuple[float, float]:
    """(accuracy, AUC) of positive scores against sampled-negative scores.

    pos_scores: [P]; neg_scores: [P, M] (M sampled negatives per positive) or [P] (one each).
    accuracy: fraction of (positive, its own negative) pairs where the positive scores strictly
    higher. AUC: probability that a random positive outscores a random negative over all pairs,
    ties counting one half (Mann-Whitney). A diagnostic only, never a headline number: it ignores
    the full-catalogue ranking.
    """
    pos = np.asarray(pos_scores, dtype=np.float64).reshape(-1)  # [P]
    neg = np.asarray(neg_scores, dtype=np.float64).reshape(len(pos), -1)  # [P, M]
    accuracy = float((pos[:, None] > neg).mean())
    values = np.concatenate([pos, neg.reshape(-1)])
    # average ranks handle ties; AUC = (sum of positive ranks - P(P+1)/2) / (P * n_neg)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    _, first, group_size = np.unique(sorted_values, return_index=True, return_counts=True)
    avg_rank = first + (group_size + 1) / 2.0  # [distinct values]
    rank = np.empty(len(values))
    rank[order] = np.repeat(avg_rank, group_size)
    n_pos, n_neg = len(pos), neg.size
    auc = (rank[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return accuracy, float(auc)


# ---------------------------------------------------------------- confidence intervals


def bootstrap_ci(
    per_user: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over users (resampling users with replacement).

    per_user: [U] or [U, M] (M metrics resampled with the same users, a paired bootstrap).
    NaN rows are dropped. Returns (low, high) floats for [U], or ([M], [M]) arrays for [U, M].
    Vectorised: each resample is a row of multinomial counts, and all means are one matmul.
    """
    values = np.asarray(per_user, dtype=np.float64)
    one_d = values.ndim == 1
    values = values.reshape(len(values), -1)  # [U, M]
    values = values[~np.isnan(values).any(axis=1)]
    n_users, n_metrics = values.shape
    if n_users == 0:
        nan = np.full(n_metrics, np.nan)
        return (float("nan"), float("nan")) if one_d else (nan, nan.copy())
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=n_boot)  # [n_boot, U]
    means = counts @ values / n_users  # [n_boot, M]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)  # [M] each
    if one_d:
        return float(low[0]), float(high[0])
    return low, high


def _csr_pairs(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) pairs of a list of index arrays: ([E], [E])."""
    lengths = np.array([len(a) for a in lists], dtype=np.int64)
    rows = np.repeat(np.arange(len(lists)), lengths)
    values = np.concatenate(lists).astype(np.int64) if len(lists) else np.zeros(0, np.int64)
    return rows, values
