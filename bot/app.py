"""The app factory: the one place that wires settings, database, policy, Slack, handlers and the
background workers into one aiohttp application (ingest API + Slack's `POST /slack/events`), and
`Runtime`, the one path that starts and stops them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot import slack_guard as guard
from bot.actions.tokens import TokenCache
from bot.actions.writer import LANES, Writer
from bot.api import paging_health
from bot.api import routes as api
from bot.api.longpoll import DecisionWaiters
from bot.autonomy import brake, pauses, rollup
from bot.autonomy.state import AutonomyState
from bot.clock import Clock, system_clock
from bot.config import Settings, SettingsError
from bot.contract.schemas import MAX_BODY_BYTES
from bot.delivery.relay import Relay, run_forever
from bot.escalation import paging
from bot.escalation.sweeper import Sweeper, refresh_metrics
from bot.policy.rules import Policy, load_policy
from bot.reports import audit, digest
from bot.services import Services
from handlers.web import routes as web_pages
from storage.db import Database

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

log = logging.getLogger("countersign.app")
BOLT = web.AppKey("bolt", AsyncApp)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def slack_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    # Connection errors are retried inside slack_sdk; rate limits and Slack errors are the relay's
    # to schedule (it must not sleep on one message while others wait).
    return AsyncWebClient(token=token, base_url=settings.api_url,
                          retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=1)])


def build_services(settings: Settings, *, policy: Policy | None = None, clock: Clock = system_clock,
                   database: Database | None = None) -> Services:
    """`database`: one built by the caller (default: from DATABASE_URL); the app disposes of it."""
    if policy is None:
        if not settings.policy_path:
            raise SettingsError("COUNTERSIGN_POLICY is not set: point it at the policy YAML file")
        policy = load_policy(settings.policy_path)
    db = database if database is not None else Database(settings.database_url)
    return Services(settings=settings, db=db, policy=policy, clock=clock, slack=slack_client(settings))


def build_bolt(svc: Services, workspace: guard.Workspace | None = None) -> AsyncApp:
    """`workspace`: refuse requests from any other (Socket Mode; over HTTP `slack_events` refuses
    them before bolt parses anything)."""
    settings = svc.settings
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""

    async def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        # One workspace, one bot token: no auth.test round trip on every request.
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    bolt = AsyncApp(
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else "",
        client=svc.slack,
        authorize=authorize,
        process_before_response=False,
    )
    if workspace is not None:
        pinned = workspace

        async def one_workspace(req: AsyncBoltRequest, resp: BoltResponse,
                                next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
            team, enterprise = req.context.team_id, req.context.enterprise_id
            reason = pinned.refusal(team, enterprise)
            if reason is not None:
                pinned.log_refused(team, enterprise, reason)
                return BoltResponse(status=403, body=reason)
            return await next()

        bolt.middleware(one_workspace)
    handlers.register(bolt, svc)
    return bolt


def slack_endpoint(bolt: AsyncApp, settings: Settings, workspace: guard.Workspace) -> Handler:
    """`POST /slack/events`: signed, well formed and from our workspace, then bolt's."""
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""

    async def slack_events(request: web.Request) -> web.Response:
        raw = await request.read()
        if not guard.verify(secret, raw, request.headers):
            return web.Response(status=401, text="invalid signature")
        try:
            body = guard.parse(raw, request.content_type)
        except guard.Malformed as exc:
            log.warning("refused a signed but malformed Slack request: %s", exc)
            return web.Response(status=400, text=f"malformed request: {exc}")
        workspace.learn_soon(bolt.client)  # only if the start could not (Slack was down)
        team, enterprise = guard.ids(body)
        reason = workspace.refusal(team, enterprise)
        if reason is not None:
            workspace.log_refused(team, enterprise, reason)
            return web.Response(status=403, text=reason)
        bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    return slack_events


