"""``kill -9`` of ``seqrec serve`` while a client posts events: every acknowledged event is in
the SQLite file after a restart, no batch is there in part, and the file passes
``PRAGMA integrity_check``."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from seqrec.bundle import load_bundle
from seqrec.serve.store import Store

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "crash-test-token"
BATCH = 20


def start_server(bundle_path: Path, db: Path, token_file: Path, port: int) -> subprocess.Popen:
    """``seqrec serve`` on ``db``, answering /health (else the test fails)."""
    command = [sys.executable, str(ROOT / "cli.py"), "serve", "--bundle", str(bundle_path)]
    options = ["--port", str(port), "--db", str(db), "--token-file", str(token_file)]
    server = subprocess.Popen(
        [*command, *options, "--runtime", "eager"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"seqrec serve exited: {server.stdout.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    pytest.fail("seqrec serve did not answer /health within 60 s")


def post_until_refused(url: str, ids: list[str], client: int, acknowledged: list) -> None:
    """Post batches of BATCH events, each batch a shopper of its own, until the server is gone;
    the acknowledged batches' (shopper, item ids) go to ``acknowledged``."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        for batch in range(10**6):
            user = f"client{client}-batch{batch}"
            items = [ids[(batch * BATCH + i) % len(ids)] for i in range(BATCH)]
            events = [
                {"user_id": user, "item_id": item, "type": "view", "timestamp": i}
                for i, item in enumerate(items)
            ]
            try:
                answer = http.post("/events", json={"events": events})
            except httpx.TransportError:
                return
            assert answer.status_code == 200, answer.text
            acknowledged.append((user, items))


@pytest.mark.multiprocess
def test_acknowledged_events_survive_kill_9(bundle_path, tmp_path, pick_free_port):
    db, token_file = tmp_path / "shop.db", tmp_path / "token"
    token_file.write_text(TOKEN)
    ids = list(load_bundle(bundle_path).item_index())
    port = pick_free_port()
    server = start_server(bundle_path, db, token_file, port)
    acknowledged: list[tuple[str, list[str]]] = []
    clients = [
        threading.Thread(
            target=post_until_refused, args=(f"http://127.0.0.1:{port}", ids, c, acknowledged)
        )
        for c in range(3)
    ]
    try:
        for client in clients:
            client.start()
        while len(acknowledged) < 60 and all(client.is_alive() for client in clients):
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGKILL)  # in the middle of the clients' requests
        server.wait(timeout=10)
    finally:
        server.kill()
        for client in clients:
            client.join(timeout=30)
    assert len(acknowledged) >= 60, "the clients stopped before the kill"

    restarted = start_server(bundle_path, db, token_file, port)  # recovers the WAL
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        event = {"user_id": "after", "item_id": ids[0], "type": "cart", "timestamp": 1}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/events", json={"events": [event]}, headers=headers
        )
        assert answer.json() == {"stored": 1, "unknown_ids": []}
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)

    store = Store(f"sqlite:///{db}")
    for user, items in acknowledged:
        assert [event.item_id for event in store.user_events(user, limit=BATCH)] == items
    store.close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        counts = connection.execute("SELECT COUNT(*) FROM events GROUP BY user_id").fetchall()
    assert {count for (count,) in counts} <= {BATCH, 1}  # no batch stored in part
