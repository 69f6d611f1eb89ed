"""`MicroBatcher`: concurrent requests ranked together, in a worker thread or in the event loop
(as each process of a server of several does), and a changed catalogue ranked on the same
thread."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from seqrec.bundle import load_bundle
from seqrec.evaluate import top_k
from seqrec.serve import ServeConfig, create_app
from seqrec.serve.batching import MicroBatcher
from seqrec.serve.recommender import RankQuery, Recommender
from seqrec.serve.schemas import ranks_in_thread


@pytest.fixture(scope="module")
def bundle(bundle_path):
    return load_bundle(bundle_path)


@pytest.mark.parametrize("thread", [True, False])
def test_micro_batcher_ranks_concurrent_requests_together(bundle, thread):
    rec = Recommender(bundle, runtime="eager")
    batcher = MicroBatcher(rec.rank, max_batch=64, thread=thread)
    assert batcher.in_thread == thread
    rng = np.random.default_rng(1)
    empty = np.zeros(0, dtype=np.int64)
    queries = [RankQuery(rng.integers(0, bundle.n_items, 6), 10, empty) for _ in range(12)]
    queries.append(RankQuery(empty, 10, empty))  # a popularity query in the same batch

    async def submit_all():
        return await asyncio.gather(*(batcher.submit(query) for query in queries))

    rankings = asyncio.run(submit_all())
    assert batcher.queries == len(queries) and batcher.batches < len(queries)
    scores = bundle.scorer().score([query.history for query in queries[:-1]])
    for row, ranking in enumerate(rankings[:-1]):
        assert ranking.source == "model"
        np.testing.assert_allclose(ranking.scores, np.sort(scores[row])[::-1][:10], rtol=1e-5)
    assert rankings[-1].source == "popularity"


@pytest.mark.parametrize(
    "thread, workers, expected",
    [(None, 1, True), (None, 2, False), (None, 4, False), (True, 2, True), (False, 1, False)],
)
def test_where_a_server_ranks(thread, workers, expected):
    """Unset, one process ranks in a thread and several in their event loops; set, as asked."""
    assert ranks_in_thread(ServeConfig(thread=thread), workers) is expected


def test_ranking_in_the_event_loop_answers_as_the_thread_does(bundle, serve_on_loopback):
    """``thread = false`` (what several workers run): concurrent requests, the same rankings."""
    rng = np.random.default_rng(4)
    histories = [rng.integers(0, bundle.n_items, n) for n in (1, 5, 9, 3, 30, 2, 7, 4)]
    scores = bundle.scorer().score(histories)
    index = bundle.item_index()
    ids = bundle.items["item_id"]
    app = create_app(bundle, ServeConfig(thread=False))
    with serve_on_loopback(app) as url, httpx.Client(base_url=url) as http:

        def ask(history):
            return http.post("/recommend", json={"history": ids.iloc[history].tolist(), "k": 10})

        with ThreadPoolExecutor(4) as pool:
            answers = [response.json() for response in pool.map(ask, histories)]
        health = http.get("/health").json()
    assert health["ranking_in"] == "event loop"
    assert health["requests_scored"] == len(histories)
    for row, answer in enumerate(answers):
        served = [index[item["item_id"]] for item in answer["items"]]
        assert served == top_k(scores[row : row + 1], 10)[0].tolist()


def test_a_successor_ranks_on_the_same_thread_and_keeps_the_counts():
    threads = []

    def rank(queries):
        threads.append(threading.get_ident())
        return [query * 2 for query in queries]

    first = MicroBatcher(rank)
    after = first.successor(lambda queries: [-query for query in queries])

    async def ask():
        return await first.submit(3), await after.submit(4), await after.submit(5)

    assert asyncio.run(ask()) == (6, -4, -5)
    assert after._executor is first._executor  # no new thread per catalogue change
    assert first.queries == after.queries == 3 and after.batches == 3
    assert threads and threads[0] != threading.get_ident()
