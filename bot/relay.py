"""The outbox relay: claims due messages, sends them to Slack or to agents' callback URLs,
stores what came back, and marks them done, retried, or failed.

Delivery guarantee, and its one documented duplicate: a message is written to the outbox in the
transaction that causes it, so a crash before the send loses nothing (the row stays due, or its
short lease runs out and any relay takes it again). Each row is marked done in its own short
transaction right after its send returns. A crash (kill -9, power loss) in the few milliseconds
*between* Slack accepting a message and that commit re-sends that one message when the lease
runs out (CALL_TIMEOUT plus a margin, i.e. seconds): at-least-once at that edge, exactly once
everywhere else. Card updates (`chat.update`) are idempotent, so only a re-posted card or page can
show twice; callbacks carry the action id so agents can drop the rare repeat.

Slack failures: 429 -> the row is scheduled at Retry-After and its channel paused (bot.pacing);
5xx, timeouts and refused connections -> capped jittered backoff, and after a few in a row the
breaker stops all Slack sends and probes with `api.test` until Slack answers, then wakes the
backlog; permanent errors (channel_not_found, ...) -> `failed`, recorded, and a failed page is
handed to escalation (`fail_level`: fail closed). Callbacks back off up to an hour, for 24 h.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot import callbacks, storms
from bot.directory import UserNotFound, resolve
from bot.messages import Kind
from bot.pacing import (
    Breaker,
    Pacer,
    backoff,
    delivery_health,
    describe_error,
    refresh_backlog_metrics,
    retry_after,
    slack_error,
)
from bot.paging import fail_level
from bot.services import Services
from storage import actions as repo
from storage import ledger, outbox
from storage.models import Agent, OutboxMessage

log = logging.getLogger("countersign.relay")

# Slack errors that retrying cannot fix: recorded, surfaced, and handed to escalation.
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "invalid_auth", "missing_scope", "user_not_found",
    "users_not_found", "account_inactive", "is_archived", "not_authed", "token_revoked",
    "invalid_blocks", "invalid_arguments", "msg_too_long", "no_text", "cant_update_message",
    "message_not_found", "user_disabled", "channel_is_archived",
})
# `ok: false` answers that mean Slack itself is struggling (count towards the breaker).
SLACK_TROUBLE = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
CALL_TIMEOUT = 10.0  # seconds one Slack call or callback may take
LEASE_MARGIN = 5.0
WAIT_FOR_PARENT = 2.0  # a storm's cards wait this long for its parent card to be posted

# Render a queued message into Slack Web API arguments (text, blocks, view...), or None to skip it.
Renderer = Callable[[Services, dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Permanent(Exception):
    """A delivery that must not be retried."""


class Transient(Exception):
    """Slack (or the network to it) is failing: retry later, and tell the breaker."""


class Relay:
    def __init__(self, svc: Services, render: Renderer, *, batch: int = 50, pacer: Pacer | None = None,
                 breaker: Breaker | None = None) -> None:
        self.svc, self.render, self.batch = svc, render, batch
        # Pacing runs on the app's clock, so a test that moves a FakeClock moves the buckets too.
        self.pacer = pacer or Pacer(clock=lambda: svc.clock().timestamp())
        self.breaker = breaker or Breaker()
        self._routes: dict[int, storms.Route] = {}  # message id -> its storm thread, decided at claim
        self._http: aiohttp.ClientSession | None = None
        self._ticks = 0

    async def health(self) -> str:
        return await delivery_health(self.svc, self.breaker)

    async def refresh_metrics(self) -> None:
        await refresh_backlog_metrics(self.svc)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def tick(self) -> int:
        """Send what is due, different channels concurrently; returns how many rows were handled."""
        if self.breaker.probe_due():
            await self._probe()
        now = self.svc.clock()
        target = None if self.breaker.allows_sending() else "callback"
        async with self.svc.db.session() as session:
            rows = await outbox.claim_due(session, now, limit=self.batch, target=target,
                                          lease_seconds=CALL_TIMEOUT + LEASE_MARGIN)
            groups: dict[str, list[OutboxMessage]] = {}
            for row in rows:
                if await self._ready(session, row, now):
                    key = row.channel_key or f"row:{row.id}"
                    groups.setdefault(key, []).append(row)
            for group in groups.values():  # sent one after another: each needs its own time
                for position, row in enumerate(group):
                    row.claimed_until = now + timedelta(seconds=(position + 1) * CALL_TIMEOUT + LEASE_MARGIN)
                    session.add(row)
            await session.commit()
        await asyncio.gather(*(self._send_group(group) for group in groups.values()))
        self._ticks += 1
        if self._ticks % 1000 == 0:
            self.pacer.prune()
        return len(rows)

    async def _ready(self, session: Any, row: OutboxMessage, now: datetime) -> bool:
        """Pacing and storm threading for one claimed row: send it now, or defer it (not an attempt)."""
        if row.target != "slack" or row.method != "chat.postMessage":
            return True
        assert row.id is not None
        channel = row.payload.get("channel")
        if row.purpose in storms.THREADED_PURPOSES and row.action_id and channel:
            route = await storms.route(session, row.action_id, channel)
            if route.wait:
                outbox.defer(session, row, now + timedelta(seconds=WAIT_FOR_PARENT))
                return False
            if route.thread_ts:
                self._routes[row.id] = route
        delay = self.pacer.acquire(row.channel_key or channel or "-")
        if delay > 0:
            self._routes.pop(row.id, None)
            outbox.defer(session, row, now + timedelta(seconds=delay))
            return False
        return True

    async def _send_group(self, rows: list[OutboxMessage]) -> None:
        for row in rows:
            if row.target == "slack" and not self.breaker.allows_sending():
                assert row.id is not None
                self._routes.pop(row.id, None)
                async with self.svc.db.session() as session:  # Slack went down meanwhile: hand it back
                    await outbox.release(session, row.id)
                    await session.commit()
                continue
            await self._deliver(row)

    async def _probe(self) -> None:
        """The breaker is open: ask Slack whether it is back (api.test has no side effects)."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self.svc.slack.api_call("api.test")
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.breaker.failure(describe_error(exc))
            log.warning("Slack still failing: %s", self.breaker.last_error)
            return
        await self._slack_ok()

    async def _slack_ok(self) -> None:
        if self.breaker.success():
            async with self.svc.db.session() as session:
                woken = await outbox.wake(session, self.svc.clock())
                await session.commit()
            log.warning("Slack is back; %d messages that were backing off are due now", woken)

    async def _deliver(self, msg: OutboxMessage) -> None:
        assert msg.id is not None
        metrics = self.svc.extras.get("metrics")
        route = self._routes.pop(msg.id, None)
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                if msg.target == "callback":
                    result, code = await self._post_callback(msg)
                else:
                    result, code = await self._call_slack(msg, route), 200
        except (Permanent, UserNotFound) as exc:
            await self._failed(msg, str(exc))
            return
        except SlackApiError as exc:
            resp = exc.response
            error = slack_error(resp)
            status = resp.status_code if resp is not None else None
            if status == 429:
                retry = retry_after(resp)
                if metrics:
                    metrics.slack_rate_limited.inc()
                self.pacer.block(msg.channel_key or msg.method, retry)
                await self._slack_ok()  # Slack answered: it is up, just busy
                await self._retry(msg, f"ratelimited (Retry-After {retry:g}s)", delay=retry, status_code=429)
            elif (status is not None and status >= 500) or error in SLACK_TROUBLE:
                self.breaker.failure(f"HTTP {status}: {error}")
                await self._retry(msg, f"HTTP {status}: {error}", status_code=status)
            elif error in PERMANENT_ERRORS:
                await self._slack_ok()
                await self._failed(msg, error, status_code=status)
            else:
                await self._slack_ok()
                await self._retry(msg, error, status_code=status)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if msg.target == "slack":
                self.breaker.failure(describe_error(exc))
            status = exc.status if isinstance(exc, aiohttp.ClientResponseError) else None
            await self._retry(msg, describe_error(exc), status_code=status)
            return
        except Exception as exc:  # a bug must not wedge the row: record it and retry with backoff
            log.exception("delivery %s (%s) raised", msg.id, msg.method)
            await self._retry(msg, describe_error(exc))
            return
        if msg.target == "slack":
            await self._slack_ok()
        await self._done(msg, result, code, route)
        if metrics:
            metrics.outbox_sent.labels(msg.target, msg.method).inc()

    async def _done(self, msg: OutboxMessage, result: dict[str, Any], code: int,
                    route: storms.Route | None) -> None:
        """Mark the row done right after the send: the shorter this gap, the rarer a duplicate."""
        assert msg.id is not None
        kind, now = msg.payload.get("kind"), self.svc.clock()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=True, status_code=code, result=result, at=now)
            if msg.target == "slack" and kind == Kind.CARD and result.get("ts"):
                await repo.remember_message(session, msg.action_id or 0, msg.purpose or "card",
                                            result["channel"], result["ts"])
            if kind == storms.KIND and msg.method == "chat.postMessage":
                await storms.parent_posted(session, msg.payload["storm_id"], result.get("channel"),
                                           result.get("ts"))
            if route is not None and route.storm_id is not None and result.get("ts"):
                await storms.child_posted(session, route.storm_id, now)
            if msg.target == "callback":
                await ledger.append(session, "callback.delivered",
                                    {"url": msg.payload["url"], "status": code}, action_id=msg.action_id)
            await session.commit()

    async def _retry(self, msg: OutboxMessage, error: str, *, delay: float | None = None,
                     status_code: int | None = None) -> None:
        assert msg.id is not None
        now = self.svc.clock()
        give_up = msg.target == "callback" and now - msg.created_at > timedelta(
            seconds=callbacks.GIVE_UP_AFTER_SECONDS)
        cap = 3600 if msg.target == "callback" else 60
        wait = delay if delay is not None else backoff(msg.attempts + 1, cap=cap)
        log.warning("delivery %s (%s) failed, retry in %.1fs: %s", msg.id, msg.method, wait, error,
                    extra={"action_id": msg.action_id})
        metrics = self.svc.extras.get("metrics")
        if metrics:
            metrics.outbox_errors.labels(msg.target, error.split(":")[0][:40], "false").inc()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        retry_at=now + timedelta(seconds=wait), give_up=give_up, at=now)
            await session.commit()

    async def _failed(self, msg: OutboxMessage, error: str, *, status_code: int | None = None) -> None:
        assert msg.id is not None
        log.error("delivery %s (%s to %s) failed for good: %s", msg.id, msg.method, msg.channel_key, error,
                  extra={"action_id": msg.action_id})
        metrics = self.svc.extras.get("metrics")
        if metrics:
            metrics.outbox_errors.labels(msg.target, error[:40], "true").inc()
        now = self.svc.clock()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        give_up=True, at=now)
            level = msg.payload.get("level")
            if msg.payload.get("kind") == Kind.CARD and level and msg.action_id:
                action = await repo.get(session, msg.action_id)
                if action is not None and action.status == "pending":
                    await fail_level(session, action, level, error, now)
            await session.commit()

    # --- Slack ---------------------------------------------------------------------------------

    async def _call_slack(self, msg: OutboxMessage, route: storms.Route | None) -> dict[str, Any]:
        payload = dict(msg.payload)
        if payload.get("kind") == Kind.UPDATE_CARDS:
            return await self._update_cards(payload)
        channel = payload.get("channel")
        if channel and "@" in channel:
            payload["channel"] = await resolve(self.svc, channel)
        args = await self.render(self.svc, payload)
        if args is None:
            return {"skipped": True}
        if "channel" not in args and msg.method != "views.publish" and payload.get("channel"):
            args["channel"] = payload["channel"]
        if route is not None and route.thread_ts:
            args["thread_ts"] = route.thread_ts
        resp = await self.svc.slack.api_call(msg.method, json=args)
        return {"channel": resp.get("channel"), "ts": resp.get("ts")}

    async def _update_cards(self, payload: dict[str, Any]) -> dict[str, Any]:
        async with self.svc.db.session() as session:
            copies = await repo.slack_messages(session, payload["action_id"])
        updated = []
        for copy in copies:
            level = copy.purpose.split(":")[-1]
            args = await self.render(self.svc, {**payload, "kind": Kind.CARD, "channel": copy.channel,
                                                "purpose": copy.purpose, "level": level})
            if args is None:
                continue
            args.update(channel=copy.channel, ts=copy.ts)
            await self.svc.slack.api_call("chat.update", json=args)
            updated.append(copy.ts)
        return {"updated": updated}

    # --- agent callbacks -----------------------------------------------------------------------

    async def _post_callback(self, msg: OutboxMessage) -> tuple[dict[str, Any], int]:
        async with self.svc.db.session() as session:
            agent = await session.get(Agent, msg.payload["agent_id"])
        if agent is None:
            raise Permanent("the agent no longer exists")
        body = callbacks.encode(msg.payload["body"])
        headers = {"Content-Type": "application/json", **callbacks.sign(agent.callback_secret, body)}
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT))
        async with self._http.post(msg.payload["url"], data=body, headers=headers) as resp:
            if 200 <= resp.status < 300:
                return {"status": resp.status}, resp.status
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                              message=f"callback answered {resp.status}")


async def run_forever(tick: Callable[[], Awaitable[int]], interval: float, stop: asyncio.Event) -> None:
    """Call `tick` until `stop` is set; when it found work, go again at once."""
    while not stop.is_set():
        try:
            busy = await tick()
        except Exception:
            log.exception("background tick failed")
            busy = 0
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
