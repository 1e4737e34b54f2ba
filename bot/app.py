"""The app factory: the one place that wires settings, database, policy, Slack, handlers and the
background workers into one aiohttp application (ingest API + Slack's `POST /slack/events`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from functools import partial
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.api import routes as api
from bot.clock import Clock, system_clock
from bot.config import Settings, SettingsError
from bot.contract.schemas import MAX_BODY_BYTES
from bot.delivery.relay import Relay, run_forever
from bot.escalation import paging
from bot.escalation.sweeper import Sweeper, refresh_metrics
from bot.metrics import Metrics
from bot.policy.rules import Policy, load_policy
from bot.reports import audit
from bot.services import Services
from storage.db import Database

log = logging.getLogger("countersign.app")
BOLT = web.AppKey("bolt", AsyncApp)


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
    svc = Services(settings=settings, db=db, policy=policy, clock=clock)
    svc.slack = slack_client(settings)
    svc.extras["metrics"] = Metrics()
    return svc


def build_bolt(svc: Services) -> AsyncApp:
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
    handlers.register(bolt, svc)
    return bolt


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
    bolt = build_bolt(svc)
    relay = Relay(svc, handlers.render, paging.fail_level)
    sweeper = Sweeper(svc)
    svc.extras["relay"], svc.extras["sweeper"] = relay, sweeper
    svc.extras.setdefault("on_startup", []).append(partial(audit.record_policy_loaded, svc))  # policy hash
    svc.extras["metrics_refresh"] = partial(refresh_metrics, svc)
    svc.extras.setdefault("metrics_refreshers", []).append(relay.refresh_metrics)  # outbox backlog and age
    svc.extras.setdefault("health_probes", {})["deliveries"] = relay.health  # Slack failing / backlog old
    # Periodic jobs run on the app's event loop; job state lives in our database, not a job store.
    scheduler = svc.extras["scheduler"] = AsyncIOScheduler(timezone="UTC")

    app = web.Application(middlewares=[api.errors_middleware, api.auth_middleware],
                          client_max_size=MAX_BODY_BYTES)
    app[api.SERVICES] = svc
    app[BOLT] = bolt
    api.add_routes(app)

    async def slack_events(request: web.Request) -> web.Response:
        bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    app.router.add_post("/slack/events", slack_events)

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def on_startup(_: web.Application) -> None:
        if migrate:
            await svc.db.migrate()
        else:
            await svc.db.check_schema()
        if background:
            tick = settings.tick_seconds
            sweeper.schedule(scheduler, tick)  # first run at once: steps due while down fire now
            scheduler.start()
            tasks.append(asyncio.create_task(run_forever(relay.tick, tick, stop), name="relay"))
        for starter in svc.extras.get("on_startup", []):
            await starter()
        if settings.slack_app_token:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
            await socket.connect_async()
            svc.extras["socket"] = socket
        # GC pauses were the tail of Slack's ack latency (bench/bench_clicks.py, p99 3x a bare bolt
        # app): keep what startup built out of the collector's scans, and collect less often.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        log.info("countersign ready: policy with %d services, database %s", len(svc.policy.services),
                 svc.db.dialect)

    async def on_cleanup(_: web.Application) -> None:
        stop.set()
        for stopper in svc.extras.get("on_cleanup", []):
            await stopper()
        if "socket" in svc.extras:
            await svc.extras["socket"].close_async()
        # Let the current tick finish its transaction: nothing half-written.
        await sweeper.stop()
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay.close()
        await svc.db.dispose()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
