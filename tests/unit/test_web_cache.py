"""The action page's shared freshness reads (handlers.web.cache.Coalesced): concurrent requests
share one read, but never one that began before they arrived (a page opened right after a change
must show it)."""

from __future__ import annotations

import asyncio

import pytest

from handlers.web.cache import Coalesced


class Source:
    """A value that changes, read slowly (the read waits for `release`)."""

    def __init__(self) -> None:
        self.value, self.reads = 0, 0
        self.release = asyncio.Event()

    async def read(self, key: str) -> tuple[str, int]:
        self.reads += 1
        seen = self.value  # what the database answers as the read begins
        await self.release.wait()
        return key, seen


async def test_requests_during_a_read_share_the_next_one_and_see_a_change_made_before_they_came() -> None:
    source = Source()
    fresh: Coalesced[str, tuple[str, int]] = Coalesced(source.read)
    first = asyncio.create_task(fresh.get("a/1"))
    await asyncio.sleep(0)  # its read has begun and seen 0
    source.value = 1  # a decision commits; then three people open the page
    later = [asyncio.create_task(fresh.get("a/1")) for _ in range(3)]
    await asyncio.sleep(0)
    source.release.set()
    assert await first == ("a/1", 0)
    assert await asyncio.gather(*later) == [("a/1", 1)] * 3
    assert source.reads == 2  # not 4


async def test_other_keys_are_read_on_their_own_and_errors_reach_every_waiter() -> None:
    reads: list[str] = []

    async def read(key: str) -> str:
        reads.append(key)
        await asyncio.sleep(0.01)
        if key == "bad":
            raise RuntimeError("the database is gone")
        return key.upper()

    fresh: Coalesced[str, str] = Coalesced(read)
    assert await asyncio.gather(fresh.get("x"), fresh.get("y")) == ["X", "Y"]
    assert sorted(reads) == ["x", "y"]
    bad = [asyncio.create_task(fresh.get("bad")) for _ in range(3)]
    for task in bad:
        with pytest.raises(RuntimeError, match="gone"):
            await task
    assert await fresh.get("x") == "X"  # nothing left behind
