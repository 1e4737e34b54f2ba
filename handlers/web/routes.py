"""The web pages, a second way for people to reach the domain (like the Slack listeners): the
action page `/a/{id}` with its decision forms, and the service page `/s/{name}`. Every page needs
a signed link (handlers.web.links); forms carry a CSRF token bound to a cookie and to the link."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from markupsafe import escape

from bot.actions.decisions import respond
from bot.actions.rules import OUTCOMES
from bot.escalation.snapshot import snapshot_of
from bot.services import Services
from handlers.web import links
from handlers.web.cache import Coalesced, PageCache, shared_outcome
from handlers.web.charts import service_charts
from handlers.web.names import display_name, labels
from handlers.web.render import Parts, fill, parts, render, slot
from handlers.web.views import ActionPage, load_action_page, may_answer
from storage.queries import actions as repo
from storage.queries import pages

log = logging.getLogger("countersign.web")
CSRF_COOKIE = "cs_csrf"
SERVICE_DAYS = 14
HEADERS = {
    # No script at all, no framing, forms only to ourselves; the signed URL never leaks as a Referer.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
REFUSAL_STATUS = {"not_authorized": 403, "reason_required": 400, "not_applicable": 409, "already_decided": 409,
                  "not_found": 404}
DONE = {"approve": "Approved", "override": "Overridden", "acknowledge": "Acknowledged"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def html(body: str | bytes, status: int = 200) -> web.Response:
    """A page: `body` as text, or already UTF-8 (render.fill)."""
    if isinstance(body, str):
        body = body.encode()
    return web.Response(body=body, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


def refused(status: int, heading: str, message: str) -> web.Response:
    return html(render("refused.html", heading=heading, message=message, names={}), status)


def _guarded(handler: Handler) -> Handler:
    """Errors handled in one place: a bad link is a 403 page, anything unexpected a 500 page."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except links.LinkRefused as exc:
            return refused(403, "This link does not open the page", str(exc))
        except Exception:
            log.exception("web page %s %s failed", request.method, request.path)
            return refused(500, "Something went wrong", "It was logged. Try again in a moment.")
    return wrapped


@dataclass(frozen=True)
class Shared:
    page: ActionPage
    names: dict[str, str]
    html: Parts  # the page, rendered once, with slots for what depends on the viewer or the time


