"""The action page's caches. PageCache: a small LRU with a time limit for the page's
viewer-independent part (the loaded action, its ledger verified, the page rendered once). Keys
carry the action's version and last ledger seq, so any change shows at once; the time limit
bounds how long a verification is trusted (an entry edited behind Countersign's back shows as
broken within it; `countersign audit verify` always sees). Coalesced: the freshness reads that
make those keys, shared by concurrent requests."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
TRUST_FOR = timedelta(seconds=60)


class PageCache(Generic[K, V]):
    def __init__(self, size: int = 256, ttl: timedelta = TRUST_FOR) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[K, tuple[datetime, V]] = OrderedDict()

    def get(self, key: K, now: datetime) -> V | None:
        found = self._items.get(key)
        if found is None or now - found[0] > self.ttl or now < found[0]:
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: K, value: V, now: datetime) -> None:
        self._items[key] = (now, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


async def shared_outcome(future: asyncio.Future[V], work: Awaitable[V]) -> V:
    """Await `work` and hand its outcome to whoever waits on `future`: the value, the error (marked
    retrieved: the waiters get it, nobody else needs to), or the cancellation."""
    try:
        value = await work
    except asyncio.CancelledError:
        future.cancel()
        raise
    except Exception as exc:
        future.set_exception(exc)
        future.exception()
        raise
    future.set_result(value)
    return value


class Coalesced(Generic[K, V]):
    """Concurrent reads of one key share a single read, which always starts after every request
    that takes its answer arrived (so a page asked for after a change never gets a read begun
    before it). Requests arriving during a read wait for it to end and share the next one: at most
    one read per key in flight, and two read times at worst. At 16 concurrent views of a page this
    is 1-2 freshness queries in flight instead of 16 (each wanting a pooled connection: past the
    pool's size, every request opened and closed a connection of its own)."""

    def __init__(self, read: Callable[[K], Awaitable[V]]) -> None:
        self._read = read
        self._running: dict[K, asyncio.Future[V]] = {}
        self._next: dict[K, asyncio.Future[V]] = {}  # not started yet: newcomers join it

    async def get(self, key: K) -> V:
        queued = self._next.get(key)
        if queued is not None:
            await asyncio.wait([queued])
            return await self.get(key) if queued.cancelled() else queued.result()
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        running = self._running.get(key)
        if running is not None:  # it began before this request arrived: wait, then read afresh
            self._next[key] = future
            try:
                await asyncio.wait([running])
            except BaseException:
                del self._next[key]
                future.cancel()
                raise
            del self._next[key]
        self._running[key] = future
        try:
            return await shared_outcome(future, self._read(key))
        finally:
            del self._running[key]
