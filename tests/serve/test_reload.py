"""Swapping the served bundle (POST /admin/reload, `reload_served`) under load, through a real
uvicorn server: no request fails, added items are re-encoded, a bad bundle changes nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from seqrec.serve import ServeConfig, create_app
from seqrec.serve.live_catalogue import reload_served
from seqrec.serve.store import Store

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "reload-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def live(bundle_path, tmp_path, serve_on_loopback, monkeypatch):
    """(client, app) of a service over the test bundle, a fresh database and one added item."""
    monkeypatch.setenv("SEQREC_SERVE_TOKEN", TOKEN)
    app = create_app(bundle_path, ServeConfig(), Store(f"sqlite:///{tmp_path / 'shop.db'}"))
    with serve_on_loopback(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        fields = {"item_id": "NEW-R", "title": "red wool scarf", "description": "a warm scarf"}
        response = client.post("/items", data={"item": json.dumps(fields)}, headers=AUTH)
        assert response.status_code == 201, response.text
        yield client, app


def hammer(url: str, history: list[str], stop: threading.Event, outcomes: list) -> None:
    """POST /recommend and GET by shopper, back to back, until ``stop``."""
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            for response in (
                client.post("/recommend", json={"history": history, "k": 12}),
                client.get("/users/nobody/recommendations"),
            ):
                outcomes.append(response.status_code)


def test_reload_under_load_fails_no_request(live, bundle_path):
    client, app = live
    first = app.state.served.current
    stop, outcomes = threading.Event(), []
    history = [first.recommender.records[3]["item_id"], "NEW-R"]
    workers = [
        threading.Thread(target=hammer, args=(str(client.base_url), history, stop, outcomes))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in range(2):
            response = client.post("/admin/reload", json={"bundle": str(bundle_path)}, headers=AUTH)
            assert response.status_code == 200, response.text
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert len(outcomes) > 10
    assert set(outcomes) == {200}
    now = app.state.served.current.recommender
    assert now is not first.recommender and now.bundle.model is not first.recommender.bundle.model
    assert "NEW-R" in now.index  # the added item, re-encoded by the reloaded bundle
    assert client.get("/items/NEW-R").json()["title"] == "red wool scarf"


def test_a_bad_bundle_keeps_the_served_one(live, tmp_path):
    client, app = live
    served = app.state.served.current
    for body in ({"bundle": str(tmp_path / "missing")}, {"bundle": str(tmp_path)}):
        response = client.post("/admin/reload", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        assert "not loaded" in response.json()["detail"]
    assert app.state.served.current is served
    assert client.post("/recommend", json={"history": ["NEW-R"]}).status_code == 200


def test_reload_served_reads_the_same_bundle_by_default(live):
    _, app = live
    before = app.state.served.current
    rec = reload_served(app)
    assert app.state.served.current.recommender is rec and rec is not before.recommender
    assert rec.bundle.path == before.recommender.bundle.path
    assert rec.n_items == before.recommender.n_items


@pytest.mark.multiprocess
def test_sighup_reloads_the_cli_server(bundle_path, tmp_path, pick_free_port, monkeypatch):
    monkeypatch.setenv("SEQREC_SERVE_TOKEN", TOKEN)
    port, url = pick_free_port(), ""
    command = [sys.executable, str(ROOT / "cli.py"), "serve", "--bundle", str(bundle_path)]
    db = ["--db", str(tmp_path / "shop.db"), "--port", str(port)]
    output = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([*command, *db], stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_for(lambda: client.get("/health").status_code == 200, server)
            fields = {"item_id": "NEW-H", "title": "green silk tie"}
            assert client.post("/items", data={"item": json.dumps(fields)}, headers=AUTH).is_success
            assert client.post("/recommend", json={"history": ["NEW-H"]}).status_code == 200
            health = client.get("/health").json()
            assert health["requests_scored"] > 0
            server.send_signal(signal.SIGHUP)
            # the reload is one change more, in the same, living process; the counts go on
            wait_for(lambda: client.get("/health").json()["changes"] > health["changes"], server)
            assert client.get("/health").json()["requests_scored"] >= health["requests_scored"]
            assert client.get("/items/NEW-H").json()["title"] == "green silk tie"
    finally:
        server.terminate()
        server.wait(timeout=30)
        output.close()


def wait_for(condition, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail("the condition did not hold in time")
