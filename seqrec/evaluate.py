"""Full-catalogue evaluation of any scorer on an `EvalTask`, with warm/cold breakdowns and CIs.

A scorer maps user histories to one score per catalogue item. `evaluate` scores the task's
users in batches, ranks every target against all N items (`seqrec.metrics.target_ranks_flat`,
pessimistic ties) and reports per-user metrics, their means, bootstrap CIs and counts.

Breakdowns: a target is *cold* when its item never occurs in ``task.fit`` (`EvalTask.cold_items`)
and *warm* otherwise. The ``cold:`` metrics keep the ranks over the full catalogue as usual but
only the cold targets, over the users having at least one cold target; ``warm:`` likewise.

`top_k` gives the ranked item list that the same scores produce (excluded items removed, ties
broken by the lower item index); the server ranks with it, so served and evaluated rankings agree.
When scores tie, the evaluated ranks are pessimistic and can only be worse than `top_k`'s order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from seqrec.data.split import EvalTask
from seqrec.metrics import bootstrap_ci, metrics_at_k, mrr, target_ranks_flat
from seqrec.progress import track

GROUPS = ("", "warm:", "cold:")  # metric name prefixes: all targets, warm targets, cold targets


class Scorer(Protocol):
    def score(self, histories: list[np.ndarray]) -> np.ndarray:  # [B, N] float32
        ...


def task_queries(scorer: Scorer, task: EvalTask):
    """The task's users as `seqrec.ranker.queries.Queries` (histories, their times, cutoffs)
    when ``scorer`` is time-aware (has ``score_queries``: the two-stage ranker), else None."""
    if not hasattr(scorer, "score_queries"):
        return None
    from seqrec.ranker.queries import queries_from_task  # the ranker imports this module

    return queries_from_task(task)


@dataclass
class EvalResult:
    """Per-user metrics and their summary for one evaluation run.

    per_user: name -> [U_group] values (``ndcg@10``, ``cold:recall@12``...) for the task rows
    ``user_rows[group]`` (group "all", "warm" or "cold"); metrics: name -> mean;
    ci: name -> (low, high) 95% bootstrap interval;
    counts: ``users``, ``targets``, ``warm:users``, ``warm:targets``, ``cold:users``,
    ``cold:targets``, ``dropped_targets`` (targets excluded as seen items), ``cold:items``
    (catalogue items without a fit interaction) and ``cold:target_items`` (of them, the ones
    some user's target; see `cold_items_note`);
    ranks: [T] pessimistic rank of every target of the task (0 = dropped).
    """

    stage: str
    ks: tuple[int, ...]
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    user_rows: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    ranks: np.ndarray | None = None

    def format(self, names: list[str] | None = None) -> str:
        """One ``name value [low, high]`` line per metric."""
        lines = []
        for name in names or list(self.metrics):
            low, high = self.ci.get(name, (np.nan, np.nan))
            lines.append(f"{name:<22} {self.metrics[name]:.4f}  [{low:.4f}, {high:.4f}]")
        return "\n".join(lines)


def cold_items_note(
    counts: dict[str, int], threshold: float = 0.5, min_items: int = 10
) -> str | None:
    """A warning when most cold items (at least ``min_items`` of them) are targets, else None.

    When a catalogue holds only the items its users interacted with (a subset built from
    interactions), an item without a fit interaction is one that is interacted with later:
    "cold" then predicts "target", and any ranker or feature that tells cold items apart
    scores cold (and overall) metrics no real catalogue would give it.
    """
    n_cold = counts.get("cold:items", 0)
    targeted = counts.get("cold:target_items", 0)
    if n_cold < min_items or targeted / n_cold < threshold:
        return None
    return (
        f"{targeted} of the {n_cold} cold items ({targeted / n_cold:.0%}) are targets: the "
        "catalogue holds few items nobody interacts with, so anything that tells a cold item "
        "from a warm one predicts the targets here"
    )


def exclusion_mask(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """[B, N] bool, True at each user's history items."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    mask = np.zeros((len(histories), n_items), dtype=bool)
    if lengths.sum():
        mask[np.repeat(np.arange(len(histories)), lengths), np.concatenate(histories)] = True
    return mask


def top_k(scores: np.ndarray, k: int, exclude: list[np.ndarray] | np.ndarray | None = None):
    """[B, k] item indices by decreasing score, ties broken by the lower item index.

    exclude: B arrays of item indices, or a [B, N] bool mask, removed from the ranking (scored
    -inf: they only appear if k exceeds the number of remaining items). k is capped at N.

    Only the items scoring at least their row's k-th best value (`torch.topk` finds it) are
    sorted: the same list as sorting all N, at a fraction of the cost.
    """
    scores = np.asarray(scores)  # [B, N]
    dtype = np.float32 if scores.dtype == np.float32 else np.float64  # exact for the input
    scores = np.require(scores, dtype, ["C", "W"])
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_rows, n_items = scores.shape
    k = min(int(k), n_items)
    if exclude is not None:
        scores = scores.copy()
        if isinstance(exclude, np.ndarray):
            scores[exclude] = -np.inf
        elif sum(len(items) for items in exclude):
            lengths = [len(items) for items in exclude]
            scores[np.repeat(np.arange(n_rows), lengths), np.concatenate(exclude)] = -np.inf
    if k == 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    best = torch.topk(torch.from_numpy(scores), k, dim=1, sorted=False).values  # [B, k]
    kth = best.amin(dim=1, keepdim=True).numpy()  # [B, 1] k-th largest score
    flat = np.flatnonzero(scores >= kth)  # [C] candidates, every tie of the k-th included
    rows, cols = flat // n_items, flat % n_items
    order = np.lexsort((cols, -scores.ravel()[flat], rows))  # by row, score down, index up
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))  # [B] each row's first candidate
    first_k = np.arange(len(rows)) - starts[rows] < k  # [C]
    return cols[first_k].reshape(n_rows, k)


