"""The app under uvicorn: `run_server` (what ``seqrec serve`` runs), in one process or several."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from seqrec.constraints import check_config
from seqrec.data.dataset import DataError
from seqrec.serve.app import create_app
from seqrec.serve.auth import read_token
from seqrec.serve.schemas import ServeConfig, ranks_in_thread
from seqrec.serve.store import is_url

if TYPE_CHECKING:
    import uvicorn

ENV_BUNDLE = "SEQREC_SERVE_BUNDLE"  # how `run_server` passes its arguments to worker processes
ENV_CONFIG = "SEQREC_SERVE_CONFIG"
ENV_THREADS = "SEQREC_SERVE_THREADS"


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes; arguments come from `run_server`."""
    threads = int(os.environ.get(ENV_THREADS, "1"))
    torch.set_num_threads(threads)
    # numpy's BLAS as many threads as torch: its idle threads would spin on the other cores
    # after each of a request's small products, taking them from the requests beside it
    threadpool_limits(threads, user_api="blas")
    config = ServeConfig(**json.loads(os.environ.get(ENV_CONFIG, "{}")))
    app = create_app(os.environ[ENV_BUNDLE], config)
    gc.freeze()  # the bundle's many objects stay out of the collector's scans (shorter pauses)
    return app


def run_server(
    bundle_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    threads: int = 1,
    config: ServeConfig | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``bundle_path`` under uvicorn; each of ``workers`` processes loads the bundle once
    and scores with ``threads`` torch threads."""
    import uvicorn

    config = config or ServeConfig()
    check_config(config)  # here too, so that workers never start with options they refuse
    bundle_path = Path(bundle_path).resolve()
    if not (bundle_path / "bundle.json").is_file():
        raise DataError(f"{bundle_path} is not a complete seqrec bundle (no bundle.json)")
    config = replace(absolute_paths(config), thread=ranks_in_thread(config, workers))
    read_token(config)  # a token file that is missing or empty stops the start, once
    os.environ[ENV_BUNDLE] = str(bundle_path)
    os.environ[ENV_CONFIG] = json.dumps(asdict(config))
    os.environ[ENV_THREADS] = str(threads)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
    }
    if workers == 1:
        uvicorn.run(app_from_env(), **options)
        return
    factory = f"{__name__}:app_from_env"
    server_config = uvicorn.Config(factory, factory=True, workers=workers, **options)
    if not hasattr(socket, "SO_REUSEPORT") or sys.platform != "linux":
        from uvicorn.supervisors import Multiprocess  # one shared socket (no kernel balancing)

        Multiprocess(server_config, sockets=[tcp_listener(server_config)]).run()
        return
    run_workers(server_config, workers)


def absolute_paths(config: ServeConfig) -> ServeConfig:
    """``config`` with its database file (not a URL) and token file made absolute, as every
    worker process reads them."""
    db = config.db
    if db is not None and not is_url(db):
        db = str(Path(db).expanduser().resolve())
    token_file = config.token_file
    if token_file is not None:
        token_file = str(Path(token_file).expanduser().resolve())
    return replace(config, db=db, token_file=token_file)


def run_workers(server_config: uvicorn.Config, workers: int) -> None:
    """``workers`` processes serving ``server_config``'s app, each on its own listening socket
    of host:port (SO_REUSEPORT): Linux spreads new connections over the sockets by their
    addresses. On one shared socket, whichever worker wakes first accepts a whole burst of new
    keep-alive connections and serves them alone while the others idle. A worker that exits
    is started again (unless none has started yet: then all stop); SIGINT or SIGTERM stops all,
    SIGHUP is passed on to every worker (each reloads its bundle, `seqrec.serve.app`)."""
    try:  # a port in use (by anything) fails here, once, not in every worker
        family = host_family(server_config.host)
        probe = socket.create_server((server_config.host, server_config.port), family=family)
    except OSError as error:
        message = f"cannot listen on {server_config.host}:{server_config.port}: {error}"
        raise DataError(message) from None
    server_config.port = probe.getsockname()[1]  # port 0: one free port for every worker
    probe.close()
    pool = WorkerPool(server_config)
    stop, hangup = threading.Event(), threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hangup.set())
    pool.start(workers)
    while not stop.wait(0.2):
        if hangup.is_set():
            hangup.clear()
            pool.send(signal.SIGHUP)
        if not pool.replace_exited():
            break
    pool.stop()
    if not pool.ready.is_set():
        raise SystemExit(1)


class WorkerPool:
    """The worker processes of `run_workers` (spawned: each loads the bundle itself)."""

    def __init__(self, server_config: uvicorn.Config):
        self.config = server_config
        self.context = multiprocessing.get_context("spawn")
        self.ready = self.context.Event()  # set by the first worker that serves
        self.processes: list[multiprocessing.process.BaseProcess] = []

    def _spawn(self) -> multiprocessing.process.BaseProcess:
        process = self.context.Process(target=serve_worker, args=(self.config, self.ready))
        process.start()
        return process

    def start(self, workers: int) -> None:
        self.processes = [self._spawn() for _ in range(workers)]

    def send(self, signum: int) -> None:
        for process in self.processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    def replace_exited(self) -> bool:
        """Start a new worker for each that exited; False (and none started) when no worker
        ever served: the start itself fails (a bad bundle, say), not a worker."""
        for at, process in enumerate(self.processes):
            if not process.is_alive():
                if not self.ready.is_set():
                    return False
                self.processes[at] = self._spawn()
        return True

    def stop(self) -> None:
        """SIGTERM to every worker (uvicorn finishes the requests under way), then wait."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join()


def serve_worker(server_config: uvicorn.Config, ready: Any) -> None:
    """One worker of `run_workers`: its own SO_REUSEPORT socket, uvicorn on it."""
    import uvicorn

    host, port = server_config.host, server_config.port
    sock = socket.socket(host_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(server_config.backlog)
    server_config.configure_logging()
    server = uvicorn.Server(server_config)
    threading.Thread(target=_signal_ready, args=(server, ready), daemon=True).start()
    server.run(sockets=[sock])


def host_family(host: str) -> socket.AddressFamily:
    """IPv6 for an address with colons ("::1"), else IPv4."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _signal_ready(server: uvicorn.Server, ready: Any) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.1)
    if server.started:
        ready.set()


def tcp_listener(server_config: uvicorn.Config) -> socket.socket:
    """The listening socket of a multi-worker uvicorn, declared TCP.

    uvicorn binds it with ``proto`` 0, which accepted sockets inherit, and asyncio only sets
    TCP_NODELAY on sockets that say ``IPPROTO_TCP``: with Nagle left on, every keep-alive
    response waits ~40 ms for the client's delayed ACK (uvicorn issue #3149, ``--workers N``).
    """
    sock = server_config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock
