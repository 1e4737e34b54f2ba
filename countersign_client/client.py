"""The async HTTP client an agent uses: submit actions, read them, wait for a human's decision.

Depends on aiohttp and the standard library only, so an agent can install it without the server.
Every submission carries an Idempotency-Key generated once per logical call; connection errors,
5xx, 409 (the same key still in flight) and 429 are retried with backoff under that same key, so a
retry never pages the owner twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from countersign_client.errors import CountersignError, Unavailable, api_error

RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
MAX_SERVER_WAIT = 60.0  # the decision endpoint holds a request at most this long
DEFAULT_URL = "http://localhost:3000"

Evidence = Mapping[str, str] | tuple[str, str]


class CountersignClient:
    """`async with CountersignClient(url, token) as cs: ...` (or call `close()` yourself).

    `base_url` and `token` default to the COUNTERSIGN_URL and COUNTERSIGN_TOKEN environment variables.
    One client belongs to one event loop (it holds an aiohttp session; pass `session=` to share
    yours, e.g. one with a larger connection limit than aiohttp's 100 for many concurrent waits).
    """

    def __init__(self, base_url: str | None = None, token: str | None = None, *, retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 10.0, request_timeout: float = 30.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        token = token or os.environ.get("COUNTERSIGN_TOKEN")
        if not token:
            raise CountersignError("no agent token: pass token= or set COUNTERSIGN_TOKEN "
                                   "(create one with `countersign agents add NAME`)")
        self.base_url = _base_url(base_url or os.environ.get("COUNTERSIGN_URL") or DEFAULT_URL)
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.request_timeout = request_timeout
        self._token = token
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> CountersignClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    # --- the API -------------------------------------------------------------------------------

    async def submit(
        self,
        *,
        kind: str,
        service: str,
        action_type: str,
        summary: str,
        rationale: str,
        environment: str | None = None,
        confidence: float | None = None,
        evidence: Iterable[Evidence] | None = None,
        executed_at: datetime | str | None = None,
        callback_url: str | None = None,
        external_id: str | None = None,
        model: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/actions. Returns the created action (id, status, mode, owner, decision, links...).

        Raises Refused (403: the policy forbids it), ApiError (any other 4xx), Unavailable.
        Pass `idempotency_key` to make a call you repeat across process restarts page only once.
        """
        body: dict[str, Any] = {"kind": kind, "service": service, "action_type": action_type,
                                "summary": summary, "rationale": rationale}
        optional: dict[str, Any] = {
            "environment": environment, "confidence": confidence,
            "evidence": _evidence(evidence) if evidence is not None else None,
            "executed_at": executed_at.isoformat() if isinstance(executed_at, datetime) else executed_at,
            "callback_url": callback_url, "external_id": external_id,
            "model": dict(model) if model is not None else None,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        key = idempotency_key or str(uuid.uuid4())  # one key per logical call, reused by every retry
        return await self._call("POST", "/v1/actions", json_body=body, headers={"Idempotency-Key": key})

    async def propose(self, **fields: Any) -> dict[str, Any]:
        """submit(kind="proposed", ...): the action waits for a human decision before it runs."""
        return await self.submit(kind="proposed", **fields)

    async def report(self, **fields: Any) -> dict[str, Any]:
        """submit(kind="executed", ...): tell the owner what was done; they acknowledge or override."""
        return await self.submit(kind="executed", **fields)

    async def report_result(self, action_id: int, result: str, *, detail: str | None = None,
                            evidence: Iterable[Evidence] | None = None) -> dict[str, Any]:
        """POST /v1/actions/{id}/result once the action ran: "succeeded", "failed" or "rolled_back".
        Stored once: the same call again gives the same answer (safe to retry), another result is 409."""
        body: dict[str, Any] = {"result": result, "evidence": _evidence(evidence or [])}
        if detail is not None:
            body["detail"] = detail
        return await self._call("POST", f"/v1/actions/{int(action_id)}/result", json_body=body)

    async def pauses(self) -> list[dict[str, Any]]:
        """GET /v1/pauses: what is paused now (a new action for it needs approval)."""
        return list((await self._call("GET", "/v1/pauses"))["items"])

    async def get(self, action_id: int) -> dict[str, Any]:
        """GET /v1/actions/{id}: the action with its status and, once decided, its decision."""
        return await self._call("GET", f"/v1/actions/{int(action_id)}")

    async def list_actions(self, *, status: str | None = None, service: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> dict[str, Any]:
        """GET /v1/actions: newest first; {"items": [...], "next_cursor": ...}."""
        params = {k: str(v) for k, v in
                  {"status": status, "service": service, "limit": limit, "cursor": cursor}.items() if v}
        return await self._call("GET", "/v1/actions", params=params)

    async def wait_for_decision(self, action_id: int, timeout: float = 3600.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for the action's decision; returns the action either way
        (check `action["decision"]`: None means still undecided). Uses the server's long poll, so
        the answer arrives as soon as a human decides, with one request per minute at most."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            wait = max(0.0, min(deadline - time.monotonic(), MAX_SERVER_WAIT))
            action = await self._call("GET", f"/v1/actions/{int(action_id)}/decision",
                                      params={"wait": f"{wait:.3f}"}, seconds=wait + self.request_timeout)
            if action.get("decision") is not None or time.monotonic() >= deadline:
                return action

    async def request_approval(self, *, timeout: float = 3600.0,  # noqa: ASYNC109
                               **fields: Any) -> dict[str, Any]:
        """Propose and wait for the decision: the action JSON (status approved, denied, expired,
        recorded, or still pending if `timeout` ran out). See also the @requires_approval decorator."""
        action = await self.propose(**fields)
        if action.get("decision") is not None:
            return action
        return await self.wait_for_decision(action["id"], timeout)

    def requires_approval(self, **options: Any) -> Callable[[Any], Any]:
        """@requires_approval bound to this client."""
        from countersign_client.decorators import requires_approval

        return requires_approval(client=self, **options)

    def reports_action(self, **options: Any) -> Callable[[Any], Any]:
        """@reports_action bound to this client."""
        from countersign_client.decorators import reports_action

        return reports_action(client=self, **options)

    # --- transport -----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "countersign-client/0.1"})
            self._owns_session = True
        return self._session

    async def _call(self, method: str, path: str, *, json_body: Any = None,
                    headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                    seconds: float | None = None) -> dict[str, Any]:
        url = self.base_url + path
        limit = aiohttp.ClientTimeout(total=seconds or self.request_timeout)
        headers = {**(headers or {}), "Authorization": f"Bearer {self._token}"}  # also on a session passed in
        last_problem = ""
        for attempt in range(self.retries + 1):
            retry_after: float | None = None
            try:
                async with self._http().request(method, url, json=json_body, headers=headers, params=params,
                                                timeout=limit) as resp:
                    body = await _body(resp)
                    if resp.status < 400:
                        return body if isinstance(body, dict) else {"body": body}
                    if resp.status not in RETRY_STATUSES or attempt == self.retries:
                        raise api_error(resp.status, body)
                    last_problem = f"HTTP {resp.status}"
                    retry_after = _seconds(resp.headers.get("Retry-After"))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                if attempt == self.retries:
                    raise Unavailable(f"{method} {url} failed after {attempt + 1} attempts: "
                                      f"{last_problem}") from exc
            await asyncio.sleep(retry_after if retry_after is not None else self._delay(attempt))
        raise Unavailable(f"{method} {url} failed: {last_problem}")  # unreachable: the loop returns or raises

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so many agents retrying after an outage do not stampede."""
        return min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)


def _base_url(url: str) -> str:
    """The server's base URL, refused at once unless it is http(s)://host[:port][/prefix]: without a
    scheme (`localhost:3000`) every call failed later with aiohttp's bare NonHttpUrlClientError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CountersignError("the Countersign URL must be like http://localhost:3000 or "
                               f"https://countersign.example.com (COUNTERSIGN_URL or base_url=), not {url!r}")
    return url.strip().rstrip("/")


async def _body(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw.decode(errors="replace")


def _seconds(value: str | None) -> float | None:
    try:
        return min(60.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def _evidence(items: Iterable[Evidence]) -> list[dict[str, str]]:
    out = []
    for item in items:
        if isinstance(item, tuple):
            label, url = item
            out.append({"label": label, "url": url})
        else:
            out.append({"label": item["label"], "url": item["url"]})
    return out