def batch_histories(task: EvalTask, start: int, stop: int) -> list[np.ndarray]:
    """The histories of the task's users ``start:stop`` (item indices, time order): one array
    per user of the batch only, never one per user of the task."""
    indptr = task.history_indptr[start : stop + 1]  # [b + 1]
    items = task.history_items[indptr[0] : indptr[-1]]
    return np.split(items, indptr[1:-1] - indptr[0])


def evaluate(
    scorer: Scorer,
    task: EvalTask,
    ks: tuple[int, ...] = (10, 12),
    remove_seen: bool = False,
    bootstrap: int = 1000,
    batch_size: int = 256,
    seed: int = 0,
) -> EvalResult:
    """Rank every target of ``task`` against the full catalogue and summarise.

    remove_seen: exclude each user's history items from the ranking (ML-1M protocol); targets
    that are history items are then dropped (counted in ``dropped_targets``).
    bootstrap: number of bootstrap resamples for the CIs (0 = none).
    """
    queries = task_queries(scorer, task)
    t_rows = np.repeat(np.arange(len(task)), np.diff(task.target_indptr))  # [T] user row
    ranks = np.zeros(len(task.target_items), dtype=np.int64)  # [T]
    batches = range(0, len(task), batch_size)
    for start in track(batches, f"evaluate {task.stage}: {len(task):,} users", unit="batches"):
        stop = min(start + batch_size, len(task))
        batch = batch_histories(task, start, stop)
        if queries is None:
            scores = np.asarray(scorer.score(batch))  # [B, N]
        else:
            score_queries = getattr(scorer, "score_queries")  # noqa: B009 (time-aware scorer)
            scores = np.asarray(score_queries(queries.subset(slice(start, stop))))  # [B, N]
        if scores.shape != (len(batch), task.n_items):
            raise ValueError(
                f"scorer returned {scores.shape}, expected {(len(batch), task.n_items)}"
            )
        excluded = exclusion_mask(batch, task.n_items) if remove_seen else None
        lo, hi = task.target_indptr[start], task.target_indptr[stop]
        ranks[lo:hi] = target_ranks_flat(
            scores, t_rows[lo:hi] - start, task.target_items[lo:hi], excluded
        )

    cold_items = task.cold_items()  # [N]
    cold = cold_items[task.target_items]  # [T]
    result = EvalResult(stage=task.stage, ks=tuple(ks), ranks=ranks)
    result.counts["dropped_targets"] = int((ranks == 0).sum())
    result.counts["cold:items"] = int(cold_items.sum())
    result.counts["cold:target_items"] = len(np.unique(task.target_items[cold]))
    for prefix in GROUPS:
        keep = ranks > 0
        if prefix == "warm:":
            keep &= ~cold
        elif prefix == "cold:":
            keep &= cold
        n_per_user = np.bincount(t_rows[keep], minlength=len(task))  # [U]
        rows = np.flatnonzero(n_per_user)  # users with at least one kept target
        per_user_ranks = np.split(ranks[keep], np.cumsum(n_per_user[rows])[:-1])
        if len(rows) == 0:
            per_user_ranks = []
        result.user_rows[prefix.rstrip(":") or "all"] = rows
        result.counts[f"{prefix}users"] = len(rows)
        result.counts[f"{prefix}targets"] = int(keep.sum())
        group: dict[str, np.ndarray] = {}
        for k in ks:
            group.update(metrics_at_k(per_user_ranks, k))
        group["mrr"] = mrr(per_user_ranks)
        names = list(group)
        table = np.stack([group[name] for name in names], axis=1) if len(rows) else None
        if bootstrap and table is not None:
            bounds = np.asarray(bootstrap_ci(table, n_boot=bootstrap, seed=seed))  # [2, M]
        for j, name in enumerate(names):
            full = prefix + name
            result.per_user[full] = group[name]
            result.metrics[full] = float(group[name].mean()) if len(rows) else float("nan")
            if bootstrap and table is not None:
                result.ci[full] = (float(bounds[0, j]), float(bounds[1, j]))
    return result


def paired_difference(
    first: EvalResult, second: EvalResult, metric: str, bootstrap: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): ``first`` minus ``second`` on ``metric`` over the users both results
    hold (two rankers evaluated on one task), with a paired 95% bootstrap CI: each resample
    draws users once and takes both rankers' values for them, so the user-to-user spread that
    the two share cancels. Far narrower than comparing the two separate CIs."""
    group = metric.split(":")[0] if ":" in metric else "all"
    rows_first, rows_second = first.user_rows[group], second.user_rows[group]
    common = np.intersect1d(rows_first, rows_second)  # user rows of the task, sorted
    diff = (
        first.per_user[metric][np.searchsorted(rows_first, common)]
        - second.per_user[metric][np.searchsorted(rows_second, common)]
    )  # [U]
    if len(diff) == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_ci(diff, n_boot=bootstrap, seed=seed) if bootstrap else (np.nan,) * 2
    return float(diff.mean()), float(low), float(high)
