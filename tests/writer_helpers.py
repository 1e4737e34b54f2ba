"""Holding the group-commit writer (bot.actions.writer) so that what queues meanwhile is written
as one batch, for the tests that need a batch of known content."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.actions.submit import Prepared
from bot.actions.writer import Writer
from bot.api.routes import WRITER
from tests.conftest import Running, proposal


def writer_of(running: Running) -> Writer:
    return running.app[WRITER]


class Gate:
    """Holds the writer before its next batch until released, so that what queues meanwhile is
    written as one batch."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, _: list[Prepared]) -> None:
        self.waiting.set()
        await self.open.wait()


async def until_queued(writer: Writer, n: int) -> None:
    for _ in range(1000):  # noqa: ASYNC110  (the queue has no event to wait on)
        if writer.waiting >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{n} submissions never queued")


async def one_lane(writer: Writer) -> None:
    """Restart the writer with one lane: a deep queue would otherwise open a second lane on
    PostgreSQL (bot.actions.writer.SECOND_LANE_DEPTH) and split what these tests hold together."""
    await writer.stop()
    writer.lanes = 1
    writer.start()


async def hold_then_batch(running: Running, bodies: list[dict[str, Any]],
                          headers: list[dict[str, str] | None] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """Submit one request, hold the writer on it, queue `bodies`, release: they form one batch."""
    writer, gate = writer_of(running), Gate()
    await one_lane(writer)
    writer.before_batch = gate
    first = asyncio.create_task(running.submit(proposal(summary="opens the gate")))
    await asyncio.wait_for(gate.waiting.wait(), 10)
    writer.before_batch = None
    hdrs = headers or [None] * len(bodies)
    tasks = [asyncio.create_task(running.submit(b, headers=h)) for b, h in zip(bodies, hdrs, strict=True)]
    await until_queued(writer, len(bodies))
    gate.open.set()
    assert (await first)[0] == 201
    return list(await asyncio.gather(*tasks))
