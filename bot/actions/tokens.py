"""Bearer tokens checked without a transaction per request: a small cache keyed by the token's hash.

Revocation stays immediate for every process: the group-commit writer reads the revocation stamp
(how many agents were ever revoked; `agents revoke` bumps it) once per batch, in the batch's
transaction, and when it moved re-checks that batch's agents and empties the cache, starting a new
`epoch`. A submission remembers the epoch its token was looked up in; a batch re-checks the agents
of any submission from an older epoch too: one taken by the other lane, or a batch written again
after a rollback, read the moved stamp only after another batch had already recorded it. A token
revoked before a batch's transaction began can therefore never be written by it (see
bot.actions.writer).
"""

from __future__ import annotations

from collections import OrderedDict

from bot.services import Services
from storage.models import Agent
from storage.queries import agents

CACHE_SIZE = 1024  # agents per process: a few dozen in practice


class TokenCache:
    def __init__(self, svc: Services, size: int = CACHE_SIZE) -> None:
        self.svc, self.size = svc, size
        self._agents: OrderedDict[str, Agent] = OrderedDict()
        self.stamp: int | None = None  # the revocation stamp the cache was last checked against
        self.epoch = 0  # bumped each time the stamp moved and the cache was emptied

    async def agent(self, token: str) -> Agent | None:
        """The agent of a live token; a miss reads the database (a revoked or unknown token is
        never cached, so it is read again: it cannot become valid by being cached)."""
        digest = agents.hash_token(token)
        found = self._agents.get(digest)
        if found is not None:
            self._agents.move_to_end(digest)
            return found
        async with self.svc.db.read_session() as session:
            found = await agents.by_token(session, token)
        if found is not None:
            self._agents[digest] = found
            if len(self._agents) > self.size:
                self._agents.popitem(last=False)
        return found

    def saw_stamp(self, stamp: int) -> bool:
        """Record the stamp a batch read; True if it moved (a revocation since): the cache is emptied
        and the caller must re-check its agents."""
        moved = stamp != self.stamp  # the first batch re-checks too: the cache filled before it
        if moved:
            self._agents.clear()
            self.epoch += 1
        self.stamp = stamp
        return moved
