"""A bundle ready to serve: item id lookup, display records, scoring and ranking.

Rankings are `seqrec.evaluate.top_k` of the scores `Bundle.scorer` gives, so a served list is
the one ``seqrec eval`` ranks. Scoring is faster than calling the bundle's scorer per request:
the item matrices are computed once at start-up and the raw scores run in the fastest runtime
that agrees with the eager model (`seqrec.serve.scoring`); the history re-rank runs after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from seqrec.bundle import Bundle
from seqrec.evaluate import top_k
from seqrec.serve.scoring import served_scorer

DISPLAY_COLUMNS = ("item_id", "title", "price", "image_path")


@dataclass
class RankQuery:
    history: np.ndarray  # [H] known item indices, most recent last
    k: int
    exclude: np.ndarray  # [E] item indices removed from the ranking


@dataclass
class Ranking:
    items: np.ndarray  # [k'] item indices, best first
    scores: np.ndarray  # [k']
    source: str  # "model" | "popularity"


def none_if_nan(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def display_records(items: pd.DataFrame) -> list[dict[str, Any]]:
    """Per item: id, title, price (None when missing) and the URL of its image (None if none)."""
    return [
        {
            "item_id": item_id,
            "title": str(title),
            "price": none_if_nan(float(price)) if price is not None else None,
            "image_url": (
                f"/items/{quote(item_id, safe='')}/image" if isinstance(image, str) else None
            ),
        }
        for item_id, title, price, image in zip(
            items["item_id"], items["title"], items["price"], items["image_path"], strict=True
        )
    ]


class Recommender:
    """A bundle ready to serve: id lookup, display records and precomputed item matrices."""

    def __init__(self, bundle: Bundle, runtime: str = "auto"):
        self.bundle = bundle
        self.max_len = bundle.config.model.max_len
        self.n_items = bundle.n_items
        self.index = bundle.item_index()
        self.scorer, self.runtime = served_scorer(bundle.scorer(), runtime)
        self.popularity = np.asarray(bundle.popularity, dtype=np.float32)  # [N]
        self.remove_seen = bool(bundle.manifest.get("remove_seen", False))
        self.by_popularity = np.argsort(-self.popularity, kind="stable")  # catalogue order

        items = bundle.items
        self.text_columns = [c for c in items.columns if c not in DISPLAY_COLUMNS]
        self.records = display_records(items)
        self.search_text = (
            items[["title", *self.text_columns]].fillna("").astype(str).agg(" ".join, axis=1)
        ).str.lower()

    def lookup(self, item_ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Known item indices (in order) and the ids the bundle does not know."""
        known, unknown = [], []
        for item_id in item_ids:
            idx = self.index.get(item_id)
            if idx is None:
                unknown.append(item_id)
            else:
                known.append(idx)
        return np.asarray(known, dtype=np.int64), unknown

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """[B, N] float32, the scores of `Bundle.scorer().score`, its raw scores computed with
        the item matrices precomputed once, by `self.runtime` (`seqrec.serve.scoring`)."""
        return self.scorer.score(histories)

    def rank(self, queries: list[RankQuery]) -> list[Ranking]:
        """Rank each query: one model batch for those with history, popularity for the rest."""
        rows = [i for i, query in enumerate(queries) if len(query.history)]
        histories = [queries[i].history for i in rows]
        scores = self.score(histories) if rows else np.empty((0, self.n_items), np.float32)
        row_of = {query_index: row for row, query_index in enumerate(rows)}
        rankings = []
        for i, query in enumerate(queries):
            if i in row_of:
                values, source = scores[row_of[i]], "model"
            else:
                values, source = self.popularity, "popularity"
            items = self.top(values, query.k, query.exclude)
            rankings.append(Ranking(items, values[items], source))
        return rankings

    def top(self, values: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
        """The ``k`` best items by ``values`` [N] (`top_k`), never an excluded one."""
        if len(exclude):
            k = min(k, self.n_items - len(np.unique(exclude)))  # excluded items are never served
        return top_k(values[None], max(k, 0), [exclude] if len(exclude) else None)[0]

    def warm_up(self) -> None:
        """Rank one history, so that the first request does not pay for first-call set-up."""
        empty = np.zeros(0, dtype=np.int64)
        self.rank([RankQuery(np.zeros(1, dtype=np.int64), 1, empty)])

    def catalogue(self, query: str | None) -> np.ndarray:
        """Item indices, best-sellers first, of the items whose text holds ``query`` (all when
        it is empty)."""
        order = self.by_popularity
        if query and query.strip():
            hits = self.search_text.str.contains(query.strip().lower(), regex=False).to_numpy()
            order = order[hits[order]]
        return order

    def detail(self, idx: int) -> dict[str, Any]:
        """Item ``idx``'s display record, training popularity and text columns."""
        row = self.bundle.items.iloc[idx]
        text = {c: none_if_nan(row[c]) for c in self.text_columns}
        text = {c: None if v is None else str(v) for c, v in text.items()}
        return {**self.records[idx], "popularity": float(self.popularity[idx]), "text": text}

    def image_path(self, idx: int) -> str | None:
        """Item ``idx``'s image file, or None when it has none."""
        path = self.bundle.items["image_path"].iloc[idx]
        return path if isinstance(path, str) and path else None