@dataclass
class Runtime:
    """The app's moving parts, and the one path that starts them and stops them in a safe order."""

    svc: Services
    bolt: AsyncApp
    relay: Relay
    sweeper: Sweeper
    waiters: DecisionWaiters  # the requests parked on a long poll
    writer: Writer  # group-commit ingest (bot.actions.writer)
    migrate: bool = True  # bring the schema to head on start (else refuse if behind)
    background: bool = True  # run the sweeper and the relay
    socket: AsyncSocketModeHandler | None = None
    workspace: guard.Workspace = field(default_factory=guard.Workspace)  # whose requests are accepted
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, _: web.Application) -> None:
        """The schema, the policy in force on record, the scheduled jobs and the relay, then Slack."""
        svc, settings = self.svc, self.svc.settings
        if self.migrate:
            await svc.db.migrate()
        else:
            await svc.db.check_schema()
        await audit.record_policy_loaded(svc)  # by hash: decisions tie to the rules of the day
        self.writer.start()
        if self.background:
            self.sweeper.schedule(svc.scheduler, settings.tick_seconds)  # first run now: steps due while down
            pauses.schedule(svc, settings.tick_seconds)  # pauses and grants whose deadline passed while down
            rollup.schedule(svc)  # the track record's daily rollup: the days that ended, and changed ones
            self._loops.append(asyncio.create_task(
                run_forever(self.relay.tick, settings.tick_seconds, self._stopping), name="relay"))
        svc.scheduler.start()  # the sweeper (if background) and the daily digest
        if svc.settings.slack_bot_token:
            await self.workspace.learn(svc.slack)  # SLACK_TEAM_ID unset: pin what auth.test names
        if settings.slack_app_token:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self.socket = AsyncSocketModeHandler(self.bolt, settings.slack_app_token.get_secret_value())
            await self.socket.connect_async()
        # GC pauses were the tail of Slack's ack latency (bench/bench_clicks.py, p99 3x a bare bolt
        # app): keep what startup built out of the collector's scans, and collect less often.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        log.info("countersign ready: policy with %d services, database %s", len(svc.policy.services),
                 svc.db.dialect)

    async def drain(self, _: web.Application) -> None:
        """No longer listening: answer the parked long polls now, so the requests in flight end."""
        await self.waiters.close()

    async def stop(self, _: web.Application) -> None:
        """Every request has ended: take no new work, let the sweeper's and the relay's current
        ticks commit (nothing half-written), then close the connections."""
        self._stopping.set()
        if self.socket is not None:
            await self.socket.close_async()
        await self.sweeper.stop()
        await self.writer.stop()
        if self.svc.scheduler.running:
            self.svc.scheduler.pause()  # no new runs; the running ones end before anything closes
            await self.svc.jobs.finished()
            self.svc.scheduler.shutdown(wait=False)
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.relay.close()
        await self.svc.db.dispose()


RUNTIME = web.AppKey("runtime", Runtime)


def create_app(
    settings: Settings,
    *,
    policy: Policy | None = None,
    clock: Clock = system_clock,
    database: Database | None = None,
    migrate: bool = True,
    background: bool = True,
) -> web.Application:
    """Build the application. `migrate`: bring the schema to head on start (else refuse if behind)."""
    svc = build_services(settings, policy=policy, clock=clock, database=database)
    workspace = guard.Workspace(team_id=settings.slack_team_id, pinned=bool(settings.slack_team_id))
    bolt = build_bolt(svc, workspace)
    relay = Relay(svc, handlers.render, paging.fail_level)
    waiters = DecisionWaiters(svc)
    writer = Writer(svc, TokenCache(svc), lanes=LANES.get(svc.db.dialect, 1))
    runtime = Runtime(svc, bolt, relay, Sweeper(svc), waiters, writer, migrate=migrate, background=background,
                      workspace=workspace)
    svc.decision_listeners.append(waiters.notify)  # a decision wakes the long polls waiting for it
    svc.autonomy = AutonomyState(svc.db)  # grants and pauses in force, for ingest
    svc.decided_hooks.append(partial(brake.after_decision, svc))  # an override may trip the brake
    svc.metrics_refreshers += [partial(refresh_metrics, svc), relay.refresh_metrics]  # pending; outbox
    svc.health_probes["deliveries"] = relay.health  # Slack failing / backlog old
    svc.health_probes["paging"] = partial(paging_health.probe, svc)  # token refused / nobody reachable
    svc.metrics_refreshers.append(partial(paging_health.refresh_metrics, svc))
    digest.schedule(svc)

    app = web.Application(middlewares=[api.errors_middleware, api.auth_middleware],
                          client_max_size=MAX_BODY_BYTES)
    app[api.SERVICES] = svc
    app[BOLT] = bolt
    app[RUNTIME] = runtime
    app[api.WRITER] = writer
    api.add_routes(app, waiters)

    app.router.add_post("/slack/events", slack_endpoint(bolt, settings, workspace))
    web_pages.add_routes(app, svc)  # the action and service pages (handlers/web)
    # aiohttp runs these: on startup; once it stops listening; after the requests in flight ended.
    app.on_startup.append(runtime.start)
    app.on_shutdown.append(runtime.drain)
    app.on_cleanup.append(runtime.stop)
    return app
