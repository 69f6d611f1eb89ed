"""In-process cost of ``POST /recommend``: the ASGI fast path against FastAPI's routing.

Calls the app as an ASGI callable (no sockets, no client), ranking in the event loop with one
torch thread, so what is left is the app's own CPU per request. "routed" sends the same body as
``application/merge-patch+json``, a JSON type `RecommendFastPath` leaves to FastAPI; the
answers are the same. Prints the median over ``--rounds`` rounds (the two alternating) of
microseconds per request.

    python benchmarks/serve_asgi.py --bundle runs/hm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqrec.serve.app import ServeConfig, create_app

ROUTED = b"application/merge-patch+json"


async def post(app, body: bytes, content_type: bytes) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/recommend",
        "raw_path": b"/recommend",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"status {sent[0]['status']}: {sent[1]['body'][:200]}")


async def per_request_us(app, bodies, rounds: int, requests: int) -> tuple[float, float]:
    """Median us per request (fast path, routed), the two alternating round by round so that
    the machine's drift falls on both alike."""
    kinds = (b"application/json", ROUTED)
    for body in bodies[:20]:
        for kind in kinds:
            await post(app, body, kind)
    times = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            start = time.perf_counter()
            for i in range(requests):
                await post(app, bodies[i % len(bodies)], kind)
            times[kind].append((time.perf_counter() - start) / requests * 1e6)
    return tuple(statistics.median(times[kind]) for kind in kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    app = create_app(args.bundle, ServeConfig(thread=False))
    ids = pd.read_parquet(args.bundle / "items.parquet", columns=["item_id"])["item_id"]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(ids), (200, args.history))
    cases = {
        f"{args.history} ids, k = 12": [
            json.dumps({"history": ids.to_numpy()[row].tolist(), "k": 12}).encode() for row in picks
        ],
        "empty history (popularity), k = 12": [json.dumps({"history": [], "k": 12}).encode()],
    }
    print("| request | fast path us | routed by FastAPI us |\n|---|---:|---:|")
    for name, bodies in cases.items():
        fast, routed = asyncio.run(per_request_us(app, bodies, args.rounds, args.requests))
        print(f"| {name} | {fast:.0f} | {routed:.0f} |")


if __name__ == "__main__":
    main()
