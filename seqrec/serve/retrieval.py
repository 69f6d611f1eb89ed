"""Ranking a large catalogue without scoring every item: candidates from an index, exact scores
on them.

A sequence model's final scores for a history are ``hidden @ item_matrix.T`` (one dot product
per item), plus the history terms' bonuses (repeats, content affinity: they touch only the
history items and their neighbours), re-ranked (`seqrec.rerank`). Only the dot products need
every item, and at H&M's 105k articles they and the [N]-wide re-rank and top-k cost more than
everything else a request does. `CandidateRanking` ranks a batch of histories instead:

1. hidden states [B, D] (`seqrec.serve.scoring.ServedHidden`, in the fastest runtime that agrees
   with the eager model, as the full scores);
2. the ``candidates`` items of largest dot product, from a faiss inverted-file index
   (`seqrec.neighbours.ivf_index`: ``nprobe`` of its lists are scanned);
3. the candidate set: those, the history items and every item a history term touches;
4. on that set only, the exact raw scores, the re-rank (the history remapped into the set) and
   `seqrec.evaluate.top_k`, with the same tie order (item index) as the full ranking.

The list is the full ranking's whenever the index found the true best ``candidates`` by dot
product: an item outside the set scores its dot product alone, below every item found, and a
row is answered only when its k-th item scores above the last one found and k items remain
after the exclusions; any other row is ranked over the whole catalogue (``None`` here). How
often the index's candidates give the full ranking's list is measured by
`benchmarks/serve_retrieval.py`. The scores of history items lifted by the re-rank are relative
to the candidate set, so they may differ from ``seqrec eval``'s; their order does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.evaluate import top_k
from seqrec.neighbours import ivf_index

if TYPE_CHECKING:
    from seqrec.scoring import ModelScorer
    from seqrec.serve.recommender import RankQuery

RETRIEVALS = ("auto", "exact", "index")
INDEX_MIN_ITEMS = 50_000  # "auto" ranks through the index from this many items


@dataclass(frozen=True)
class Retrieval:
    """How a catalogue is ranked (``seqrec serve``'s ``retrieval*`` settings)."""

    mode: str = "auto"  # "exact": every item scored; "index": candidates; "auto": by size
    candidates: int = 200  # items taken from the index per history
    nprobe: int = 64  # inverted lists scanned per history


def uses_index(retrieval: str, n_items: int) -> bool:
    """Whether ``retrieval`` ("auto", "exact" or "index") ranks ``n_items`` through the index."""
    if retrieval not in RETRIEVALS:
        raise ValueError(f"unknown retrieval {retrieval!r}; expected one of {RETRIEVALS}")
    return retrieval == "index" or (retrieval == "auto" and n_items >= INDEX_MIN_ITEMS)


class CandidateRanking:
    """Ranks histories over the candidates of an inverted-file index (see the module doc).

    scorer: the model's scorer (history terms, re-rank, max_len); hidden: seq [B, L] -> [B, D]
    hidden states; item_matrix: [N, D] the scored item vectors; base: the ranking of a
    catalogue this one extends (its first rows), whose index is copied and extended."""

    def __init__(
        self,
        scorer: ModelScorer,
        hidden: Any,
        item_matrix: np.ndarray,
        retrieval: Retrieval,
        base: CandidateRanking | None = None,
    ):
        self.scorer, self.hidden, self.candidates = scorer, hidden, retrieval.candidates
        self.item_matrix = np.ascontiguousarray(item_matrix, dtype=np.float32)  # [N, D]
        self.index = self._index(retrieval.nprobe, base)

    def _index(self, nprobe: int, base: CandidateRanking | None):
        if base is None or base.n_items > self.n_items:
            return ivf_index(self.item_matrix, seed=0, nprobe=nprobe)
        import faiss

        index = faiss.clone_index(base.index)  # the lists of the items it had; the new added
        index.add(self.item_matrix[base.n_items :])
        return index

    @property
    def n_items(self) -> int:
        return len(self.item_matrix)

    def rank(self, queries: list[RankQuery], unavailable: np.ndarray) -> list[Any]:
        """Per query with history, (items [k'], final scores [k']) best first, or None where
        it must be ranked over the whole catalogue."""
        seq = histories_to_tensor([q.history for q in queries], self.scorer.max_len)  # [B, L]
        hidden = np.ascontiguousarray(self.hidden(seq), dtype=np.float32)  # [B, D]
        dots, found = self.index.search(hidden, min(self.candidates, self.n_items))  # [B, M]
        with torch.no_grad():
            entries = [term.last_entries(seq) for term in self.scorer.model.history_terms()]
        term_items = np.concatenate(
            [np.zeros((len(queries), 0), np.int64), *(i.numpy() for i, _ in entries)], axis=1
        )  # [B, S]
        bonuses = np.concatenate(
            [np.zeros((len(queries), 0), np.float32), *(b.numpy() for _, b in entries)], axis=1
        )  # [B, S]
        rows = []
        for row, query in enumerate(queries):
            exclude = np.concatenate([query.exclude, unavailable]).astype(np.int64)
            rows.append(
                self._rank_row(
                    seq[row].numpy(),
                    hidden[row],
                    found[row],
                    dots[row],
                    (term_items[row], bonuses[row]),
                    query.k,
                    exclude,
                )  # fmt: skip
            )
        return rows

    def _rank_row(self, seq_row, hidden_row, found, dots, terms, k: int, exclude):  # noqa: PLR0913
        """One history [L] over its candidates: (items, scores) or None (see `rank`)."""
        found, dots = found[found >= 0], dots[found >= 0]  # [M'] fewer when the lists ran out
        term_items, bonuses = terms
        history = seq_row[seq_row > 0] - 1
        chosen = np.zeros(self.n_items, dtype=bool)  # [N]
        for items in (found, history, term_items):
            chosen[items] = True
        pool = np.flatnonzero(chosen)  # [C] sorted
        whole = len(pool) == self.n_items  # every item is a candidate: nothing to check
        raw = self.item_matrix[pool] @ hidden_row  # [C]
        if len(term_items):  # each item's bonuses summed, as scatter_add does
            raw += np.bincount(term_items, bonuses, self.n_items)[pool].astype(np.float32)
        scores = torch.from_numpy(raw[None].astype(np.float32))  # [1, C]
        if self.scorer.rerank is not None:
            local = np.where(seq_row > 0, np.searchsorted(pool, seq_row - 1) + 1, 0)  # [L]
            scores = self.scorer.rerank(scores, torch.from_numpy(local[None]))
        dropped = _positions(pool, exclude)
        remaining = len(pool) - len(dropped)
        if k > remaining and not whole:
            return None  # the candidates ran out: the whole catalogue decides
        values = scores.numpy()  # [1, C]
        top = top_k(values, min(k, remaining), [dropped] if len(dropped) else None)[0]  # [k]
        best = values[0, top]
        if not whole and (not len(dots) or (len(top) and best[-1] <= dots.min())):
            return None  # an item outside the candidates could rank in the list
        return pool[top], best


def _positions(pool: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Distinct positions in sorted ``pool`` [C] of those of ``items`` it holds."""
    at = np.searchsorted(pool, items)
    inside = at < len(pool)
    return np.unique(at[inside][pool[at[inside]] == items[inside]])
