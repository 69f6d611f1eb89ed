"""Load and latency benchmark of ``seqrec serve`` (a script, not a test).

Starts ``seqrec serve`` in a subprocess on a loopback port and drives it from this process,
over keep-alive HTTP/1.1 connections, with ``POST /recommend`` bodies of ``--history`` item ids
(drawn by popularity from the bundle's catalogue) and ``k = --k``. Phases:

1. ``single``: one client, one request at a time (closed loop): the latency of a lone request.
2. ``saturate``: ``--concurrency`` clients in a closed loop: the most requests per second.
3. ``open``: ``--concurrency`` connections sending ``--rate`` requests per second in total on a
   fixed schedule (open loop); latency counts from the scheduled send time, so a slow server
   cannot hide its queue by slowing the clients down (no coordinated omission).

With C clients in a closed loop, throughput = C / mean latency (Little's law), so a p99 target
at a given rate is measured in the open-loop phase. Every answer is checked (HTTP 200 and k
items); anything else, or a broken connection, counts as an error.

The client is a minimal asyncio HTTP/1.1 writer/parser rather than an HTTP library: on two
cores shared with the server, a full client (httpx) costs as much CPU per request as the
server and would measure itself (``load_client.py``, shared with ``live_load.py``).

    python benchmarks/serve_load.py --bundle /tmp/hm_bundle --out /tmp/serve_load_run.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from load_client import CONTENT_LENGTH as CONTENT_LENGTH  # live_events.py imports it from here
from load_client import Connection, checked_request, get_json, popular_items
from load_client import open_loop as scheduled_loop
from load_client import start_server as start_process

from seqrec.report import machine_facts, machine_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]
RANKED_OVER = {"exact": "every item", "index": "the candidates of an index"}


@dataclass
class LoadConfig:
    bundle: Path
    history: int = 50  # item ids per request
    k: int = 12
    concurrency: int = 32
    rate: float = 500.0  # open-loop requests per second, all connections together
    single_seconds: float = 15.0
    saturate_seconds: float = 30.0
    open_seconds: float = 60.0
    warmup_requests: int = 300
    workers: int = 1  # server processes
    threads: int = 1  # torch threads per server process
    max_batch: int = 64  # seqrec.serve.ServeConfig fields
    batch_wait_ms: float = 0.0
    thread: int = -1  # 1: rank in a worker thread, 0: in the event loop, -1: the server's choice
    runtime: str = "auto"  # auto | onnx | torchscript | eager (seqrec.serve.scoring)
    retrieval: str = "auto"  # auto | exact | index (seqrec.serve.retrieval)
    compile_trees: int = 1  # 1: a ranker's trees compiled (seqrec.ranker.compiled), 0: LightGBM
    seed: int = 0
    phases: list[str] = field(default_factory=lambda: ["single", "saturate", "open"])


@dataclass
class PhaseResult:
    phase: str
    clients: int
    seconds: float
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    batches: int | None = None
    ranking_cpu_s: float | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        done = max(self.requests, 1)
        return {
            "phase": self.phase,
            "clients": self.clients,
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "errors": self.errors,
            "req_per_s": round(self.requests / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p90_ms": round(float(np.percentile(lat, 90)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2),
            "server_cpu_ms_per_req": round(1000 * self.server_cpu_s / done, 3),
            "server_cores_used": round(self.server_cpu_s / self.seconds, 2),
            "client_cpu_ms_per_req": round(1000 * self.client_cpu_s / done, 3),
            "ranking_cpu_ms_per_req": (
                round(1000 * self.ranking_cpu_s / done, 3) if self.batches else None
            ),
            "mean_batch": round(self.requests / self.batches, 2) if self.batches else None,
            "load_before": [round(x, 2) for x in self.load_before],
        }


# --- the client (load_client.py) ------------------------------------------------------------


async def timed_post(conn: Connection, body: bytes, k: int) -> bool:
    """One request; True when the answer is a 200 with k items."""

    def check(status: int, payload: bytes) -> bool:
        return status == 200 and len(json.loads(payload)["items"]) == k

    return await checked_request(conn, check, b"POST", b"/recommend", body)


async def closed_loop(port, bodies, k, clients, seconds, result: PhaseResult) -> None:
    conns = [Connection(port) for _ in range(clients)]
    for conn in conns:
        await conn.open()
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    async def client(c: int) -> None:
        i = c
        while loop.time() < stop:
            start = loop.time()
            ok = await timed_post(conns[c], bodies[i % len(bodies)], k)
            result.latencies_ms.append(1000 * (loop.time() - start))
            result.requests += 1
            result.errors += not ok
            i += clients

    await asyncio.gather(*(client(c) for c in range(clients)))
    for conn in conns:
        conn.close()


async def open_loop(port, bodies, k, clients, rate, seconds, result: PhaseResult) -> None:
    async def send(conn: Connection, i: int) -> bool:
        return await timed_post(conn, bodies[i % len(bodies)], k)

    await scheduled_loop(port, clients, rate, seconds, send, result)


# --- the server and the machine ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def start_server(config: LoadConfig, port: int, log_path: Path) -> subprocess.Popen:
    """`seqrec.serve.run_server` (what ``seqrec serve`` runs) in a subprocess, ready."""
    serve_config = {
        "max_batch": config.max_batch,
        "batch_wait_ms": config.batch_wait_ms,
        "thread": None if config.thread < 0 else bool(config.thread),
        "runtime": config.runtime,
        "retrieval": config.retrieval,
        "compile_trees": bool(config.compile_trees),
    }
    return start_process(
        config.bundle, port, log_path, serve_config, workers=config.workers,
        threads=config.threads,
    )  # fmt: skip


def request_bodies(config: LoadConfig, n: int = 2000) -> list[bytes]:
    """Histories of ``config.history`` catalogue ids, items drawn in proportion to popularity."""
    picks = popular_items(config.bundle, (n, config.history), config.seed)
    return [json.dumps({"history": row.tolist(), "k": config.k}).encode() for row in picks]


def run_phase(name, config, port, bodies, server_pid) -> PhaseResult:
    clients = 1 if name == "single" else config.concurrency
    seconds = {"single": config.single_seconds, "saturate": config.saturate_seconds}.get(
        name, config.open_seconds
    )
    result = PhaseResult(name, clients, seconds, load_before=os.getloadavg())
    health = get_json(f"http://127.0.0.1:{port}/health")
    cpu_server, cpu_client = tree_cpu_seconds(server_pid), time.process_time()
    wall = time.perf_counter()
    if name == "open":
        coroutine = open_loop(port, bodies, config.k, clients, config.rate, seconds, result)
    else:
        coroutine = closed_loop(port, bodies, config.k, clients, seconds, result)
    asyncio.run(coroutine)
    result.seconds = time.perf_counter() - wall
    result.server_cpu_s = tree_cpu_seconds(server_pid) - cpu_server
    result.client_cpu_s = time.process_time() - cpu_client
    if config.workers == 1:  # with several workers /health reaches only one of them
        after = get_json(f"http://127.0.0.1:{port}/health")
        result.batches = after["batches"] - health["batches"]
        result.ranking_cpu_s = after["ranking_cpu_s"] - health["ranking_cpu_s"]
    return result


def spin(_: int = 0) -> float:
    """Seconds a fixed pure-Python loop takes: how fast this machine is at the moment."""
    start = time.perf_counter()
    total = 0
    for step in range(10_000_000):
        total += step
    return time.perf_counter() - start


def machine_speed() -> dict:
    """`spin` alone and in two processes at once. The machine is a shared VM whose speed
    changes from hour to hour; this says how fast it was when the phases ran."""
    from multiprocessing import Pool

    alone = spin()
    with Pool(2) as pool:
        both = pool.map(spin, [0, 1])
    return {"spin_alone_s": round(alone, 3), "spin_two_at_once_s": [round(x, 3) for x in both]}


TABLE_HEADER = (
    "phase",
    "clients",
    "s",
    "requests",
    "errors",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "server CPU ms/req",
    "of which ranking",
    "server cores used",
    "client CPU ms/req",
    "mean batch",
    "load avg before",
)


def table_row(config: LoadConfig, result: PhaseResult) -> list:
    s = result.summary()
    phase = f"open @ {config.rate:g}/s" if s["phase"] == "open" else s["phase"]
    return [
        phase,
        *(s[key] for key in ("clients", "seconds", "requests", "errors", "req_per_s")),
        *(s[key] for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_ms_per_req")),
        s["ranking_cpu_ms_per_req"] or "-",
        s["server_cores_used"],
        s["client_cpu_ms_per_req"],
        s["mean_batch"] or "-",
        ", ".join(map(str, s["load_before"])),
    ]


def markdown(
    config: LoadConfig,
    results: list[PhaseResult],
    manifest: dict,
    health: dict,
    speed: dict,
    machine: dict,
) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### Run {now}",
        "",
        f"- command: `python benchmarks/serve_load.py {' '.join(sys.argv[1:])}`",
        f"- machine: {machine_line(machine)}",
        f"- bundle: {manifest.get('dataset')} ({manifest['n_items']:,} items), {health['model']}, "
        f"dim {manifest['dim']}, max_len {manifest['max_len']}",
        f"- server: {config.workers} worker(s), {config.threads} torch thread(s), max_batch "
        f"{config.max_batch}, batch_wait_ms {config.batch_wait_ms:g}, ranking in "
        f"{'a worker thread' if health['ranking_in'] == 'thread' else 'the event loop'}"
        f"{' (asked)' if config.thread >= 0 else ''}, "
        f"scores by {health['runtime']} (asked: {config.runtime}), ranking "
        f"{RANKED_OVER[health['retrieval']]} (retrieval {health['retrieval']}, asked: "
        f"{config.retrieval})"
        + (f", trees walked by {health['trees']}" if health.get("trees") else ""),
        f"- requests: histories of {config.history} ids, k = {config.k}",
        f"- machine speed (`spin`, 10M Python additions, before the phases): "
        f"{speed['spin_alone_s']} s alone, "
        f"{' and '.join(map(str, speed['spin_two_at_once_s']))} s as two processes at once",
        "",
        *markdown_table(TABLE_HEADER, (table_row(config, result) for result in results)),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = LoadConfig(bundle=Path("."))
    parser.add_argument("--bundle", type=Path, required=True)
    for name, value in asdict(defaults).items():
        if name in ("bundle", "phases"):
            continue
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--phases", default=",".join(defaults.phases))
    parser.add_argument("--out", type=Path, help="Write the markdown report here.")
    parser.add_argument("--json", type=Path, help="Write the summaries as JSON here.")
    args = vars(parser.parse_args())
    out, json_path = args.pop("out"), args.pop("json")
    args["phases"] = [phase for phase in args["phases"].split(",") if phase]
    config = LoadConfig(**args)

    manifest = json.loads((config.bundle / "bundle.json").read_text())
    speed = machine_speed()
    bodies = request_bodies(config)
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load_{port}.log"
    server = start_server(config, port, log_path)
    try:
        health = get_json(f"http://127.0.0.1:{port}/health")
        warmup = PhaseResult("warmup", 1, 0.0)
        asyncio.run(closed_loop(port, bodies, config.k, 4, 2.0, warmup))
        results = []
        for phase in config.phases:
            result = run_phase(phase, config, port, bodies, server.pid)
            results.append(result)
            print(json.dumps(result.summary()), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    import onnxruntime
    import torch

    machine = machine_facts(torch=torch.__version__, onnxruntime=onnxruntime.__version__)
    report = markdown(config, results, manifest, health, speed, machine)
    print(report)
    if out:
        out.write_text(report)
    if json_path:
        summaries = [{**r.summary(), "machine_speed": speed, "machine": machine} for r in results]
        json_path.write_text(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