@dataclass
class Web:
    svc: Services
    cache: PageCache[tuple[int, int, int], Shared] = field(default_factory=PageCache)
    # Misses being loaded: requests that miss together share one load (at 16 concurrent, an
    # expired entry used to be loaded 16 times over, each ~65 ms of CPU, all at once).
    loading: dict[tuple[int, int, int], asyncio.Future[Shared | None]] = field(default_factory=dict)
    _key: tuple[object, object, bytes] | None = None
    fresh: Coalesced[int, tuple[int, int] | None] = field(init=False)

    def __post_init__(self) -> None:
        self.fresh = Coalesced(self._freshness)

    @property
    def key(self) -> bytes:
        """The link key, derived once per pair of secrets (it was derived four times a request)."""
        settings = self.svc.settings
        secrets_now = (settings.link_secret, settings.slack_signing_secret)
        if self._key is None or self._key[:2] != secrets_now:
            self._key = (*secrets_now, links.link_key(settings))
        return self._key[2]

    def grant(self, request: web.Request, page: str) -> links.Grant:
        return links.check(self.key, page, dict(request.query), self.svc.clock())

    def url(self, grant: links.Grant, page: str | None = None, **extra: str) -> str:
        """A page's URL for the same viewer and expiry (another page is signed afresh)."""
        target = page or grant.page
        if extra:
            signed = links.Grant(target, grant.viewer, grant.expires)
            return f"/{target}?{urlencode({**signed.query(self.key), **extra})}"
        return _signed_url(self.key, target, grant.viewer, grant.expires)

    # --- the action page ----------------------------------------------------------------------------

    async def action_page(self, request: web.Request) -> web.StreamResponse:
        action_id = _action_id(request)
        grant = self.grant(request, links.action_page(action_id))
        return await self._render_action(request, grant, action_id, done=request.query.get("done", ""))

    async def _shared(self, action_id: int) -> Shared | None:
        """The viewer-independent part of the page, cached until the action or its ledger changes."""
        fresh = await self.fresh.get(action_id)
        if fresh is None:
            return None
        key = (action_id, *fresh)
        shared = self.cache.get(key, self.svc.clock())
        if shared is not None:
            return shared
        loading = self.loading.get(key)
        if loading is not None:
            await asyncio.wait([loading])  # its loader's cancellation is not ours: then load afresh
            return await self._shared(action_id) if loading.cancelled() else loading.result()
        future: asyncio.Future[Shared | None] = asyncio.get_running_loop().create_future()
        self.loading[key] = future
        try:
            shared = await shared_outcome(future, self._load(action_id))
        finally:
            del self.loading[key]
        if shared is not None:
            self.cache.put(key, shared, self.svc.clock())
        return shared

    async def _freshness(self, action_id: int) -> tuple[int, int] | None:
        async with self.svc.db.read_engine.connect() as conn:
            return await pages.freshness(conn, action_id)

    async def _load(self, action_id: int) -> Shared | None:
        page = await load_action_page(self.svc, action_id)
        if page is None:
            return None
        names = await labels(self.svc, page.people(), page.channels())
        return Shared(page, names, parts(
            "action.html", page=page, names=names, service_link=slot("service_link"), notices=slot("notices"),
            next_steps=slot("next_steps"), respond=slot("respond")))

    async def _render_action(self, request: web.Request, grant: links.Grant, action_id: int, *,
                             error: str = "", done: str = "", status: int = 200) -> web.StreamResponse:
        shared = await self._shared(action_id)
        if shared is None:
            return refused(404, "No such action", f"There is no action {action_id}.")
        page = replace(shared.page, viewer=grant.viewer,
                       can_respond=await may_answer(self.svc, shared.page.action, grant.viewer))
        done = _confirmation(page, grant, done)
        names = shared.names
        if grant.is_person and grant.viewer not in names:
            names = {**names, **await labels(self.svc, [grant.viewer])}
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = html(fill(shared.html, {
            "service_link": escape(self.url(grant, links.service_page(page.action.service))),
            "notices": render("_notices.html", done=done, error=error) if done or error else "",
            "next_steps": render("_next.html", page=page, names=names, now=self.svc.clock()),
            "respond": render("_respond.html", page=page, names=names, csrf=links.csrf_token(self.key, cookie, grant),
                              respond_url=self.url(grant), viewer_is_person=grant.is_person),
        }), status)
        if request.cookies.get(CSRF_COOKIE) != cookie:
            response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="Lax", path="/",
                                max_age=int(timedelta(days=7).total_seconds()))
        return response

    async def action_respond(self, request: web.Request) -> web.StreamResponse:
        action_id = _action_id(request)
        grant = self.grant(request, links.action_page(action_id))
        # A body a browser would not send (over the size cap, not UTF-8, broken multipart) is the
        # sender's fault: say so (413/400) instead of the 500 page aiohttp's exceptions led to.
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return refused(413, "The form is too large", "A response's reason is limited to 1 MiB in all.")
        except (ValueError, HttpProcessingError):
            return refused(400, "The form could not be read", "Its body is not a form this page sends. "
                           "Open the page again and resubmit.")
        if not links.csrf_ok(self.key, request.cookies.get(CSRF_COOKIE, ""), grant, str(form.get("csrf", ""))):
            return refused(403, "This form expired", "The form's security token did not match (it guards "
                           "against other sites submitting it). Open the page again and resubmit.")
        if not grant.is_person:
            return await self._render_action(request, grant, action_id, status=403, error=(
                "This link came from a channel's card and does not say who you are: open your personal link "
                "(your direct message from Countersign, or `/ai-actions show ID`) to respond."))
        response = str(form.get("response", ""))
        if response not in DONE:
            return await self._render_action(request, grant, action_id, status=400,
                                             error="response: choose approve, override or acknowledge.")
        result = await respond(self.svc, action_id, user_id=grant.viewer,
                               user_name=await display_name(self.svc, grant.viewer), response=response,
                               via="web", reason=str(form.get("reason", "")))
        if result.accepted:
            return web.Response(status=303, headers={**HEADERS, "Location": self.url(grant, done=response)})
        message = result.message
        if result.refusal == "reason_required":
            message = "An override needs a reason: say why in the Reason field, then press Override again."
        return await self._render_action(request, grant, action_id, error=message,
                                         status=REFUSAL_STATUS.get(result.refusal or "", 400))

    # --- the service page ---------------------------------------------------------------------------

    async def service_page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        grant = self.grant(request, links.service_page(name))
        service = self.svc.policy.services.get(name)
        if service is None:
            return refused(404, "No such service", f"The policy has no service {name!r}.")
        now = self.svc.clock()
        async with self.svc.db.read_session() as session:
            history = await pages.service_history(session, name, now - timedelta(days=SERVICE_DAYS))
            waiting = await repo.page(session, status="pending", service=name, limit=50)
        pending = [_Pending(a.id or 0, a.summary, g.name, a.level, a.created_at,
                            self.url(grant, links.action_page(a.id or 0))) for a, g in waiting]
        owner = snapshot_of(waiting[0][0]).owner if waiting else service.owner
        # where the line is drawn now: the pauses that hold here and the grants in force (the mode a
        # new action gets besides the file's rules; bot.policy.autonomy.apply)
        paused, granted = (await self.svc.autonomy.current()).at_service(name, now)
        names = await labels(self.svc, [owner, service.secondary, grant.viewer, *(p.by for p in paused),
                                        *(g.by for g in granted)])
        return html(render("service.html", service=name, owner=owner, secondary=service.secondary, names=names,
                           days=SERVICE_DAYS, total=len(history), charts=service_charts(history, now, SERVICE_DAYS),
                           pending=pending, paused=paused, granted=granted))


