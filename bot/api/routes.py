"""The agents' HTTP API (aiohttp): submit actions, read them back, health and metrics.

Handlers are thin: parse, call one domain function, render JSON. Every error has SPEC's shape
{"error": {"code", "message"}}; bad input is a 4xx naming the field, never a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from bot.actions.serialize import action_json
from bot.actions.submit import prepare
from bot.actions.writer import RETRY_AFTER_SECONDS, Writer
from bot.api import longpoll as api_decision
from bot.api import results as api_results
from bot.api.body import bad_request, idempotency_key, read_object, too_large
from bot.autonomy.results import result_json
from bot.contract import callback_target
from bot.contract.errors import ApiError, unauthorized
from bot.contract.schemas import ActionIn, check_json, field_problems
from bot.delivery.directory import name_deciders
from bot.services import Services
from storage import json_text
from storage.db import dropped, unavailable
from storage.models import Agent
from storage.queries import actions as repo
from storage.queries import agents, paging
from storage.queries import autonomy as autonomy_q

log = logging.getLogger("countersign.api")
SERVICES = web.AppKey("services", Services)
WRITER = web.AppKey("writer", Writer)  # the group-commit writer (bot.actions.writer) and its token cache
AGENT = web.RequestKey("agent", Agent)
AUTH_EPOCH = web.RequestKey("auth_epoch", int)  # the token cache's epoch at the lookup (bot.actions.tokens)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Every JSON answer through orjson (storage.json_text): the 201's json.dumps was ~2 % of ingest CPU.
json_response = partial(web.json_response, dumps=json_text.dumps)


def _json_error(status: int, code: str, message: str, **details: Any) -> web.Response:
    return json_response(ApiError(status, code, message, **details).body(), status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    if not request.path.startswith("/slack"):
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[SERVICES].metrics.http_requests.labels(request.method, route, str(response.status)).inc()
    return response


async def _read_again_if_dropped(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A read whose pooled connection had died (a database restart or failover) runs once more: the
    pool let its dead connections go when the first failed, and a read changes nothing. Writes have
    their own retry (bot.actions.writer) or are answered 503 with Retry-After."""
    try:
        return await handler(request)
    except Exception as exc:
        if request.method not in ("GET", "HEAD") or not dropped(exc):
            raise
        log.warning("the connection dropped under %s %s: reading again", request.method, request.path)
        return await handler(request)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await _read_again_if_dropped(request, handler)
    except ApiError as exc:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
        return json_response(exc.body(), status=exc.status, headers=headers)
    except web.HTTPRequestEntityTooLarge:
        return json_response(too_large().body(), status=413)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/slack"):
            raise
        return _json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except Exception as exc:
        if unavailable(exc):  # the database cannot serve now: retryable, never a 500
            log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
            return json_response(
                ApiError(503, "unavailable", "the database is unavailable; retry with the same Idempotency-Key",
                         retry_after=RETRY_AFTER_SECONDS).body(),
                status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        log.exception("internal error on %s %s", request.method, request.path)
        return _json_error(500, "internal",
                           "internal error; nothing was lost, retry with the same Idempotency-Key")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/") or request.path == "/v1/openapi.json":
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or not token.isascii():
        raise ApiError(401, "unauthorized", "send the agent's token as `Authorization: Bearer <token>`")
    svc = request.app[SERVICES]
    if request.method == "POST" and request.path == "/v1/actions":
        # Cached: the writer re-checks revocations in the batch's own transaction (bot.actions.tokens).
        tokens = request.app[WRITER].tokens
        request[AUTH_EPOCH] = tokens.epoch  # read before the lookup: a clear during it makes it older
        agent = await tokens.agent(token.strip())
    else:
        async with svc.db.read_session() as session:
            agent = await agents.by_token(session, token.strip())
    if agent is None:
        raise unauthorized()
    request[AGENT] = agent
    return await handler(request)


async def post_action(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    key = idempotency_key(request)
    body = await read_object(request)
    try:
        req = ActionIn.model_validate(body, context={"now": svc.clock()})
    except ValidationError as exc:
        raise bad_request(field_problems(exc)) from None
    if req.callback_url is not None:
        refused = await callback_target.refusal(str(req.callback_url), svc.settings.callback_allow_list,
                                                strict=False)
        if refused is not None:
            raise ApiError(422, "callback_url_refused", f"callback_url: {refused}",
                           fields=[{"field": "callback_url", "message": refused}])
    in_force = await svc.autonomy.current()  # grants and pauses (cached; bot.autonomy.state)
    prepared = prepare(svc, request[AGENT], req, raw=body, idempotency_key=key, in_force=in_force,
                       auth_epoch=request.get(AUTH_EPOCH))
    status, out = await request.app[WRITER].submit(prepared)
    log.info("action %s accepted: %s %s on %s -> %s", out["id"], req.kind, req.action_type, req.service,
             out["mode"], extra={"action_id": out["id"]})
    svc.metrics.actions_submitted.labels(req.kind, out["mode"]).inc()
    return json_response(out, status=status, headers={"Location": out["links"]["self"]})


def _action_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(404, "not_found", f"there is no action {raw!r}")
    return int(raw)


async def get_action(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    action_id = _action_id(request)
    async with svc.db.read_session() as session:
        found = await repo.get_with_agent(session, action_id)
        if found is None or found[0].agent_id != request[AGENT].id:  # another agent's: as if it did not exist
            raise ApiError(404, "not_found", f"there is no action {action_id}")
        action, agent = found
        view = await paging.unreachable_view(session, [action_id])
        result = await autonomy_q.result_for(session, action_id)
        body = {**action_json(action, agent.name, svc.settings.base_url, view.get(action_id)),
                "result": result_json(result)}
        await name_deciders(svc, [body], session)  # decision.by: a Slack user id, never the policy's email
    return json_response(body)


STATUSES = {"pending", "approved", "denied", "acknowledged", "overridden", "expired", "recorded"}


async def list_actions(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    q = request.query
    status, service = q.get("status") or None, q.get("service") or None
    if status and status not in STATUSES:
        raise ApiError(400, "invalid_request", f"status: one of {', '.join(sorted(STATUSES))}",
                       fields=[{"field": "status", "message": "unknown status"}])
    try:
        limit = int(q.get("limit", "50"))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        raise ApiError(400, "invalid_request", "limit: a whole number from 1 to 500",
                       fields=[{"field": "limit", "message": "1 to 500"}]) from None
    problem = check_json({"service": service}) if service else None
    if problem is not None:  # a NUL: PostgreSQL cannot compare text holding one (it was a 500)
        raise bad_request([problem])
    cursor = q.get("cursor") or None
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise ApiError(400, "invalid_request", "cursor: use the next_cursor of a previous page",
                       fields=[{"field": "cursor", "message": "invalid cursor"}])
    async with svc.db.read_session() as session:
        rows = await repo.page(session, status=status, service=service, agent_id=request[AGENT].id,
                               before_id=int(cursor) if cursor else None, limit=limit + 1)
        view = await paging.unreachable_view(session, [a.id for a, _ in rows[:limit] if a.id is not None])
        items = [action_json(a, g.name, svc.settings.base_url, view.get(a.id or 0)) for a, g in rows[:limit]]
        await name_deciders(svc, items, session)  # one cache read for the page, none if no decision needs it
    next_cursor = str(items[-1]["id"]) if len(rows) > limit else None
    return json_response({"items": items, "actions": items, "next_cursor": next_cursor})


# /healthz answers within a second whatever the database does (a lock, a dead server): a check
# that has not answered by then is abandoned, not awaited.
HEALTH_DATABASE_SECONDS = 0.5
HEALTH_TOTAL_SECONDS = 0.7


async def _bounded(check: Awaitable[Any], seconds: float) -> tuple[bool, Any]:
    """(answered, result or exception) within `seconds`; a late check is cancelled and left behind
    (awaiting its cancellation could itself hang on a dead connection)."""
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "never retrieved"
        return False, None
    exc = task.exception()
    return (True, exc) if exc is not None else (True, task.result())


async def healthz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    names = list(svc.health_probes)
    results = await asyncio.gather(
        _bounded(svc.db.check_schema(), HEALTH_DATABASE_SECONDS),
        *(_bounded(svc.health_probes[name](), HEALTH_TOTAL_SECONDS) for name in names))
    checks: dict[str, Any] = {}
    answered, outcome = results[0]
    if not answered:
        checks["database"] = f"error: no answer within {HEALTH_DATABASE_SECONDS:g} s"
    elif isinstance(outcome, BaseException):
        checks["database"] = f"error: {outcome}"
    else:
        checks["database"] = "ok"
    status = "ok" if checks["database"] == "ok" else "down"
    for name, (answered, outcome) in zip(names, results[1:], strict=True):
        if not answered:
            outcome = f"unknown: no answer within {HEALTH_TOTAL_SECONDS:g} s"
        elif isinstance(outcome, BaseException):
            outcome = f"unknown: {outcome}"
        checks[name] = outcome
        if status == "ok" and outcome != "ok":
            status = "degraded"
    return json_response({"status": status, "checks": checks}, status=503 if status == "down" else 200)


async def metrics(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    for refresh in svc.metrics_refreshers:  # the gauges read from the database when scraped
        await refresh()
    return web.Response(body=generate_latest(svc.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    from bot.api.openapi import document

    return json_response(document(request.app[SERVICES].settings.base_url))


def add_routes(app: web.Application, waiters: api_decision.DecisionWaiters) -> None:
    app.router.add_post("/v1/actions", post_action)
    app.router.add_get("/v1/actions", list_actions)
    app.router.add_get("/v1/actions/{id}", get_action)
    api_decision.register(app, SERVICES, waiters, AGENT, _action_id)  # GET /v1/actions/{id}/decision?wait=N (long poll)
    api_results.register(app, SERVICES, AGENT, _action_id)  # result, pauses
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/openapi.json", openapi)  # where most tools look first (FastAPI's default path)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
