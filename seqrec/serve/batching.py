"""Concurrent requests ranked together: `MicroBatcher`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

Job = tuple[Any, "asyncio.Future[Any]"]  # a query and the future its result is set on


@dataclass
class Counts:
    """What a batcher and its successors have ranked (``/health``)."""

    queries: int = 0
    batches: int = 0
    rank_cpu_s: float = 0.0  # CPU seconds spent ranking


class MicroBatcher:
    """Ranks concurrent requests together, in one worker thread or (``thread`` false) in the
    event loop itself.

    A request is queued; while a batch is ranked, newly arrived requests wait, and the next
    batch takes all of them (up to ``max_batch``), optionally after ``wait_s`` more. A lone
    request is thus ranked at once, and under load the model sees [B, L] batches. With the
    worker thread the event loop keeps reading requests while a batch is ranked (torch and
    numpy release the GIL); in the event loop, they wait in their sockets until it is done.

    ``rank`` takes a list of queries and returns one result per query, in order.
    """

    def __init__(
        self,
        rank: Callable[[list[Any]], list[Any]],
        max_batch: int = 64,
        wait_s: float = 0.0,
        thread: bool = True,
    ):
        self._rank = rank
        self.max_batch, self.wait_s = max_batch, wait_s
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-rank") if thread else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Job] = []
        self._task: asyncio.Task[None] | None = None
        self.counts = Counts()

    def successor(self, rank: Callable[[list[Any]], list[Any]]) -> MicroBatcher:
        """A batcher of ``rank`` (a changed catalogue's) with these settings, this one's worker
        thread (one ranking thread however often the served model changes) and its counts."""
        after = MicroBatcher(rank, self.max_batch, self.wait_s, thread=False)
        after._executor, after.counts = self._executor, self.counts
        return after

    @property
    def in_thread(self) -> bool:
        """Whether it ranks in its worker thread (else in the event loop)."""
        return self._executor is not None

    @property
    def queries(self) -> int:
        return self.counts.queries

    @property
    def batches(self) -> int:
        return self.counts.batches

    @property
    def rank_cpu_s(self) -> float:
        return self.counts.rank_cpu_s

    async def submit(self, query: Any) -> Any:
        """``query``'s result, ranked in the next batch."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (e.g. another test client): start afresh
            self._loop, self._pending, self._task = loop, [], None
        future = loop.create_future()
        self._pending.append((query, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Rank the queued queries, a batch at a time, until none is left."""
        try:
            while self._pending:
                if self.wait_s:
                    await asyncio.sleep(self.wait_s)
                batch = self._next_batch()
                if batch:
                    await self._run(batch)
        finally:
            self._task = None

    def _next_batch(self) -> list[Job]:
        """The next ``max_batch`` queued jobs, less those whose request went away."""
        batch = [job for job in self._pending[: self.max_batch] if not job[1].done()]
        del self._pending[: self.max_batch]
        return batch

    async def _run(self, batch: list[Job]) -> None:
        """Rank ``batch`` and hand each job its result (or the error, which answers 500)."""
        self.counts.queries += len(batch)
        self.counts.batches += 1
        queries = [query for query, _ in batch]
        try:
            if self._executor is None:
                results = self._timed_rank(queries)
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(self._executor, self._timed_rank, queries)
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _timed_rank(self, queries: list[Any]) -> list[Any]:
        start = time.thread_time()
        try:
            return self._rank(queries)
        finally:
            self.counts.rank_cpu_s += time.thread_time() - start
