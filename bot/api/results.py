"""`POST /v1/actions/{id}/result` (the submitting agent reports how its action went) and
`GET /v1/pauses` (what holds now, so an agent can check before it acts)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.api.body import bad_request, read_object
from bot.autonomy import pauses, results
from bot.contract.schemas import ResultIn, field_problems
from bot.services import Services
from storage.models import Agent


def register(app: web.Application, services_key: web.AppKey[Services], agent_key: web.RequestKey[Agent],
             action_id: Any) -> None:
    async def post_result(request: web.Request) -> web.Response:
        svc = request.app[services_key]
        ident = action_id(request)
        body = await read_object(request)
        try:
            req = ResultIn.model_validate(body)
        except ValidationError as exc:
            raise bad_request(field_problems(exc)) from None
        return web.json_response(await results.report(svc, request[agent_key], ident, req))

    async def get_pauses(request: web.Request) -> web.Response:
        svc = request.app[services_key]
        items = [pauses.pause_json(p) for p in await pauses.holding(svc)]
        return web.json_response({"items": items, "pauses": items})

    app.router.add_post("/v1/actions/{id}/result", post_result)
    app.router.add_get("/v1/pauses", get_pauses)
