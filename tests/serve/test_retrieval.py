"""Ranking through an index's candidates (`seqrec.serve.retrieval`) gives the full ranking's
lists when the index finds the true best items, and falls back to the full ranking otherwise."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from seqrec.bundle import load_bundle
from seqrec.rerank import HistoryFirst
from seqrec.serve import ServeConfig, create_app
from seqrec.serve.recommender import RankQuery, Recommender
from seqrec.serve.retrieval import INDEX_MIN_ITEMS, Retrieval, uses_index
from seqrec.serve.store import Store

RERANKS = [
    None,
    HistoryFirst(order="score"),
    HistoryFirst(order="recency", slots=2),
    HistoryFirst(order="frequency"),
]


@pytest.fixture(scope="module")
def bundle(bundle_path):
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def exact(bundle):
    return Recommender(bundle, "eager", retrieval=Retrieval("exact"))


def queries(bundle, count: int, seed: int = 0) -> list[RankQuery]:
    """Histories of 1-20 items (repeats included), k of 1-15, some with exclusions."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        history = rng.integers(0, bundle.n_items, rng.integers(1, 21))
        exclude = rng.integers(0, bundle.n_items, rng.integers(0, 3) * 2)
        out.append(RankQuery(history, int(rng.integers(1, 16)), exclude))
    return out


@pytest.mark.parametrize("rerank", RERANKS, ids=lambda r: "none" if r is None else r.order)
def test_candidate_lists_are_the_full_rankings_lists(bundle, exact, rerank):
    # 150 items in 3 inverted lists, all scanned: the index finds the true best 10
    indexed = Recommender(bundle, "eager", retrieval=Retrieval("index", candidates=10))
    assert indexed.candidates is not None and bundle.model.history_terms()  # both terms
    exact.scorer.rerank = indexed.scorer.rerank = rerank
    exact.unavailable = indexed.unavailable = np.array([4, 40], dtype=np.int64)
    asked = queries(bundle, 120)
    answered = indexed.candidates.rank(asked, indexed.unavailable)
    assert sum(answer is not None for answer in answered) > len(asked) // 2  # the index served
    for query, want, got in zip(asked, exact.rank(asked), indexed.rank(asked), strict=True):
        assert got.items.tolist() == want.items.tolist()
        assert not set(got.items) & {4, 40, *query.exclude.tolist()}
        outside = ~np.isin(got.items, query.history)  # history items' lifts are relative
        np.testing.assert_allclose(got.scores[outside], want.scores[outside], rtol=1e-5, atol=1e-5)


def test_rows_the_candidates_cannot_answer_are_ranked_over_the_whole_catalogue(bundle, exact):
    indexed = Recommender(bundle, "eager", retrieval=Retrieval("index", candidates=1))
    exact.scorer.rerank = indexed.scorer.rerank = None
    asked = [RankQuery(np.array([3, 9]), 12, np.zeros(0, dtype=np.int64))]
    assert indexed.candidates is not None
    assert indexed.candidates.rank(asked, indexed.unavailable) == [None]  # too few candidates
    assert indexed.rank(asked)[0].items.tolist() == exact.rank(asked)[0].items.tolist()


def test_auto_uses_the_index_only_for_large_catalogues():
    assert not uses_index("auto", INDEX_MIN_ITEMS - 1) and uses_index("auto", INDEX_MIN_ITEMS)
    assert uses_index("index", 10) and not uses_index("exact", 10**7)
    with pytest.raises(ValueError, match="retrieval"):
        uses_index("approximate", 10)


def test_a_live_indexed_catalogue_serves_added_and_sold_out_items(
    bundle, tmp_path, serve_on_loopback
):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    config = ServeConfig(token_file=str(token), retrieval="index", retrieval_candidates=20)
    app = create_app(bundle, config, Store(f"sqlite:///{tmp_path / 'shop.db'}"))
    headers = {"Authorization": "Bearer t0ken"}
    ids = bundle.items["item_id"]
    history = [ids.iloc[10], ids.iloc[11]]
    with serve_on_loopback(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/health").json()["retrieval"] == "index"
        first = client.post("/recommend", json={"history": history, "k": 5}).json()["items"]
        best = first[0]["item_id"]
        assert client.patch(f"/items/{best}", json={"available": False}, headers=headers).is_success
        after = client.post("/recommend", json={"history": history, "k": 5}).json()["items"]
        assert best not in [item["item_id"] for item in after] and len(after) == 5
        fields = {"item_id": "NEW-IX", "title": str(bundle.items["title"].iloc[10])}
        added = client.post("/items", data={"item": json.dumps(fields)}, headers=headers)
        assert added.status_code == 201, added.text
        current = app.state.served.current.recommender
        assert current.candidates is not None
        assert current.candidates.index.ntotal == bundle.n_items + 1  # the index extended
        asked = {"history": [*history, "NEW-IX"], "k": 5}
        answer = client.post("/recommend", json=asked).json()
        assert answer["unknown_ids"] == [] and answer["history_used"] == 3
        assert len(answer["items"]) == 5
