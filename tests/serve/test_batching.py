"""`MicroBatcher.successor`: a changed catalogue is ranked on the same thread, with the counts."""

import asyncio
import threading

from seqrec.serve.batching import MicroBatcher


def test_a_successor_ranks_on_the_same_thread_and_keeps_the_counts():
    threads = []

    def rank(queries):
        threads.append(threading.get_ident())
        return [query * 2 for query in queries]

    first = MicroBatcher(rank)
    after = first.successor(lambda queries: [-query for query in queries])

    async def ask():
        return await first.submit(3), await after.submit(4), await after.submit(5)

    assert asyncio.run(ask()) == (6, -4, -5)
    assert after._executor is first._executor  # no new thread per catalogue change
    assert first.queries == after.queries == 3 and after.batches == 3
    assert threads and threads[0] != threading.get_ident()
