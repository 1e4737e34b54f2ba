"""Group commit: one writer task per process writes every waiting submission in ONE transaction.

A request is prepared first (bot.actions.submit.prepare: no database), queues here and awaits its
future. The writer drains up to LIMIT submissions whenever it wakes (whatever arrived while the
last commit ran), writes them with multi-row statements (actions, first steps, outbox rows, keys,
the ledger chained once at commit), commits once, and only then resolves the futures: a 201 still
means "committed". One bad submission never fails the others: on an unexpected error the batch is
rolled back and each submission goes through the single path (bot.actions.submit.submit_prepared).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bot.actions import batch_keys, first_steps
from bot.actions import submit as single
from bot.actions.batch_keys import SINGLE, Result, _Single, stored
from bot.actions.idempotency import Answer
from bot.actions.submit import Prepared, answer, build_action, count, write
from bot.actions.tokens import TokenCache
from bot.contract.errors import ApiError, unauthorized
from bot.services import Services
from storage.db import dropped, unavailable
from storage.models import Action
from storage.queries import ingest

log = logging.getLogger("countersign.writer")
LIMIT = 64  # submissions per transaction
# Batches in flight at once. On PostgreSQL a second batch does its CPU work while the first waits
# for its statements and COMMIT (one lane leaves the process ~20 % idle); the ledger head's row lock
# orders only their last statement and commit. SQLite has one writer: one lane. A second lane opens
# only when SECOND_LANE_DEPTH submissions wait: a batch costs ~2 ms of CPU whatever its size, and
# two lanes splitting a shallow queue into tiny batches cost more CPU than the idle time they filled
# (at 32 concurrent: depth 1 no gain, 4-8 +10 %, 16 +25 %, 32 never opens; bench/results/bench_ingest.md).
LANES = {"postgresql": 2, "sqlite": 1}
SECOND_LANE_DEPTH = LIMIT // 4
CAPACITY = 4096  # submissions waiting; beyond it the API answers 503 with Retry-After
RETRY_AFTER_SECONDS = 1


def busy(message: str) -> ApiError:
    return ApiError(503, "unavailable", f"{message}; nothing was stored, retry with the same Idempotency-Key",
                    retry_after=RETRY_AFTER_SECONDS)


@dataclass
class _Item:
    prep: Prepared
    future: asyncio.Future[Answer]


@dataclass
class Writer:
    svc: Services
    tokens: TokenCache
    limit: int = LIMIT
    capacity: int = CAPACITY
    lanes: int = 1  # batches in flight at once (LANES; bot.app sets it from the database)
    restarts: int = 0
    _queue: asyncio.Queue[_Item] | None = None
    _task: asyncio.Task[None] | None = None
    _current: list[_Item] = field(default_factory=list)  # taken, not yet handed to a lane
    _in_flight: dict[asyncio.Task[None], list[_Item]] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # a lane finished, or the queue got deep
    # Tests hold the writer or inject a fault here (awaited with the batch before it is written; it
    # may replace submissions in the list).
    before_batch: Callable[[list[Prepared]], Awaitable[None]] | None = None
    batch_sizes: list[int] = field(default_factory=list)  # the last batches' sizes (tests, metrics)

    def start(self) -> None:
        self._queue = asyncio.Queue(self.capacity)
        self._task = asyncio.create_task(self._supervise(), name="ingest-writer")

    async def stop(self) -> None:
        """After the requests in flight ended: nothing is waiting any more."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        lanes = list(self._in_flight)
        for lane in lanes:
            lane.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)

    @property
    def waiting(self) -> int:
        """Submissions queued, not yet taken by the writer."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def submit(self, prep: Prepared) -> Answer:
        """Queue a prepared submission; its answer once the batch committed. Raises its ApiError."""
        if self._queue is None or not self.running:  # no writer (CLI, tests without one): single path
            return await single.submit_prepared(self.svc, prep)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(prep, future))
        except asyncio.QueueFull:
            raise busy(f"{self.capacity} submissions are waiting to be written") from None
        if self._queue.qsize() >= SECOND_LANE_DEPTH:
            self._wake.set()
        # A client that disconnects cancels only its wait: its submission is still written.
        return await asyncio.shield(future)

    # --- the writer task ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Restart the loop if it dies; its waiting futures fail with a retryable 503, never hang."""
        assert self._queue is not None
        try:
            while True:
                try:
                    await self._loop()
                except Exception:
                    self.restarts += 1
                    log.exception("the ingest writer died (restart %d)", self.restarts)
                    self._fail(self._current, busy("the writer restarted"))
                    self._current = []
                    await asyncio.sleep(0.05)
        finally:  # stopping: nothing waits forever
            self._fail(self._current, busy("the server is stopping"))
            while not self._queue.empty():
                self._fail([self._queue.get_nowait()], busy("the server is stopping"))

    async def _loop(self) -> None:
        """Take what is waiting as one batch whenever a lane is free, and write it in that lane."""
        assert self._queue is not None
        free = asyncio.Semaphore(self.lanes)
        while True:
            await free.acquire()
            try:
                while self._in_flight and self._queue.qsize() < SECOND_LANE_DEPTH:
                    self._wake.clear()
                    await self._wake.wait()
                batch = [await self._queue.get()]
            except BaseException:
                free.release()
                raise
            while len(batch) < self.limit and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._current = batch
            lane = asyncio.create_task(self._lane(batch), name="ingest-batch")
            self._in_flight[lane] = batch
            self._current = []
            lane.add_done_callback(partial(self._lane_done, free))

    def _lane_done(self, free: asyncio.Semaphore, lane: asyncio.Task[None]) -> None:
        self._in_flight.pop(lane, None)
        free.release()
        self._wake.set()

    async def _lane(self, batch: list[_Item]) -> None:
        """One batch; if writing it dies, its submissions fail with a retryable 503, never hang."""
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            self._fail(batch, busy("the server is stopping"))
            raise
        except Exception:
            self.restarts += 1
            log.exception("an ingest batch died (restart %d)", self.restarts)
            self._fail(batch, busy("the writer restarted"))

    @staticmethod
    def _fail(items: list[_Item], error: ApiError) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)
                item.future.exception()  # retrieved: a client that went away leaves no "never retrieved" log

    async def _write(self, items: list[_Item]) -> None:
        preps = [item.prep for item in items]
        if self.before_batch is not None:
            await self.before_batch(preps)
        self.batch_sizes = [*self.batch_sizes[-99:], len(preps)]
        for item, result in zip(items, await self.write_batch(preps), strict=True):
            if item.future.done():
                continue
            if isinstance(result, ApiError):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    async def write_batch(self, preps: list[Prepared]) -> list[Answer | ApiError]:
        """Write prepared submissions as one group commit; the answer (or refusal) of each, in
        order. A batch that fails unexpectedly is written again one by one (the single path), so
        only the bad submission fails; a database that cannot serve fails them all with a 503."""
        results: list[Result]
        try:
            results = await self._batch_retrying(preps)
        except Exception as exc:
            if unavailable(exc):
                log.warning("the database cannot serve a batch of %d: %s", len(preps), exc)
                return [busy("the database is unavailable")] * len(preps)
            log.warning("a batch of %d failed (%s): each goes through the single path", len(preps), exc)
            results = [SINGLE] * len(preps)
        answers: list[Answer | ApiError] = []
        for prep, result in zip(preps, results, strict=True):
            if isinstance(result, _Single):
                try:
                    result = await single.submit_prepared(self.svc, prep)
                except ApiError as exc:
                    result = exc
                except Exception as exc:
                    log.exception("a submission failed on the single path")
                    result = busy("the database is unavailable") if unavailable(exc) else ApiError(
                        500, "internal", "internal error; nothing was lost, retry with the same Idempotency-Key")
            answers.append(result)
        return answers

    async def _batch_retrying(self, preps: list[Prepared]) -> list[Result]:
        try:
            return await self._batch(preps)
        except batch_keys.KeysRaced as exc:
            log.info("%s: the batch is written again, its keys claimed first", exc)
            return await self._batch(preps, optimistic=False)
        except Exception as exc:
            if not dropped(exc):
                raise
            log.warning("the connection dropped under a batch of %d: retrying once", len(preps))
            return await self._batch(preps)

    async def _batch(self, preps: list[Prepared], *, optimistic: bool = True) -> list[Result]:
        """Write the batch in one transaction; the answer of each submission, in order. `optimistic`:
        its free Idempotency-Keys are written with their answers at the end (bot.actions.batch_keys),
        else claimed first."""
        svc = self.svc
        results: list[Result | None] = [None] * len(preps)
        async with svc.db.session() as session:
            # One round trip: the revocation stamp and, optimistic, the batch's keys held already.
            stamp, held = await ingest.batch_start(session, batch_keys.keys_of(preps) if optimistic else [])
            moved = self.tokens.saw_stamp(stamp)
            epoch = self.tokens.epoch
            if moved or any(p.auth_epoch is not None and p.auth_epoch < epoch for p in preps):
                dead = await ingest.revoked_among(session, {p.agent.id for p in preps if p.agent.id is not None})
                for i, prep in enumerate(preps):
                    if prep.agent.id in dead:
                        results[i] = unauthorized()
            free: dict[int, tuple[int, str]] = {}
            key_ids: dict[int, int] = {}
            if optimistic:
                free, followers = batch_keys.check(preps, results, held)
            else:
                key_ids, followers = await batch_keys.claim(session, preps, results)
            work = [i for i, r in enumerate(results) if r is None and i not in followers]
            actions: dict[int, Action | None] = {i: build_action(preps[i]) for i in work}
            new = [a for a in actions.values() if a is not None]
            now = {i: preps[i].now for i in work}
            due = first_steps.plan_ahead(actions, now)  # their escalation state, before the INSERT
            await ingest.insert_actions(session, new)
            recorded = await first_steps.record(session, actions, due, now)
            effects: list[Callable[[], object]] = []
            for i in work:
                action = actions[i]
                await write(session, svc, preps[i], action, effects=effects,
                            recorded=recorded.get(action.id or 0) if action is not None else None)
            for effect in effects:  # the outbox rows, flushed at commit as multi-row INSERTs
                effect()
            first_steps.forget_settled(session, new)
            answered: list[tuple[int, int, dict[str, Any]]] = []
            answers: dict[int, Answer] = {}
            for i in work:
                status, body = answer(svc, preps[i], actions[i])
                results[i] = answers[i] = (status, body)
                if i in key_ids:
                    answered.append((key_ids[i], status, body))
            await ingest.store_answers(session, answered)
            await batch_keys.write_answers(session, preps, free, answers)
            await session.commit()  # the ledger is chained here, under the head's lock, once
        for i in work:
            done = results[i]
            assert isinstance(done, tuple)
            count(svc, *done)
        for i, first in followers.items():
            results[i] = batch_keys.follow(preps[i], preps[first], results[first])
        return [_as_result(r) for r in results]


def _as_result(result: Result | None) -> Result:
    assert result is not None
    if isinstance(result, tuple) and result[0] >= 400:
        return stored(*result)
    return result
