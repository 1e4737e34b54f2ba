"""The outbox relay: claims due messages, sends them to Slack or to agents' callback URLs,
stores what came back, and marks them done, retried, or failed.

A crash after a send but before the row is marked done re-sends that one message when the
lease runs out (at-least-once at the edge); everything else is exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot import callbacks
from bot.directory import UserNotFound, resolve
from bot.messages import Kind
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

# Render a queued message into Slack Web API arguments (text, blocks, view...), or None to skip it.
Renderer = Callable[[Services, dict[str, Any]], Awaitable[dict[str, Any] | None]]


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog), in seconds."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempt - 1)))


class Permanent(Exception):
    """A delivery that must not be retried."""


class Relay:
    def __init__(self, svc: Services, render: Renderer, *, batch: int = 50) -> None:
        self.svc, self.render, self.batch = svc, render, batch
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def tick(self) -> int:
        """Send what is due; returns how many messages were handled."""
        now = self.svc.clock()
        async with self.svc.db.session() as session:
            rows = await outbox.claim_due(session, now, limit=self.batch)
            await session.commit()
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, msg: OutboxMessage) -> None:
        assert msg.id is not None
        metrics = self.svc.extras.get("metrics")
        try:
            if msg.target == "callback":
                result, code = await self._post_callback(msg)
            else:
                result, code = await self._call_slack(msg), 200
        except (Permanent, UserNotFound) as exc:
            await self._failed(msg, str(exc), permanent=True)
            return
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown") if exc.response is not None else "unknown"
            status = exc.response.status_code if exc.response is not None else None
            if status == 429:
                retry = float(exc.response.headers.get("Retry-After", 1)) if exc.response is not None else 1
                if metrics:
                    metrics.slack_rate_limited.inc()
                await self._retry(msg, f"ratelimited (Retry-After {retry}s)", delay=retry, status_code=429)
            elif error in PERMANENT_ERRORS:
                await self._failed(msg, error, permanent=True, status_code=status)
            else:
                await self._retry(msg, error, status_code=status)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self._retry(msg, f"{type(exc).__name__}: {exc}")
            return
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=True, status_code=code, result=result)
            if msg.target == "slack" and msg.payload.get("kind") == Kind.CARD and result.get("ts"):
                await repo.remember_message(session, msg.action_id or 0, msg.purpose or "card",
                                            result["channel"], result["ts"])
            if msg.target == "callback":
                await ledger.append(session, "callback.delivered", {"url": msg.payload["url"], "status": code},
                                    action_id=msg.action_id)
            await session.commit()
        if metrics:
            metrics.outbox_sent.labels(msg.target, msg.method).inc()

    async def _retry(self, msg: OutboxMessage, error: str, *, delay: float | None = None,
                     status_code: int | None = None) -> None:
        assert msg.id is not None
        now = self.svc.clock()
        give_up = msg.target == "callback" and now - msg.created_at > timedelta(
            seconds=callbacks.GIVE_UP_AFTER_SECONDS)
        wait = delay if delay is not None else backoff(msg.attempts + 1, cap=3600 if msg.target == "callback"
                                                       else 60)
        log.warning("delivery %s (%s) failed, retry in %.1fs: %s", msg.id, msg.method, wait, error,
                    extra={"action_id": msg.action_id})
        metrics = self.svc.extras.get("metrics")
        if metrics:
            metrics.outbox_errors.labels(msg.target, error.split(":")[0][:40], "false").inc()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        retry_at=now + timedelta(seconds=wait), give_up=give_up)
            await session.commit()

    async def _failed(self, msg: OutboxMessage, error: str, *, permanent: bool,
                      status_code: int | None = None) -> None:
        assert msg.id is not None
        log.error("delivery %s (%s) failed for good: %s", msg.id, msg.method, error,
                  extra={"action_id": msg.action_id})
        metrics = self.svc.extras.get("metrics")
        if metrics:
            metrics.outbox_errors.labels(msg.target, error[:40], "true").inc()
        now = self.svc.clock()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        give_up=True)
            level = msg.payload.get("level")
            if msg.payload.get("kind") == Kind.CARD and level and msg.action_id:
                action = await repo.get(session, msg.action_id)
                if action is not None and action.status == "pending":
                    await fail_level(session, action, level, error, now)
            await session.commit()

    # --- Slack ---------------------------------------------------------------------------------

    async def _call_slack(self, msg: OutboxMessage) -> dict[str, Any]:
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
        resp = await self.svc.slack.api_call(msg.method, json=args)
        return {"channel": resp.get("channel"), "ts": resp.get("ts")}

    async def _update_cards(self, payload: dict[str, Any]) -> dict[str, Any]:
        async with self.svc.db.session() as session:
            copies = await repo.slack_messages(session, payload["action_id"])
        updated = []
        for copy in copies:
            args = await self.render(self.svc, {**payload, "kind": Kind.CARD, "channel": copy.channel,
                                                "purpose": copy.purpose, "level": copy.purpose.split(":")[-1]})
            if args is None:
                continue
            await self.svc.slack.api_call("chat.update", json={**args, "channel": copy.channel, "ts": copy.ts})
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
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
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
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
