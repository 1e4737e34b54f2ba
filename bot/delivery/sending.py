"""Sending what the relay claimed and planned (`Sender`): each channel's units one after another,
and what came back acted on: done, retried with backoff (a 429 also blocks the channel's budget),
failed for good, or handed back to wait its turn (`Deferred`). A post that got no answer may be in
Slack: it is looked for before it is posted again (bot/delivery/resume.py). Slack's failures count
towards the breaker, any answer closes it, and an open one is probed here. Mixed into the relay
(bot/delivery/relay.py), which claims the rows and owns the state below."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.delivery import storms
from bot.delivery.directory import UserNotFound
from bot.delivery.failures import (
    CALL_TIMEOUT,
    NO_ANSWER,
    NO_SUCH_METHOD,
    PERMANENT_ERRORS,
    SLACK_TROUBLE,
    Permanent,
)
from bot.delivery.pacing import Breaker, describe_error, retry_after, slack_error
from bot.delivery.resume import Resuming
from bot.delivery.shared_budget import SharedBreaker, SharedPacer
from bot.delivery.wire import Deferred, Wire
from storage import outbox
from storage.models import OutboxMessage

log = logging.getLogger("countersign.relay")


class Sender(Resuming):
    """Mixed into the relay, which sets up what is declared here (Relay.__init__)."""

    wire: Wire
    pacer: SharedPacer
    breaker: Breaker
    shared_breaker: SharedBreaker
    _routes: dict[int, storms.Route]
    _in_flight: set[int]
    _granted: dict[int, tuple[str, float]]
    _people: dict[str, str]

    async def _send_group(self, units: list[list[OutboxMessage]]) -> None:
        ids = {row.id or 0 for unit in units for row in unit}
        self._in_flight |= ids  # a slow render outliving its lease is not claimed twice here
        try:
            await self._send_units(units)
        finally:
            self._in_flight -= ids
            for i in ids:  # a token not used by now is not used at all
                self._granted.pop(i, None)

    async def _send_units(self, units: list[list[OutboxMessage]]) -> None:
        for unit in units:
            if unit[0].target == "slack" and not self.breaker.allows_sending():
                async with self.svc.db.session() as session:  # Slack went down meanwhile: hand it back
                    for row in unit:
                        self._routes.pop(row.id or 0, None)
                        await outbox.release(session, row.id or 0)
                    await session.commit()
                continue
            await self._deliver(unit)

    async def _probe(self) -> None:
        """The breaker is open: ask Slack whether it is back (api.test has no side effects)."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self.svc.slack.api_call("api.test")
        except SlackApiError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status >= 500 or status == 429 or status == 0:
                await self.shared_breaker.failure(describe_error(exc))
                log.warning("Slack still failing: %s", self.breaker.last_error)
                return
            # Slack answered (even `unknown_method` from a proxy or a stub): it is reachable again.
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self.shared_breaker.failure(describe_error(exc))
            log.warning("Slack still failing: %s", self.breaker.last_error)
            return
        await self._slack_ok()

    async def _slack_ok(self) -> None:
        if await self.shared_breaker.success():
            async with self.svc.db.session() as session:
                woken = await outbox.wake(session, self.svc.clock())
                await session.commit()
            log.warning("Slack is back; %d messages that were backing off are due now", woken)

    async def _deliver(self, unit: list[OutboxMessage]) -> None:
        """Send one message (or one pack of cards) and record the outcome on every row it carries."""
        msg = unit[0]
        routes = [self._routes.pop(row.id or 0, None) for row in unit]
        try:
            if msg.method == "chat.postMessage" and any(row.id in self._resumed for row in unit):
                unit, routes = await self._skip_sent(unit, routes, _thread(routes[0]))
                if not unit:
                    return
                msg = unit[0]
            if msg.target == "callback":
                result, code = await self.wire.callback(msg)
            elif len(unit) > 1:
                result, code = await self.wire.pack(unit, _thread(routes[0])), 200
            else:
                result, code = await self.wire.slack(msg, _thread(routes[0])), 200
        except Deferred as paced:  # no room in its channel's budget as it left: back to wait, not an attempt
            until = self.svc.clock() + timedelta(seconds=paced.seconds)
            async with self.svc.db.session() as session:
                for row in unit:
                    await outbox.release(session, row.id or 0, until=until)
                await session.commit()
            return
        except (Permanent, UserNotFound) as exc:
            await self._each(unit, self._failed, str(exc))
            return
        except SlackApiError as exc:
            resp = exc.response
            error = slack_error(resp)
            status = resp.status_code if resp is not None else None
            if status == 429:
                retry = retry_after(resp)
                self.svc.metrics.slack_rate_limited.inc()
                key = msg.channel_key or msg.method
                await self.pacer.block(self.svc.db, self._people.get(key, key), retry)
                await self._slack_ok()  # Slack answered: it is up, just busy
                await self._each(unit, self._retry, f"ratelimited (Retry-After {retry:g}s)", delay=retry,
                                 status_code=429)
            elif (status is not None and status >= 500) or error in SLACK_TROUBLE:
                await self.shared_breaker.failure(f"HTTP {status}: {error}")
                await self._each(unit, self._retry, f"HTTP {status}: {error}", status_code=status)
            elif error in PERMANENT_ERRORS or status in NO_SUCH_METHOD:
                await self._slack_ok()
                if error not in PERMANENT_ERRORS:  # e.g. "HTTP 404 from users.lookupByEmail"
                    error = f"HTTP {status} from {_method(resp)}"
                await self._each(unit, self._failed, error, status_code=status)
            else:
                await self._slack_ok()
                await self._each(unit, self._retry, error, status_code=status)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if msg.target == "slack":
                await self.shared_breaker.failure(describe_error(exc))
            if msg.method == "chat.postMessage" and not isinstance(exc, aiohttp.ClientResponseError):
                for row in unit:  # no answer: the post may have reached Slack, look before re-posting
                    self._resumed.setdefault(row.id or 0, row.next_attempt_at)
            status = exc.status if isinstance(exc, aiohttp.ClientResponseError) else None
            # "no answer: ..." is what /healthz's post rule (bot/api/post_health.py) recognises
            error = describe_error(exc) if status is not None else f"{NO_ANSWER}: {describe_error(exc)}"
            await self._each(unit, self._retry, error, status_code=status)
            return
        except Exception as exc:  # a bug must not wedge the row: record it and retry with backoff
            log.exception("delivery %s (%s) raised", msg.id, msg.method)
            await self._each(unit, self._retry, describe_error(exc))
            return
        if msg.target == "slack":
            await self._slack_ok()
        for row in unit:
            self._resumed.pop(row.id or 0, None)
        await self._done(unit, result, code, routes)
        self.svc.metrics.outbox_sent.labels(msg.target, msg.method).inc()


def _method(resp: Any) -> str:
    """The Web API method an answer came from (its URL's last part), to name what is missing."""
    return str(getattr(resp, "api_url", "") or "").rstrip("/").rsplit("/", 1)[-1] or "Slack"


def _thread(route: storms.Route | None) -> str | None:
    return route.thread_ts if route is not None else None
