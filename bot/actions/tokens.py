"""Bearer tokens checked without a transaction per request: a small cache keyed by the token's hash.

Revocation stays immediate for every process: the group-commit writer reads the revocation stamp
(how many agents were ever revoked; `agents revoke` bumps it) once per batch, in the batch's
transaction, and when it moved re-checks that batch's agents and empties the cache, starting a new
`epoch`. A submission remembers the epoch its token was looked up in; a batch re-checks the agents
of any submission from an older epoch too: one taken by the other lane, or a batch written again
after a rollback, read the moved stamp only after another batch had already recorded it. A token
revoked before a batch's transaction began can therefore never be written by it (see
bot.actions.writer). A lookup that an emptying overtook is answered but not cached: it may have
read the token before the revocation, and a later request would take it from the cache in the new
epoch, unchecked.

Concurrent misses of one token in one epoch share one read (a burst from a new agent is one query,
not one per request), and a read on a connection that dropped is tried once more on a fresh one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from bot.services import Services
from storage.db import dropped
from storage.models import Agent
from storage.queries import agents

CACHE_SIZE = 1024  # agents per process: a few dozen in practice


class TokenCache:
    def __init__(self, svc: Services, size: int = CACHE_SIZE) -> None:
        self.svc, self.size = svc, size
        self._agents: OrderedDict[str, Agent] = OrderedDict()
        self.stamp: int | None = None  # the revocation stamp the cache was last checked against
        self.epoch = 0  # bumped each time the stamp moved and the cache was emptied
        self._reading: dict[tuple[str, int], asyncio.Future[Agent | None]] = {}  # (digest, epoch)

    async def agent(self, token: str) -> Agent | None:
        """The agent of a live token; a miss reads the database (a revoked or unknown token is
        never cached, so it is read again: it cannot become valid by being cached)."""
        digest = agents.hash_token(token)
        found = self._agents.get(digest)
        if found is not None:
            self._agents.move_to_end(digest)
            return found
        key = (digest, self.epoch)
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(self._read(token, digest, self.epoch))
            reading.add_done_callback(lambda done: self._done_reading(key, done))
        return await asyncio.shield(reading)  # one caller going away does not cancel the others' read

    def _done_reading(self, key: tuple[str, int], done: asyncio.Future[Agent | None]) -> None:
        self._reading.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: callers that went away leave no "never retrieved" log

    async def _read(self, token: str, digest: str, epoch: int) -> Agent | None:
        try:
            found = await self._by_token(token)
        except Exception as exc:
            if not dropped(exc):
                raise
            found = await self._by_token(token)  # the pool was emptied of dead connections: a fresh one
        if found is not None and epoch == self.epoch:
            self._agents[digest] = found
            if len(self._agents) > self.size:
                self._agents.popitem(last=False)
        return found

    async def _by_token(self, token: str) -> Agent | None:
        async with self.svc.db.read_session() as session:
            return await agents.by_token(session, token)

    def saw_stamp(self, stamp: int) -> bool:
        """Record the stamp a batch read; True if it moved (a revocation since): the cache is emptied
        and the caller must re-check its agents."""
        moved = stamp != self.stamp  # the first batch re-checks too: the cache filled before it
        if moved:
            self._agents.clear()
            self.epoch += 1
        self.stamp = stamp
        return moved
