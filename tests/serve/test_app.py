"""The HTTP service, served by uvicorn on a loopback port: evaluated rankings, fallback, unknown
ids, bad requests, the service's options, the CLI server."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from seqrec.bundle import load_bundle
from seqrec.config import ConfigError
from seqrec.evaluate import top_k
from seqrec.serve import ServeConfig, create_app, run_server
from seqrec.serve.recommender import Recommender

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(bundle_path):
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def client(bundle, serve_on_loopback):
    """An HTTP client of the app served by uvicorn on a loopback port."""
    config = ServeConfig(max_history=40, max_exclude=200, max_body_bytes=4096)
    with serve_on_loopback(create_app(bundle, config)) as url, httpx.Client(base_url=url) as http:
        yield http


def recommend(client, **body) -> dict:
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def served_indices(bundle, answer: dict) -> list[int]:
    index = bundle.item_index()
    return [index[item["item_id"]] for item in answer["items"]]


def ids_of(bundle, indices) -> list[str]:
    return [bundle.items["item_id"].iloc[i] for i in indices]


def test_ranking_equals_evaluated_ranking(client, bundle):
    scorer = bundle.scorer()
    rng = np.random.default_rng(0)
    max_len = bundle.config.model.max_len
    for length in (1, 3, max_len, max_len + 7):  # the last one is cut to the last max_len
        history = rng.integers(0, bundle.n_items, length)
        history[-1] = history[0]  # a repeat, which the repeat bias scores
        scores = scorer.score([history])  # what `seqrec eval` ranks
        for k, remove_seen in ((10, False), (25, True)):
            answer = recommend(
                client, history=ids_of(bundle, history), k=k, remove_seen=remove_seen
            )
            expected = top_k(scores, k, [history] if remove_seen else None)[0]
            assert answer["source"] == "model"
            assert served_indices(bundle, answer) == expected.tolist()
            np.testing.assert_allclose(
                [item["score"] for item in answer["items"]], scores[0, expected], rtol=1e-6
            )
            assert answer["history_used"] == min(length, max_len)
            if remove_seen:
                assert not set(expected) & set(history.tolist())


def test_long_history_reads_the_most_recent_max_len_items(client, bundle):
    max_len = bundle.config.model.max_len
    history = ids_of(bundle, np.arange(max_len + 10) % bundle.n_items)
    full = recommend(client, history=history, k=20)
    recent = recommend(client, history=history[-max_len:], k=20)
    assert full["items"] == recent["items"]
    assert full["history_used"] == max_len


def test_response_fields(client, bundle):
    answer = recommend(client, history=ids_of(bundle, [3, 4]), k=5.0)  # 5.0: an integer in JSON
    assert len(answer["items"]) == 5
    first = answer["items"][0]
    row = bundle.items.iloc[bundle.item_index()[first["item_id"]]]
    assert first["title"] == row["title"]
    assert first["price"] == pytest.approx(row["price"])
    assert first["image_url"] == f"/items/{first['item_id']}/image"
    scores = [item["score"] for item in answer["items"]]
    assert scores == sorted(scores, reverse=True)


def test_exclude_removes_items(client, bundle):
    history = ids_of(bundle, [1, 2, 3])
    top = [item["item_id"] for item in recommend(client, history=history, k=5)["items"]]
    answer = recommend(client, history=history, k=5, exclude=top[:2] + ["not-an-item"])
    served = [item["item_id"] for item in answer["items"]]
    assert served[:3] == top[2:] and not set(served) & set(top[:2])


def test_excluded_items_are_never_served_even_when_k_is_larger(client, bundle):
    keep = [5, 6, 7]
    exclude = ids_of(bundle, [i for i in range(bundle.n_items) if i not in keep][:190])
    n_left = bundle.n_items - len(exclude)
    answer = recommend(client, history=ids_of(bundle, [1]), k=100, exclude=exclude)
    assert len(answer["items"]) == min(100, n_left)
    assert not {item["item_id"] for item in answer["items"]} & set(exclude)


def test_unknown_ids_are_ignored_and_listed(client, bundle):
    known = ids_of(bundle, [10, 11])
    with_unknown = recommend(client, history=["nope", known[0], "P-404", known[1]], k=8)
    assert with_unknown["unknown_ids"] == ["nope", "P-404"]
    assert with_unknown["items"] == recommend(client, history=known, k=8)["items"]
    assert with_unknown["history_used"] == 2


def test_a_model_bundle_ignores_the_times_a_ranker_reads(client, bundle):
    history = ids_of(bundle, [4, 9, 2])
    plain = recommend(client, history=history, k=8)
    timed = recommend(
        client, history=history, k=8, at="2024-02-01", history_times=[1, 2, "2024-01-05"]
    )
    assert timed == plain and plain["source"] == "model"


@pytest.mark.parametrize("history", [[], ["nope", "unknown too"]])
def test_popularity_fallback(client, bundle, history):
    answer = recommend(client, history=history, k=7, exclude=ids_of(bundle, [0]))
    expected = top_k(bundle.popularity[None, :], 7, [np.array([0])])[0]
    assert answer["source"] == "popularity"
    assert served_indices(bundle, answer) == expected.tolist()
    assert [item["score"] for item in answer["items"]] == bundle.popularity[expected].tolist()
    assert answer["unknown_ids"] == history and answer["history_used"] == 0


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"history": [], "k": 0}, 422, "greater than or equal to 1"),
        ({"history": [], "k": 101}, 422, "less than or equal to 100"),
        ({"history": [], "k": "many"}, 422, "valid integer"),
        ({"history": [], "k": "12"}, 422, "valid integer"),
        ({"history": [], "k": 2.5}, 422, "valid integer"),
        ({"history": [], "k": True}, 422, "valid integer"),
        ({"history": "P00001"}, 422, "valid list"),
        ({"history": [1, 2]}, 422, "valid string"),
        ({"history": [""]}, 422, "at least 1 character"),
        ({"history": [], "remove_seen": "perhaps"}, 422, "valid boolean"),
        ({"history": [], "hist": []}, 422, "Extra inputs"),
        ({"history": ["a"] * 41}, 413, "history has 41 items; at most 40"),
        ({"exclude": ["a"] * 201}, 413, "exclude has 201 items; at most 200"),
        ([1, 2], 422, "valid dictionary"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(client, body, status, message):
    response = client.post("/recommend", json=body)
    assert response.status_code == status
    assert message in json.dumps(response.json()["detail"])


def test_malformed_and_oversized_bodies(client):
    headers = {"Content-Type": "application/json"}
    bad_json = client.post("/recommend", content=b'{"history": [', headers=headers)
    assert bad_json.status_code == 422 and "JSON decode error" in bad_json.text
    not_json = client.post("/recommend", content=b"history=a", headers={"Content-Type": "text"})
    assert not_json.status_code == 422
    too_deep = client.post("/recommend", content=b"[" * 3000, headers=headers)  # RecursionError
    assert too_deep.status_code == 400 and "error parsing the body" in too_deep.text
    no_body = client.post("/recommend")
    assert no_body.status_code == 422 and "Field required" in no_body.text
    big = json.dumps({"history": ["x" * 200] * 30}).encode()  # 30 ids, but over 4096 bytes
    too_big = client.post("/recommend", content=big, headers=headers)
    assert too_big.status_code == 413 and too_big.json()["detail"]
    chunked = client.post("/recommend", content=iter([big[:2000], big[2000:]]), headers=headers)
    assert chunked.status_code == 413  # no Content-Length: counted while streaming
    assert "over 4096 bytes" in chunked.json()["detail"]


def test_item_endpoints(client, bundle):
    item_id = bundle.items["item_id"].iloc[3]
    item = client.get(f"/items/{item_id}").json()
    assert item["item_id"] == item_id and item["title"] == bundle.items["title"].iloc[3]
    assert item["popularity"] == bundle.popularity[3]
    assert "description" in item["text"]
    image = client.get(item["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == Path(bundle.items["image_path"].iloc[3]).read_bytes()
    for url in ("/items/nope", "/items/nope/image"):
        missing = client.get(url)
        assert missing.status_code == 404 and "unknown item id 'nope'" in missing.json()["detail"]


def test_catalogue_pages_and_search(client, bundle):
    first = client.get("/items", params={"limit": 10}).json()
    assert first["total"] == bundle.n_items and len(first["items"]) == 10
    popularity = [bundle.popularity[bundle.item_index()[i["item_id"]]] for i in first["items"]]
    assert popularity == sorted(popularity, reverse=True)  # best-sellers first
    second = client.get("/items", params={"limit": 10, "offset": 10}).json()
    assert not {i["item_id"] for i in first["items"]} & {i["item_id"] for i in second["items"]}
    word = bundle.items["title"].iloc[0].split()[-1].lower()  # a product type, e.g. "bag"
    found = client.get("/items", params={"q": word.upper(), "limit": 100}).json()
    text = (bundle.items["title"] + " " + bundle.items["description"]).str.lower()
    assert found["total"] == text.str.contains(word, regex=False).sum()
    assert 0 < found["total"] < bundle.n_items
    assert client.get("/items", params={"offset": 10**6}).json()["items"] == []
    assert client.get("/items", params={"limit": 0}).status_code == 422


def test_health_schema_docs_and_page(client, bundle):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["n_items"] == bundle.n_items
    assert health["max_len"] == bundle.config.model.max_len
    assert health["time_unit"] == bundle.manifest["time_unit"]
    assert health["ranking_in"] == "thread"  # one process: the event loop reads on meanwhile
    schema = client.get("/openapi.json").json()
    assert {"/recommend", "/items", "/items/{item_id}", "/items/{item_id}/image", "/health"} <= set(
        schema["paths"]
    )
    assert "413" in schema["paths"]["/recommend"]["post"]["responses"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "seqrec demo shop" in page.text


@pytest.mark.parametrize("runtime", ["onnx", "torchscript", "eager"])
def test_recommender_scores_are_the_scorers(bundle, runtime):
    rec = Recommender(bundle, runtime=runtime)
    assert rec.runtime == runtime  # the tiny transformer exports and traces faithfully
    rng = np.random.default_rng(3)
    histories = [rng.integers(0, bundle.n_items, n) for n in (1, 4, 30, 2, 12)]
    expected = bundle.scorer().score(histories)
    got = rec.score(histories)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(top_k(got, 20), top_k(expected, 20))  # the same rankings
    alone = bundle.scorer().score(histories[2:3])  # a batch of one may round differently
    np.testing.assert_allclose(rec.score(histories[2:3]), alone, rtol=1e-5, atol=1e-5)


def test_top_equals_top_k_with_ties_and_exclusions(bundle):
    rec = Recommender(bundle, runtime="eager")
    rng = np.random.default_rng(4)
    n = bundle.n_items
    for trial in range(200):
        values = rng.integers(0, 6, n).astype(np.float32)  # many ties
        if trial % 3 == 0:
            values = rng.normal(size=n).astype(np.float32)
        exclude = rng.integers(0, n, rng.integers(0, n + 20 if trial % 10 == 0 else 30))
        k = int(rng.integers(1, 101))
        full = top_k(values[None, :], k, [exclude])[0]
        expected = full[: n - len(np.unique(exclude))]  # excluded items are not served
        np.testing.assert_array_equal(rec.top(values, k, exclude), expected)


@contextlib.contextmanager
def cli_server(bundle_path, port: int, *options: str):
    """``seqrec serve`` with ``options`` in a subprocess on a loopback port, once it answers."""
    command = [sys.executable, str(ROOT / "cli.py"), "serve", "--bundle", str(bundle_path)]
    server = subprocess.Popen(
        [*command, "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"seqrec serve exited: {server.stdout.read().decode()}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("seqrec serve did not answer /health within 60 s")
        yield url, server
    finally:
        server.terminate()
        assert server.wait(timeout=20) is not None


@pytest.fixture(scope="module")
def live_server(bundle_path, pick_free_port):
    with cli_server(bundle_path, pick_free_port(), "--runtime", "onnx") as (url, _):
        yield url


def health_over(sock: socket.socket) -> dict:
    """``GET /health`` on an open keep-alive connection."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    return json.loads(response.read())


