"""The load benchmarks' HTTP client: keep-alive HTTP/1.1 connections and an open-loop schedule.

A minimal asyncio writer/parser rather than an HTTP library: on two cores shared with the
server, a full client (httpx) costs as much CPU per request as the server and would measure
itself. Used by ``serve_load.py`` (POST /recommend) and ``live_load.py`` (GET by shopper id);
the benchmark scripts import it by name (their folder is first on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)

Check = Callable[[int, bytes], bool]  # (status, body) -> whether the answer is right


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:``port``, opened on first use."""

    def __init__(self, port: int):
        self.port = port
        self.reader: Any = None
        self.writer: Any = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: bytes, path: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """One request, its answer's (status, body); a ``body`` is sent as JSON."""
        if self.writer is None:
            await self.open()
        head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
        if body:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + body)
        response_head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(CONTENT_LENGTH.search(response_head).group(1))
        return int(response_head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def checked_request(
    conn: Connection, check: Check, method: bytes, path: bytes, body: bytes = b""
) -> bool:
    """One request; True when ``check`` accepts its answer. A broken connection or an answer
    that cannot be read is False, and the connection is opened again on its next request."""
    try:
        status, payload = await conn.request(method, path, body)
        return check(status, payload)
    except (OSError, asyncio.IncompleteReadError, ValueError, KeyError, AttributeError):
        conn.close()
        return False


async def open_loop(
    port: int,
    clients: int,
    rate: float,
    seconds: float,
    send: Callable[[Connection, int], Awaitable[bool]],
    result: Any,
) -> None:
    """``rate * seconds`` requests over ``clients`` connections on a fixed schedule: request i
    is due ``i / rate`` s after the start and ``send(conn, i)`` sends it. Latency counts from
    the due time, so a slow server cannot hide its queue by slowing the clients down. Adds to
    ``result``'s ``latencies_ms``, ``requests`` and ``errors``."""
    conns = [Connection(port) for _ in range(clients)]
    for conn in conns:
        await conn.open()
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time() + 0.05

    async def client(c: int) -> None:
        for i in range(c, total, clients):
            due = start + i / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            ok = await send(conns[c], i)
            result.latencies_ms.append(1000 * (loop.time() - due))
            result.requests += 1
            result.errors += not ok

    await asyncio.gather(*(client(c) for c in range(clients)))
    for conn in conns:
        conn.close()


def popular_items(bundle: Path, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Catalogue ids of the bundle, drawn in proportion to training popularity (+1), as an
    array of ``shape``; reads two bundle files only, not the whole bundle."""
    import pandas as pd
    from safetensors.numpy import load_file

    ids = pd.read_parquet(bundle / "items.parquet", columns=["item_id"])["item_id"]
    popularity = load_file(bundle / "item_matrix.safetensors")["popularity"] + 1.0
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ids), size=shape, p=popularity / popularity.sum())
    return ids.to_numpy()[picks]


# --- the server under test -------------------------------------------------------------------


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def start_server(
    bundle: Path, port: int, log_path: Path, serve_config: dict, **run_options: Any
) -> subprocess.Popen:
    """`seqrec.serve.run_server` (what ``seqrec serve`` runs) of ``bundle`` in a subprocess with
    ``ServeConfig(**serve_config)`` and ``run_options`` (workers, threads), once it answers."""
    options = "".join(f"{name}={value!r}, " for name, value in run_options.items())
    code = (
        "from seqrec.serve import ServeConfig, run_server; "
        f"run_server({str(bundle)!r}, port={port}, {options}"
        f"config=ServeConfig(**{serve_config!r}), log_level='warning')"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=log_path.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        try:
            get_json(f"http://127.0.0.1:{port}/health")
            return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise RuntimeError("server did not start within 180 s")
