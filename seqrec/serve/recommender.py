"""A bundle ready to serve: item id lookup, display records, scoring and ranking.

Rankings are `seqrec.evaluate.top_k` of the scores `Bundle.scorer` gives, so a served list is
the one ``seqrec eval`` ranks. Scoring is faster than calling the bundle's scorer per request:
the item matrices are computed once at start-up and the raw scores run in the fastest runtime
that agrees with the eager model (`seqrec.serve.scoring`); the history re-rank runs after it.
A large catalogue (``retrieval``, from `seqrec.serve.retrieval.INDEX_MIN_ITEMS` items by
default) is ranked over the candidates of an index instead, with the same list whenever the
index finds the best items by dot product (`seqrec.serve.retrieval`).

A two-stage bundle ranks with its ranker (`seqrec.ranker.scorer.RankerScorer`) over the log it
was saved with, reading the sequence model in that runtime. Its requests may say when the
shopper asks (``at``) and when each history item was bought (``history_times``): only events
before ``at`` are read. By default ``at`` is right after the log's last event (the day after
it for day timestamps) and each history item was bought right before ``at``, as `RankerScorer`
takes histories without times.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import torch

from seqrec.bundle import Bundle
from seqrec.evaluate import top_k
from seqrec.ranker.events import DAY_UNITS
from seqrec.ranker.queries import Queries
from seqrec.ranker.scorer import RankerScorer
from seqrec.ranker.sources import prepare as prepare_sources
from seqrec.scoring import ModelScorer
from seqrec.serve.retrieval import CandidateRanking, Retrieval, uses_index
from seqrec.serve.schemas import RecommendRequest, Timestamp
from seqrec.serve.scoring import ServedHidden, ServedScores, fast_scores

logger = logging.getLogger(__name__)

DISPLAY_COLUMNS = ("item_id", "title", "price", "image_path")


@dataclass
class RankQuery:
    history: np.ndarray  # [H] known item indices, most recent last
    k: int
    exclude: np.ndarray  # [E] item indices removed from the ranking
    times: np.ndarray | None = None  # [H] when each was bought (two-stage bundles)
    cutoff: int | None = None  # when the shopper asks (two-stage bundles)


@dataclass
class Ranking:
    items: np.ndarray  # [k'] item indices, best first
    scores: np.ndarray  # [k']
    source: str  # "model" | "ranker" | "popularity"


class RequestError(ValueError):
    """A request the bundle cannot answer as given (answered 400 with this message)."""


def request_time(value: Timestamp, time_unit: str, key: str) -> int:
    """A request's time in the bundle's timestamp units (`seqrec.data.dataset.Dataset.time_unit`):
    an int as is (a raw timestamp), a string as an ISO date or date-time (UTC unless it says)."""
    if isinstance(value, int):
        return value
    per_day = DAY_UNITS.get(time_unit)
    if per_day is None:
        raise RequestError(
            f"{key} = {value!r}: this bundle's timestamps only order events, "
            "give a raw timestamp (an integer)"
        )
    try:
        when = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        when = pd.NaT
    if when is pd.NaT:
        raise RequestError(f"{key} = {value!r} is not an ISO date or date-time (2020-09-23)")
    if when.tzinfo is not None:
        when = when.tz_convert("UTC").tz_localize(None)
    seconds = (when - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return int(seconds * per_day // 86400)  # days or seconds since 1970-01-01


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


def input_matrix(bundle: Bundle, base: Recommender | None) -> torch.Tensor:
    """[N, D] input item vectors of ``bundle``'s model: those of ``base`` (a recommender of
    the same model over the first items) and the new rows, else all computed."""
    model = bundle.model.eval()
    with torch.no_grad():
        if base is None or base.n_items > bundle.n_items:
            return model.input_item_matrix()
        added = torch.arange(base.n_items, bundle.n_items)
        return torch.cat([base.input_items, model.item_net(added)])


def served_model(
    bundle: Bundle, input_items: torch.Tensor, runtime: str
) -> tuple[ModelScorer, str]:
    """`seqrec.serve.scoring.served_scorer` of the bundle's model, its input item vectors
    given (``input_items`` [N, D])."""
    scorer = bundle.model_scorer()
    with torch.no_grad():
        scores = ServedScores(bundle.model.eval(), input_items, scorer.item_matrix())
    n_items = bundle.n_items
    fast, name = fast_scores(scores, scorer.max_len, n_items, runtime, scorer.rerank)
    return scorer.with_raw_scores(fast), name


def ranker_trees(ranker: RankerScorer | None, compile_trees: bool) -> str | None:
    """What walks ``ranker``'s trees: "compiled" (compiled now, or by an earlier recommender of
    the same bundle) or "lightgbm" (not asked, or no compiler: logged); None without a ranker."""
    if ranker is None:
        return None
    if not compile_trees:
        return "compiled" if ranker.ranker.trees is not None else "lightgbm"
    reason = ranker.ranker.compile()
    if reason:
        logger.warning("the ranker's trees are walked by LightGBM: %s", reason)
    return "lightgbm" if reason else "compiled"


def candidate_ranking(
    rec: Recommender, runtime: str, retrieval: Retrieval, base: Recommender | None
) -> CandidateRanking | None:
    """``rec``'s `CandidateRanking` when ``retrieval`` ranks its catalogue through an index
    (a sequence model's; a two-stage bundle's ranker scores its own candidates), else None."""
    if rec.ranker is not None or not uses_index(retrieval.mode, rec.n_items):
        return None
    hidden = ServedHidden(rec.bundle.model.eval(), rec.input_items)
    fast, _ = fast_scores(hidden, rec.max_len, rec.n_items, runtime)
    matrix = rec.scorer.item_matrix().numpy()  # [N, D]
    extends = None if base is None else base.candidates
    return CandidateRanking(rec.scorer, fast, matrix, retrieval, extends)


class Recommender:
    """A bundle ready to serve: id lookup, display records and precomputed item matrices."""

    def __init__(
        self,
        bundle: Bundle,
        runtime: str = "auto",
        base: Recommender | None = None,
        retrieval: Retrieval = Retrieval(),
        compile_trees: bool = True,
    ):
        """``base``: a recommender of the same bundle over the first items of this one's
        catalogue (before items were added), whose display records are reused. ``retrieval``:
        whether and how a large catalogue is ranked through an index (`seqrec.serve.retrieval`).
        ``compile_trees``: a two-stage bundle's trees compiled to native code when a C compiler
        is found (`seqrec.ranker.compiled`), else walked by LightGBM; the same scores.
        """
        self.bundle = bundle
        self.max_len = bundle.config.model.max_len
        self.n_items = bundle.n_items
        self.index = bundle.item_index()
        self.input_items = input_matrix(bundle, base)  # [N, D]
        self.scorer, self.runtime = served_model(bundle, self.input_items, runtime)
        self.time_unit = str(bundle.manifest.get("time_unit", "order"))
        self.ranker = None if bundle.ranker is None else bundle.ranker_scorer(self.scorer)
        self.trees = ranker_trees(self.ranker, compile_trees)
        self.candidates = candidate_ranking(self, runtime, retrieval, base)
        if self.ranker is not None:  # content graphs built now, not by the first request
            prepare_sources(self.ranker.ranker.config, self.ranker.context)
        # when a two-stage bundle's shopper asks by default: right after the log's last event
        self.default_cutoff = 0 if self.ranker is None else self.ranker.context.events.t_max + 1
        self.popularity = np.asarray(bundle.popularity, dtype=np.float32)  # [N]
        self.remove_seen = bool(bundle.manifest.get("remove_seen", False))
        self.by_popularity = np.argsort(-self.popularity, kind="stable")  # catalogue order
        # [U] items out of sale, never served (replaced as a whole when it changes)
        self.unavailable = np.zeros(0, dtype=np.int64)

        items = bundle.items
        self.text_columns = [c for c in items.columns if c not in DISPLAY_COLUMNS]
        start = 0 if base is None or base.n_items > self.n_items else base.n_items
        reused = base.records[:start] if base is not None else []
        self.records: list[dict[str, Any]] = reused + display_records(items[start:])
        self.search_text = self.texts(items[start:])
        if base is not None and start:
            self.search_text = pd.concat([base.search_text, self.search_text], ignore_index=True)

    def texts(self, items: pd.DataFrame) -> pd.Series:
        """The lower-case searchable text of each of ``items``."""
        columns = items[["title", *self.text_columns]].fillna("").astype(str)
        return columns.apply(" ".join, axis=1, result_type="reduce").astype(str).str.lower()

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

    def query(self, request: RecommendRequest) -> tuple[RankQuery, list[str]]:
        """The query of a request and the history ids the bundle does not know (ignored);
        RequestError when its times cannot be read."""
        history, unknown = self.lookup(request.history)
        exclude, _ = self.lookup(request.exclude)
        remove_seen = self.remove_seen if request.remove_seen is None else request.remove_seen
        if remove_seen and len(history):
            exclude = np.concatenate([exclude, history])
        if self.ranker is None:  # the sequence model reads no times
            return RankQuery(history, request.k, exclude), unknown
        times, cutoff = self.request_times(request)
        return RankQuery(history, request.k, exclude, times, cutoff), unknown

    def request_times(self, request: RecommendRequest) -> tuple[np.ndarray, int]:
        """([H] times of the request's known history items, the cutoff) in timestamp units."""
        cutoff = self.default_cutoff
        if request.at is not None:
            cutoff = request_time(request.at, self.time_unit, "at")
        known = [i for i, item_id in enumerate(request.history) if item_id in self.index]
        if request.history_times is not None and len(request.history_times) != len(request.history):
            raise RequestError(
                f"history_times has {len(request.history_times)} values for "
                f"{len(request.history)} history ids; give one per id"
            )
        if request.history_times is None:
            return np.full(len(known), cutoff - 1, dtype=np.int64), cutoff
        times = np.array(
            [
                request_time(request.history_times[i], self.time_unit, f"history_times[{i}]")
                for i in known
            ],
            dtype=np.int64,
        )
        if len(times) and times.max() >= cutoff:
            raise RequestError("history_times must be before the time asked (at)")
        return times, cutoff

    def history_used(self, n_known: int) -> int:
        """History items the ranking reads of ``n_known``: the model reads the last max_len,
        a ranker the whole history."""
        return n_known if self.ranker is not None else min(n_known, self.max_len)

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """[B, N] float32, the scores of `Bundle.scorer().score`, its raw scores computed with
        the item matrices precomputed once, by `self.runtime` (`seqrec.serve.scoring`)."""
        if self.ranker is not None:
            return self.ranker.score(histories)
        return self.scorer.score(histories)

    def score_queries(self, queries: list[RankQuery]) -> np.ndarray:
        """[B, N] float32 scores of queries with history: the ranker's at each query's times
        (the defaults where not given) for a two-stage bundle, else the model's."""
        if self.ranker is None:
            return self.score([query.history for query in queries])
        cutoffs = [self.default_cutoff if q.cutoff is None else q.cutoff for q in queries]
        times = [
            np.full(len(q.history), cutoff - 1, dtype=np.int64) if q.times is None else q.times
            for q, cutoff in zip(queries, cutoffs, strict=True)
        ]
        asked = Queries([query.history for query in queries], times, np.array(cutoffs))
        return self.ranker.score_queries(asked)

    def rank(self, queries: list[RankQuery]) -> list[Ranking]:
        """Rank each query: one batch for those with history (the model's or the ranker's),
        popularity for the rest."""
        unavailable = self.unavailable  # read once: a batch sees one set
        rows = [i for i, query in enumerate(queries) if len(query.history)]
        found: dict[int, Any] = {}
        if self.candidates is not None and rows:  # the index's candidates, where they suffice
            lists = self.candidates.rank([queries[i] for i in rows], unavailable)
            found = {i: ans for i, ans in zip(rows, lists, strict=True) if ans is not None}
            rows = [i for i in rows if i not in found]
        scored = [queries[i] for i in rows]
        scores = self.score_queries(scored) if rows else np.empty((0, self.n_items), np.float32)
        row_of = {query_index: row for row, query_index in enumerate(rows)}
        scored_by = "model" if self.ranker is None else "ranker"
        rankings = []
        for i, query in enumerate(queries):
            if i in found:
                items, values = found[i]
                rankings.append(Ranking(items, values, scored_by))
                continue
            if i in row_of:
                values, source = scores[row_of[i]], scored_by
            else:
                values, source = self.popularity, "popularity"
            exclude = (
                np.concatenate([query.exclude, unavailable]) if len(unavailable) else query.exclude
            )
            items = self.top(values, query.k, exclude)
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
        available = idx not in self.unavailable
        return {
            **self.records[idx],
            "popularity": float(self.popularity[idx]),
            "text": text,
            "available": bool(available),
        }

    def image_path(self, idx: int) -> str | None:
        """Item ``idx``'s image file, or None when it has none."""
        path = self.bundle.items["image_path"].iloc[idx]
        return path if isinstance(path, str) and path else None
