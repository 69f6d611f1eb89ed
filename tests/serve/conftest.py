"""Shared by the service tests: a trained tiny bundle, and an app served on a loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bundle_path(demo_shop, tiny_config, tmp_path_factory) -> Path:
    """A 1-epoch bundle of the tiny demo shop with both history terms, trained once."""
    from seqrec.config import apply_overrides
    from seqrec.experiment import run_train

    base = tmp_path_factory.getbasetemp()
    path = base / "serve_bundle"
    if not (path / "bundle.json").exists():
        config = apply_overrides(
            tiny_config,
            {"train.epochs": 1, "model.repeat_bias": True, "model.content_affinity": True},
        )
        run_train(config, demo_shop, path, cache_dir=base / "serve_cache")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(app):
    """``app`` under a real uvicorn server in a thread, on a free loopback port: yields its URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve_on_loopback():
    """`served`, for test modules (a conftest's functions are not importable under importlib)."""
    return served


@pytest.fixture(scope="session")
def pick_free_port():
    """`free_port`, for test modules that start a server of their own."""
    return free_port
