"""Live shop load: recommendations by shopper id while events are written (a script, not a test).

Issue #27's goal: ``GET /users/{id}/recommendations`` of shoppers with 50 stored events answers
with p50 <= 4 ms and p99 <= 25 ms at 500 requests/s (open loop) while another client writes
1,000 events/s, with no error, on 2 cores.

Starts the server as ``seqrec serve --bundle B --token-file T --db D`` runs it
(`live_events.start_server`: one process, a fresh SQLite file and token file in a temporary
folder) on a loopback port, then:

1. seed: ``--users`` shoppers (``shopper0``, ``shopper1``, ...) get ``--history`` events each
   (views, and a purchase one time in five) of items drawn by training popularity, ISO dates
   inside the data's period, posted as ``POST /events`` batches of ``--batch``.
2. ``baseline``: the reader alone for ``--seconds``: ``--rate`` requests/s of
   ``GET /users/{random seeded shopper}/recommendations?k=K`` over ``--clients`` keep-alive
   connections, open loop (latency from the scheduled send time, `load_client.open_loop`).
3. ``live``: the same reader and, at once, a writer posting ``--event-rate`` events/s as
   batches of ``--batch`` for random seeded shoppers over ``--writers`` connections, open loop
   (`live_events.post_events`), dated after the seeded events.

Every answer is checked: a read is right when it is a 200 with k items, a write when it is a 200
with every event stored; anything else, or a broken connection, counts as an error. Reads also
count the answers' ``source`` (a seeded shopper answered by ``popularity`` was not found).

    python benchmarks/live_load.py --bundle runs/hm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from live_events import post, post_events, start_server
from load_client import Check, Connection, checked_request, open_loop, popular_items
from serve_load import PhaseResult, free_port, get_json, machine_speed, tree_cpu_seconds

from seqrec.report import machine_facts, machine_line, markdown_table, utc_now

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PURCHASE_SHARE = 0.2  # of the generated events; the others are views
SEED_DAYS = ("2020-03-01", "2020-08-25")  # seeded events, H&M's period ends 2020-09-22
WRITE_DAYS = ("2020-08-26", "2020-09-22")  # events written during the live phase
SEED_CONNECTIONS = 4
GOAL = {"rate": 500.0, "event_rate": 1000.0, "history": 50, "p50_ms": 4.0, "p99_ms": 25.0}


@dataclass
class LiveConfig:
    bundle: Path
    users: int = 2000  # seeded shoppers
    history: int = 50  # seeded events per shopper
    seconds: float = 30.0  # per phase
    rate: float = 500.0  # reads per second, all reader connections together
    clients: int = 32  # reader connections
    event_rate: float = 1000.0  # events per second written in the live phase
    batch: int = 100  # events per POST /events
    writers: int = 2  # writer connections
    k: int = 12
    warmup_seconds: float = 2.0  # reads before the phases, not counted
    seed: int = 0
    workers: int = 1  # server processes (`seqrec serve --workers`)
    # 1: rank in a worker thread, 0: in the event loop, -1: the server's choice (ServeConfig.thread)
    thread: int = -1
    repeats: int = 1  # whole runs (a fresh server and database each), reported one by one


# --- what is sent --------------------------------------------------------------------------------


def day_numbers(period: tuple[str, str], size: int | tuple[int, ...], rng) -> np.ndarray:
    """Random days (since 1970-01-01) inside ``period``, both ends included."""
    first, last = (np.datetime64(day, "D").astype(np.int64) for day in period)
    return rng.integers(first, last + 1, size=size)


def event_bodies(users, items, days, batch: int, dated: bool, rng) -> list[tuple[bytes, int]]:
    """POST /events bodies of ``batch`` events (the arrays' order) with their event counts;
    timestamps are ISO dates, or day numbers for a bundle whose timestamps are not dates."""
    kinds = np.where(rng.random(len(users)) < PURCHASE_SHARE, "purchase", "view").tolist()
    stamps = np.datetime_as_string(days.astype("datetime64[D]")) if dated else days
    events = [
        {"user_id": f"shopper{u}", "item_id": i, "type": t, "timestamp": s}
        for u, i, t, s in zip(users.tolist(), items.tolist(), kinds, stamps.tolist(), strict=True)
    ]
    chunks = (events[start : start + batch] for start in range(0, len(events), batch))
    return [(json.dumps({"events": chunk}).encode(), len(chunk)) for chunk in chunks]


def seed_bodies(config: LiveConfig, dated: bool) -> list[tuple[bytes, int]]:
    """``config.history`` events of each seeded shopper, shopper after shopper, oldest first."""
    rng = np.random.default_rng(config.seed)
    shape = (config.users, config.history)
    items = popular_items(config.bundle, shape, config.seed)  # [U, H]
    days = np.sort(day_numbers(SEED_DAYS, shape, rng), axis=1)  # [U, H]
    users = np.repeat(np.arange(config.users), config.history)  # [U * H]
    return event_bodies(users, items.ravel(), days.ravel(), config.batch, dated, rng)


def write_bodies(config: LiveConfig, dated: bool) -> list[tuple[bytes, int]]:
    """The live phase's batches: events of random seeded shoppers, later batches later."""
    rng = np.random.default_rng(config.seed + 1)
    size = max(1, math.ceil(config.event_rate * config.seconds / config.batch)) * config.batch
    items = popular_items(config.bundle, (size,), config.seed + 1)
    users = rng.integers(0, config.users, size=size)
    days = np.sort(day_numbers(WRITE_DAYS, size, rng))
    return event_bodies(users, items, days, config.batch, dated, rng)


def read_paths(config: LiveConfig, n: int = 10_000) -> list[bytes]:
    """Request paths of random seeded shoppers."""
    users = np.random.default_rng(config.seed + 2).integers(0, config.users, size=n)
    return [b"/users/shopper%d/recommendations?k=%d" % (u, config.k) for u in users.tolist()]


def read_check(k: int, sources: Counter) -> Check:
    """A read is right when it is a 200 with ``k`` items; counts the answers' sources."""

    def check(status: int, payload: bytes) -> bool:
        if status != 200:
            return False
        answer = json.loads(payload)
        sources[answer["source"]] += 1
        return len(answer["items"]) == k

    return check


# --- the phases ----------------------------------------------------------------------------------


async def seed(port: int, bodies: list[tuple[bytes, int]]) -> None:
    """Post every seed batch once over a few connections; each must be stored whole."""

    async def client(c: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for body, n in bodies[c::SEED_CONNECTIONS]:
            status, payload = await post(reader, writer, body)
            if status != 200 or json.loads(payload)["stored"] != n:
                raise RuntimeError(f"seeding failed: HTTP {status}: {payload[:300]!r}")
        writer.close()

    await asyncio.gather(*(client(c) for c in range(SEED_CONNECTIONS)))


async def reads_and_writes(config, port, paths, check, result, writes):
    """The open-loop reader and, when ``writes`` are given, the open-loop writer at once;
    the writer's `PostResult` or None."""

    async def send(conn: Connection, i: int) -> bool:
        return await checked_request(conn, check, b"GET", paths[i % len(paths)])

    reader = open_loop(port, config.clients, config.rate, config.seconds, send, result)
    if writes is None:
        await reader
        return None
    batches_per_s = config.event_rate / config.batch
    writer = post_events(port, writes, config.writers, config.seconds, rate=batches_per_s)
    _, written = await asyncio.gather(reader, writer)
    return written


def run_phase(name: str, config: LiveConfig, port: int, server_pid: int, paths, writes) -> dict:
    """One phase; its reader's summary (`PhaseResult`) and its writer's (`PostResult`)."""
    result = PhaseResult(name, config.clients, config.seconds, load_before=os.getloadavg())
    sources: Counter = Counter()
    check = read_check(config.k, sources)
    health = get_json(f"http://127.0.0.1:{port}/health")
    cpu_server, cpu_client = tree_cpu_seconds(server_pid), time.process_time()
    wall = time.perf_counter()
    written = asyncio.run(reads_and_writes(config, port, paths, check, result, writes))
    result.seconds = time.perf_counter() - wall
    result.server_cpu_s = tree_cpu_seconds(server_pid) - cpu_server
    result.client_cpu_s = time.process_time() - cpu_client
    after = get_json(f"http://127.0.0.1:{port}/health")
    if config.workers == 1:  # /health counts one worker's ranking: none for several
        result.batches = after["batches"] - health["batches"]
        result.ranking_cpu_s = after["ranking_cpu_s"] - health["ranking_cpu_s"]
    reads = {**result.summary(), "asked_per_s": config.rate, "sources": dict(sources)}
    reads["client_cores_used"] = round(result.client_cpu_s / result.seconds, 2)
    phase = {"phase": name, "reads": reads, "writes": None}
    if written is not None:  # events stored per second of the phase, as the reads
        events_per_s = round(written.events / result.seconds)
        writes_summary = {**written.summary(), "events_per_s": events_per_s}
        phase["writes"] = {**writes_summary, "asked_events_per_s": config.event_rate}
    return phase


def serve_and_measure(config: LiveConfig, dated: bool) -> tuple[dict, dict, list[dict]]:
    """Start the server on a fresh database, seed it, run both phases; (health, seeding,
    phases)."""
    seeds, writes = seed_bodies(config, dated), write_bodies(config, dated)
    paths = read_paths(config)
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        db, log = Path(folder) / "events.db", Path(folder) / "log"
        options = {} if config.thread < 0 else {"thread": bool(config.thread)}
        server = start_server(config.bundle, db, port, log, options, workers=config.workers)
        try:
            health = get_json(f"http://127.0.0.1:{port}/health")
            wall = time.perf_counter()
            asyncio.run(seed(port, seeds))
            seconds = time.perf_counter() - wall
            events = config.users * config.history
            seeding = {"events": events, "seconds": round(seconds, 2)}
            seeding["events_per_s"] = round(events / seconds)
            warmup = PhaseResult("warmup", config.clients, config.warmup_seconds)
            warm = replace(config, seconds=config.warmup_seconds)
            check = read_check(config.k, Counter())
            asyncio.run(reads_and_writes(warm, port, paths, check, warmup, None))
            phases = []
            for name, phase_writes in (("baseline", None), ("live", writes)):
                phases.append(run_phase(name, config, port, server.pid, paths, phase_writes))
                print(json.dumps(phases[-1]), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return health, seeding, phases


# --- the report ----------------------------------------------------------------------------------


def goal_verdict(config: LiveConfig, phases: list[dict]) -> dict:
    """Whether the live phase met issue #27's goal; no verdict at other rates."""
    asked = {"rate": config.rate, "event_rate": config.event_rate, "history": config.history}
    if any(asked[key] != GOAL[key] for key in asked):
        return {"verdict": "no verdict: not the goal's rates", **asked}
    live = next(phase for phase in phases if phase["phase"] == "live")
    reads, writes = live["reads"], live["writes"]
    met = (
        reads["p50_ms"] <= GOAL["p50_ms"]
        and reads["p99_ms"] <= GOAL["p99_ms"]
        and reads["errors"] == 0
        and writes["errors"] == 0
        and reads["req_per_s"] >= 0.95 * config.rate
        and writes["events_per_s"] >= 0.95 * config.event_rate
    )
    return {"verdict": "met" if met else "missed", **asked}


READ_HEADER = ("phase", "reads/s asked", "reads/s done", "requests", "errors", "p50 ms", "p90 ms")
READ_HEADER += ("p99 ms", "max ms", "answers by source", "of which ranking CPU ms/req")
READ_HEADER += ("mean batch", "server cores used", "client cores used", "load avg before")
WRITE_HEADER = ("phase", "events/s asked", "events/s stored", "POSTs", "events stored", "errors")
WRITE_HEADER += ("p50 ms", "p99 ms")


def read_row(phase: dict) -> list:
    r = phase["reads"]
    sources = ", ".join(f"{name} {count}" for name, count in sorted(r["sources"].items()))
    return [
        phase["phase"],
        *(r[key] for key in ("asked_per_s", "req_per_s", "requests", "errors", "p50_ms")),
        *(r[key] for key in ("p90_ms", "p99_ms", "max_ms")),
        sources or "-",
        r["ranking_cpu_ms_per_req"] or "-",
        r["mean_batch"] or "-",
        r["server_cores_used"],
        r["client_cores_used"],
        ", ".join(map(str, r["load_before"])),
    ]


def write_row(phase: dict) -> list:
    w = phase["writes"]
    return [
        phase["phase"],
        *(w[key] for key in ("asked_events_per_s", "events_per_s", "requests", "events")),
        *(w[key] for key in ("errors", "p50_ms", "p99_ms")),
    ]


def summary(documents: list[dict]) -> str:
    """The verdicts and live-phase latencies of every run (nothing for a single run)."""
    if len(documents) < 2:
        return ""
    lives = [document["phases"][-1]["reads"] for document in documents]
    met = sum(document["goal"]["verdict"] == "met" for document in documents)
    p50s, p99s = [live["p50_ms"] for live in lives], [live["p99_ms"] for live in lives]
    return (
        f"## {len(documents)} runs of `{documents[0]['command']}`\n\n"
        f"- goal (#27) met in **{met} of {len(documents)}** runs; live phase p50 by run "
        f"{', '.join(map(str, p50s))} ms (median {float(np.median(p50s)):.2f}), p99 "
        f"{', '.join(map(str, p99s))} ms (median {float(np.median(p99s)):.2f})\n\n"
    )


def ranking_in(health: dict, config: LiveConfig) -> str:
    """Where the server ranked: its /health says (a report of an older run: as asked)."""
    return health.get("ranking_in", "thread" if config.thread else "event loop")


def markdown(config: LiveConfig, document: dict) -> str:
    manifest, health, speed = document["manifest"], document["health"], document["machine_speed"]
    seeding, goal, phases = document["seeding"], document["goal"], document["phases"]
    live = phases[-1]
    lines = [
        f"### Run {document['date']}",
        "",
        f"- command: `{document['command']}`",
        f"- machine: {machine_line(document['machine'])}; machine speed (`spin`, 10M Python "
        f"additions, before the run): {speed['spin_alone_s']} s alone, "
        f"{' and '.join(map(str, speed['spin_two_at_once_s']))} s as two processes at once; "
        f"load average before the run {', '.join(map(str, speed['load_before']))} "
        "(2 cores: shared when > 2)",
        f"- bundle: {manifest.get('dataset')} ({manifest['n_items']:,} items), {health['model']}, "
        f"scores by {health['runtime']}; server: what `seqrec serve --bundle B --token-file T "
        f"--db D --workers {config.workers}` runs ({config.workers} process(es), 1 torch thread "
        "each, ranking in "
        f"{'a worker thread' if ranking_in(health, config) == 'thread' else 'the event loop'}) "
        "on a fresh "
        "SQLite file (WAL, synchronous=FULL)",
        f"- seeded: {config.users:,} shoppers x {config.history} events (views, purchases one in "
        f"{round(1 / PURCHASE_SHARE)}), items by training popularity, dated {SEED_DAYS[0]} .. "
        f"{SEED_DAYS[1]}, in batches of {config.batch}: {seeding['seconds']} s "
        f"({seeding['events_per_s']:,} events/s over {SEED_CONNECTIONS} connections)",
        f"- reads: `GET /users/{{random seeded shopper}}/recommendations?k={config.k}`, "
        f"{config.rate:g}/s over {config.clients} keep-alive connections, open loop (latency "
        f"from the scheduled send time), {config.seconds:g} s per phase after a "
        f"{config.warmup_seconds:g} s warm-up",
        f"- writes (live phase only): {config.event_rate:,g} events/s as batches of "
        f"{config.batch} over {config.writers} connections, open loop, random seeded shoppers, "
        f"dated {WRITE_DAYS[0]} .. {WRITE_DAYS[1]}; each answer comes after the commit",
        f"- goal (#27): p50 <= {GOAL['p50_ms']:g} ms, p99 <= {GOAL['p99_ms']:g} ms at "
        f"{GOAL['rate']:g} reads/s while {GOAL['event_rate']:,g} events/s are written, 0 errors: "
        f"**{goal['verdict']}** (live: p50 {live['reads']['p50_ms']} ms, p99 "
        f"{live['reads']['p99_ms']} ms, {live['reads']['errors']} read and "
        f"{live['writes']['errors']} write errors)",
        "",
        *markdown_table(READ_HEADER, map(read_row, phases)),
        "",
        *markdown_table(WRITE_HEADER, (write_row(p) for p in phases if p["writes"])),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    for name, value in asdict(LiveConfig(bundle=Path("."))).items():
        if name != "bundle":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, default=RESULTS / "live_load.md")
    parser.add_argument("--json", type=Path, default=RESULTS / "live_load.json")
    args = vars(parser.parse_args())
    out, json_path = args.pop("out"), args.pop("json")
    config = LiveConfig(**args)

    manifest = json.loads((config.bundle / "bundle.json").read_text())
    dated = str(manifest.get("time_unit")) in ("day", "second")
    documents = []
    for _ in range(config.repeats):
        speed = {**machine_speed(), "load_before": [round(x, 2) for x in os.getloadavg()]}
        health, seeding, phases = serve_and_measure(config, dated)
        documents.append({
            "date": utc_now(),
            "command": f"python benchmarks/live_load.py {' '.join(sys.argv[1:])}",
            "config": {**asdict(config), "bundle": str(config.bundle)},
            "manifest": {key: manifest.get(key) for key in ("dataset", "n_items", "time_unit")},
            "health": {key: health[key] for key in ("model", "runtime", "ranking_in")},
            "seeding": seeding,
            "phases": phases,
            "goal": goal_verdict(config, phases),
            "machine_speed": speed,
            "machine": machine_facts(),
        })  # fmt: skip
    report = summary(documents) + "".join(markdown(config, document) for document in documents)
    print(report)
    out.write_text(report)
    json_path.write_text(json.dumps({"runs": documents}, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
