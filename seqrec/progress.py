"""What a long step shows while it runs: a progress bar in a terminal, lines in a log file.

    with stage("neighbour graph text", total=n_items, unit="items") as advance:
        for block in blocks:
            ...
            advance(len(block))

    for start in track(range(0, n, batch), f"epoch {epoch + 1}", unit="batches"):
        ...

When standard error is a terminal, each stage is a task on a rich progress bar: the bar a
command line attached with `attach` (so there is one live display), else one of this module's
own, shared by nested stages. Otherwise (output redirected to a file, a CI log) each stage
writes plain lines to standard error: one when it starts, one every ``EVERY`` seconds while it
runs and one when it ends, each led by the time since the process started and its peak
resident memory so far. A stage over within ``QUIET`` seconds writes nothing (a log is not
littered by every short evaluation), and a longer one says it started at its first advance
past ``QUIET`` seconds::

    [   12.3 s,  1.2 GB] neighbour graph text: 105,542 items
    [   43.0 s,  1.4 GB] neighbour graph text: 52,000 / 105,542 items
    [   71.9 s,  1.4 GB] neighbour graph text: done in 59.6 s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Advance = Callable[[int], None]
T = TypeVar("T")

EVERY = 30.0  # seconds between the lines of a running stage when not in a terminal
QUIET = 5.0  # seconds a stage may take without writing a line when not in a terminal
STARTED = time.monotonic()  # the clock of the lines: the import of this module, early in a run

_bars: list[Any] = []  # rich Progress bars stages add their tasks to, innermost last


def peak_memory_gb() -> float:
    """Peak resident memory of this process so far, in GB (0.0 where it cannot be read)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9  # bytes / KiB


def line(text: str) -> None:
    """``text`` on standard error, led by the run's clock and peak memory."""
    elapsed = time.monotonic() - STARTED
    print(f"[{elapsed:7.1f} s, {peak_memory_gb():4.1f} GB] {text}", file=sys.stderr, flush=True)


def interactive() -> bool:
    """Whether standard error is a terminal (a bar) rather than a file or pipe (lines)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def attach(bar: Any) -> Iterator[Any]:
    """Stages started inside add their tasks to ``bar`` (a started `rich.progress.Progress`,
    e.g. the command line's) instead of starting a live display of their own."""
    _bars.append(bar)
    try:
        yield bar
    finally:
        _bars.remove(bar)


@contextmanager
def stage(
    description: str, total: int | None = None, unit: str = "", show: bool = True
) -> Iterator[Advance]:
    """Show ``description`` while the block runs; yields ``advance(n)``, told of ``n`` more
    units done out of ``total`` (None: no count). ``show=False`` (e.g. off rank 0) is silent."""
    if not show:
        yield _ignore
    elif interactive():
        with _bar_task(description, total) as advance:
            yield advance
    else:
        with _line_task(description, total, unit) as advance:
            yield advance


def track(
    items: Iterable[T], description: str, total: int | None = None, unit: str = "", show=True
) -> Iterator[T]:
    """``items`` one by one, as a stage that advances by one per item (``total``: their
    count, default ``len(items)`` where it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with stage(description, total, unit, show) as advance:
        for item in items:
            yield item
            advance(1)


def _ignore(count: int) -> None:
    del count


@contextmanager
def _bar_task(description: str, total: int | None) -> Iterator[Advance]:
    """A task on the innermost attached or running bar, or on a new bar of this module."""
    own = None
    if not _bars:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        own = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        own.start()
        _bars.append(own)
    bar = _bars[-1]
    task = bar.add_task(description, total=total)
    try:
        yield lambda count: bar.advance(task, count)
    finally:
        bar.update(task, visible=own is not None)  # an attached bar is not littered
        if own is not None:
            _bars.remove(own)
            own.stop()


@contextmanager
def _line_task(description: str, total: int | None, unit: str) -> Iterator[Advance]:
    """Plain lines: at the start, every ``EVERY`` seconds while running, at the end."""
    advance, finish = _line_counter(description, total, unit)
    yield advance
    finish()


def line_advance(description: str, total: int, unit: str = "") -> Advance:
    """The plain lines of a stage that ends when ``total`` units are done, for code that is
    handed an advance function rather than a block to run (`seqrec.features.cache`)."""
    advance, _ = _line_counter(description, total, unit, end_at_total=True)
    return advance


def _line_counter(
    description: str, total: int | None, unit: str, end_at_total: bool = False
) -> tuple[Advance, Callable[[], None]]:
    """(advance, finish) of a stage written as lines: at its start (once past ``QUIET``
    seconds), every ``EVERY`` seconds while running, and once at the end (``finish``, or with
    ``end_at_total`` the advance that reaches ``total``)."""
    started = time.monotonic()
    state = {"done": 0, "said": started, "begun": False, "ended": False}
    size = f": {total:,} {unit}".rstrip() if total is not None else ""

    def begin(now: float) -> bool:
        """Write the start line once the stage has run ``QUIET`` seconds; whether it has."""
        if not state["begun"] and now - started >= QUIET:
            state["begun"] = True
            line(f"{description}{size}")
        return bool(state["begun"])

    def advance(count: int) -> None:
        state["done"] += count
        now = time.monotonic()
        if begin(now) and now - state["said"] >= EVERY:
            state["said"] = now
            of = f" / {total:,}" if total is not None else ""
            line(f"{description}: {state['done']:,}{of} {unit}".rstrip())
        if end_at_total and total is not None and state["done"] >= total:
            finish()

    def finish() -> None:
        if not state["ended"] and begin(time.monotonic()):
            state["ended"] = True
            line(f"{description}: done in {time.monotonic() - started:.1f} s")

    return advance, finish