def _confirmation(page: ActionPage, grant: links.Grant, done: str) -> str:
    """The "recorded" notice after a form's redirect. `done` is an unsigned query parameter, so it is
    shown only when the action really was decided that way by this viewer on the web: anyone could
    append `&done=approve` to a link (a channel's, a stranger's, a pending action's) and show a
    confirmation of a decision nobody made."""
    a = page.action
    if (done not in DONE or not grant.is_person or a.decided_by != grant.viewer or a.decision_via != "web"
            or a.outcome != OUTCOMES.get((a.kind, done))):
        return ""
    return f"{DONE[done]}: recorded, with you as accountable."


@dataclass(frozen=True)
class _Pending:
    id: int
    summary: str
    agent: str
    level: str | None
    created_at: datetime
    link: str


@functools.lru_cache(maxsize=4096)
def _signed_url(key: bytes, page: str, viewer: str, expires: int) -> str:
    """The same link signed again on each view of a page (its form's target, the service page):
    an HMAC and a urlencode, ~10 % of a cached page's cost, so remembered."""
    return f"/{page}?{urlencode(links.Grant(page, viewer, expires).query(key))}"


def _action_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise links.LinkRefused("This link was altered: the action id is not a number.")
    return int(raw)


def add_routes(app: web.Application, svc: Services) -> None:
    """The app factory's one call: the action page, its forms, and the service page."""
    pages_ = Web(svc)
    app.router.add_get("/a/{id}", _guarded(pages_.action_page))
    app.router.add_post("/a/{id}", _guarded(pages_.action_respond))
    app.router.add_get("/s/{name}", _guarded(pages_.service_page))


__all__ = ["add_routes"]