@pytest.mark.multiprocess
def test_workers_share_a_burst_of_new_connections(bundle_path, pick_free_port):
    """With --workers 2, connections opened at once are spread over both processes (each
    worker listens on its own socket); SIGHUP reloads every worker's bundle; a stop ends all."""
    port = pick_free_port()
    with cli_server(bundle_path, port, "--workers", "2") as (_, server):
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
        try:  # every connection is open before the first request is sent
            first = {}
            for sock in sockets:  # each connection stays with the worker that accepted it
                first.setdefault(health_over(sock)["worker"], sock)
            assert len(first) == 2, list(first)
            # several processes keep the cores busy: each ranks in its own event loop
            assert {health_over(sock)["ranking_in"] for sock in first.values()} == {"event loop"}
            server.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while any(health_over(sock)["changes"] == 0 for sock in first.values()):
                assert time.monotonic() < deadline, "a worker did not reload on SIGHUP"
                time.sleep(0.2)
        finally:
            for sock in sockets:
                sock.close()
    with pytest.raises(ConnectionRefusedError):  # no worker outlives the stopped server
        socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.multiprocess
def test_cli_server_answers_concurrent_requests(live_server, bundle):
    rng = np.random.default_rng(2)
    histories = [rng.integers(0, bundle.n_items, 8) for _ in range(24)]
    scores = bundle.scorer().score(histories)
    with httpx.Client(base_url=live_server) as http:

        def ask(history):
            return http.post("/recommend", json={"history": ids_of(bundle, history), "k": 12})

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(ask, histories))
        assert http.post("/recommend", json={"k": 1000}).status_code == 422
        assert http.get("/items/nope").status_code == 404
        health = http.get("/health").json()
    assert [response.status_code for response in responses] == [200] * len(histories)
    for row, response in enumerate(responses):  # same scores whatever batch a request joined
        served = [item["score"] for item in response.json()["items"]]
        np.testing.assert_allclose(served, np.sort(scores[row])[::-1][:12], rtol=1e-5)
    assert health["requests_scored"] >= len(histories)
    assert health["runtime"] == "onnx"  # as asked on the command line


