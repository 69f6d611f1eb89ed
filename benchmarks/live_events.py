"""Event ingestion of the live shop: ``POST /events`` on SQLite (a script, not a test).

Starts ``seqrec serve`` (`seqrec.serve.run_server`) in a subprocess on a fresh SQLite file and a
token file, then ``--clients`` keep-alive connections post batches of ``--batch`` view events
(shoppers drawn from ``--shoppers``, items by training popularity) as fast as the server
acknowledges them, for ``--seconds``. Every answer is checked (HTTP 200, every event stored);
anything else counts as an error. The figure: acknowledged events per second. Each
acknowledgement comes after its transaction is committed with ``synchronous=FULL``.

The pieces are reusable for other live-shop benchmarks (recommendations by shopper id while
events are written): `start_server` (the server on a database, ready), `event_batches` (request
bodies) and `post_events` (a closed loop, or an open loop at ``rate`` batches per second).

    python benchmarks/live_events.py --bundle runs/hm --out benchmarks/results/live_events.md \\
        --json benchmarks/results/live_events.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from load_client import start_server as start_process
from serve_load import CONTENT_LENGTH, free_port, machine_speed, tree_cpu_seconds

from seqrec.report import machine_facts, machine_line, markdown_table

TOKEN = "live-events-benchmark"


@dataclass
class EventsConfig:
    bundle: Path
    batch: int = 100  # events per POST /events
    clients: int = 4  # connections posting at once
    seconds: float = 20.0
    shoppers: int = 10_000
    seed: int = 0


@dataclass
class PostResult:
    """What a run of `post_events` saw."""

    seconds: float = 0.0
    requests: int = 0
    events: int = 0  # acknowledged as stored
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "events": self.events,
            "errors": self.errors,
            "events_per_s": round(self.events / max(self.seconds, 1e-9)),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
        }


# --- the server ----------------------------------------------------------------------------------


def start_server(  # noqa: PLR0913 (a server's settings)
    bundle: Path,
    db: Path,
    port: int,
    log_path: Path,
    serve_options: dict | None = None,
    workers: int = 1,
) -> subprocess.Popen:
    """`seqrec.serve.run_server` on the SQLite file ``db`` (writes need ``TOKEN``) with
    ``workers`` processes, ready."""
    token_file = db.with_suffix(".token")
    token_file.write_text(TOKEN)
    options = {"db": str(db), "token_file": str(token_file), **(serve_options or {})}
    return start_process(bundle, port, log_path, options, workers=workers)


# --- the client ----------------------------------------------------------------------------------


def event_batches(
    bundle: Path, n: int, batch: int, shoppers: int, seed: int = 0
) -> list[tuple[bytes, int]]:
    """``n`` POST /events bodies of ``batch`` view events each, with their event counts."""
    from seqrec.bundle import load_bundle

    loaded = load_bundle(bundle)
    ids = np.asarray(list(loaded.item_index()))
    weights = np.asarray(loaded.popularity, dtype=np.float64) + 1.0
    rng = np.random.default_rng(seed)
    start = 18_500 if str(loaded.manifest.get("time_unit")) == "day" else 1_600_000_000
    bodies = []
    for b in range(n):
        items = rng.choice(ids, size=batch, p=weights / weights.sum())
        users = rng.integers(0, shoppers, size=batch)
        events = [
            {"user_id": f"shopper{u}", "item_id": str(i), "type": "view", "timestamp": start + b}
            for u, i in zip(users.tolist(), items.tolist(), strict=True)
        ]
        bodies.append((json.dumps({"events": events}).encode(), batch))
    return bodies


async def post(reader, writer, body: bytes) -> tuple[int, bytes]:
    """One keep-alive POST /events; (status, body)."""
    head = (
        b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (TOKEN.encode(), len(body))
    )
    writer.write(head + body)
    response_head = await reader.readuntil(b"\r\n\r\n")
    length = int(CONTENT_LENGTH.search(response_head).group(1))
    return int(response_head[9:12]), await reader.readexactly(length)


async def post_events(
    port: int,
    bodies: list[tuple[bytes, int]],
    clients: int,
    seconds: float,
    rate: float | None = None,
) -> PostResult:
    """Post ``bodies`` (cycled) over ``clients`` connections for ``seconds``: as fast as
    acknowledged, or ``rate`` batches per second in all on a fixed schedule (latency from the
    scheduled time)."""
    result = PostResult()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    stop = start + seconds

    async def client(c: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = c
        while loop.time() < stop:
            due = loop.time() if rate is None else start + i / rate
            if due >= stop:
                break
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            body, n = bodies[i % len(bodies)]
            try:
                status, payload = await post(reader, writer, body)
                ok = status == 200 and json.loads(payload)["stored"] == n
            except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError):
                ok = False
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            result.latencies_ms.append(1000 * (loop.time() - due))
            result.requests += 1
            result.events += n if ok else 0
            result.errors += not ok
            i += clients
        writer.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    result.seconds = loop.time() - start
    return result


# --- the report ----------------------------------------------------------------------------------


def markdown(config: EventsConfig, summary: dict, manifest: dict, speed: dict, machine: dict):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = ("batch", "clients", "s", "requests", "events", "errors", "events/s", "p50 ms")
    header += ("p99 ms", "server CPU ms/batch")
    row = [config.batch, config.clients]
    row += [summary[k] for k in ("seconds", "requests", "events", "errors", "events_per_s")]
    row += [summary["p50_ms"], summary["p99_ms"], summary["server_cpu_ms_per_batch"]]
    lines = [
        f"### Run {now}",
        "",
        f"- command: `python benchmarks/live_events.py {' '.join(sys.argv[1:])}`",
        f"- machine: {machine_line(machine)}",
        f"- bundle: {manifest.get('dataset')} ({manifest['n_items']:,} items); database: a fresh "
        "SQLite file (WAL, synchronous=FULL) on the local disk; 1 server process",
        f"- events: views of {config.shoppers:,} shoppers, items drawn by training popularity; "
        "each answer comes after its batch is committed",
        f"- machine speed (`spin`, before the run): {speed['spin_alone_s']} s alone, "
        f"{' and '.join(map(str, speed['spin_two_at_once_s']))} s as two processes at once; "
        f"load average {', '.join(map(str, speed['load_before']))} (2 cores: shared when > 2)",
        "",
        *markdown_table(header, [row]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    for name, value in asdict(EventsConfig(bundle=Path("."))).items():
        if name != "bundle":
            parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, help="Write the markdown report here.")
    parser.add_argument("--json", type=Path, help="Write the summary as JSON here.")
    args = vars(parser.parse_args())
    out, json_path = args.pop("out"), args.pop("json")
    config = EventsConfig(**args)

    manifest = json.loads((config.bundle / "bundle.json").read_text())
    speed = {**machine_speed(), "load_before": [round(x, 2) for x in os.getloadavg()]}
    bodies = event_batches(config.bundle, 500, config.batch, config.shoppers, config.seed)
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        log_path = Path(folder) / "server.log"
        server = start_server(config.bundle, Path(folder) / "events.db", port, log_path)
        try:
            asyncio.run(post_events(port, bodies[:20], 1, 1.0))  # warm-up
            cpu_before = tree_cpu_seconds(server.pid)
            result = asyncio.run(post_events(port, bodies, config.clients, config.seconds))
            cpu = tree_cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=30)
    summary = result.summary()
    summary["server_cpu_ms_per_batch"] = round(1000 * cpu / max(result.requests, 1), 2)
    machine = machine_facts()
    report = markdown(config, summary, manifest, speed, machine)
    print(report)
    if out:
        out.write_text(report)
    if json_path:
        document = {"config": {**asdict(config), "bundle": str(config.bundle)}, **summary}
        document["machine_speed"] = speed
        json_path.write_text(json.dumps({**document, "machine": machine}, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