def test_any_json_content_type_gets_the_same_answer(client, bundle):
    history = ids_of(bundle, [5, 1, 7])
    body = json.dumps({"history": [*history, "nope"], "k": 5, "exclude": history[:1]})
    plain = client.post("/recommend", content=body, headers={"Content-Type": "application/json"})
    patch = client.post(
        "/recommend", content=body, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert plain.status_code == patch.status_code == 200
    assert plain.json() == patch.json() and plain.json()["unknown_ids"] == ["nope"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"runtime": "tensorrt"}, "runtime = 'tensorrt' is not one of: auto, onnx"),
        ({"max_batch": 0}, "max_batch = 0 must be >= 1"),
        ({"max_body_bytes": 0}, "max_body_bytes = 0 must be >= 1"),
        ({"max_history": -1}, "max_history = -1 must be >= 0"),
        ({"batch_wait_ms": -0.5}, "batch_wait_ms = -0.5 must be >= 0"),
    ],
)
def test_serve_options_are_checked_before_the_bundle_is_read(tmp_path, options, message):
    config = ServeConfig(**options)
    with pytest.raises(ConfigError, match=message):
        create_app(tmp_path / "no bundle", config)
    with pytest.raises(ConfigError, match=message):
        run_server(tmp_path / "no bundle", config=config)


def test_each_server_process_limits_torch_and_blas_to_its_threads(
    bundle_path, tmp_path, monkeypatch
):
    """The worker factory (`app_from_env`) runs torch and numpy's BLAS on ``threads`` threads:
    BLAS threads left idle would spin on the other cores after each small product."""
    import gc

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from seqrec.serve import server

    monkeypatch.setenv(server.ENV_BUNDLE, str(bundle_path))
    monkeypatch.setenv(server.ENV_CONFIG, json.dumps({"db": str(tmp_path / "events.db")}))
    monkeypatch.setenv(server.ENV_THREADS, "1")
    torch_threads = torch.get_num_threads()
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    assert blas, "numpy links no BLAS that threadpoolctl sees"
    try:
        with threadpool_limits(2, user_api="blas"):  # restored on leaving
            before = [info for info in threadpool_info() if info["user_api"] == "blas"]
            assert all(info["num_threads"] == 2 for info in before)
            server.app_from_env()
            assert torch.get_num_threads() == 1
            limited = [info for info in threadpool_info() if info["user_api"] == "blas"]
            assert limited and all(info["num_threads"] == 1 for info in limited)
    finally:
        gc.unfreeze()
        torch.set_num_threads(torch_threads)
