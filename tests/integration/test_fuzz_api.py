"""Property-based tests: arbitrary JSON, bytes and headers thrown at `POST /v1/actions`.

Properties: never a 5xx; every JSON answer has SPEC's shape (checked against the OpenAPI document);
never a lost row (every 201's id is readable afterwards and the table holds exactly those).

The app runs in a background thread on its own event loop, so hypothesis can drive plain blocking
HTTP (http.client sends whatever bytes and headers we like) through many examples per database.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.api.routes import SERVICES
from bot.app import create_app
from bot.demo.fakeslack import FakeSlack
from storage.queries import agents
from tests import conftest
from tests.conftest import DATABASES, PG_ADMIN_URL, make_settings, proposal
from tests.integration.test_api import openapi_check

EXAMPLES = int(os.environ.get("COUNTERSIGN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class ThreadedApp:
    """The real application (and the fake Slack) served from a thread with its own event loop."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.created: dict[int, dict[str, Any]] = {}

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.slack = FakeSlack()
        await self.slack.start()
        self.app = create_app(make_settings(self.database_url, self.slack.url), policy=conftest.test_policy())
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        async with self.app[SERVICES].db.session() as session:
            _, self.token = await agents.create(session, "fuzzer")
            await session.commit()

    def stop(self) -> None:
        async def _stop() -> None:
            await self.runner.cleanup()
            await self.slack.stop()

        self.run(_stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers.get_content_type(), resp.read()
        finally:
            conn.close()

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        status, ctype, raw = self.request("POST", "/v1/actions", body, headers)
        assert status < 500, raw[:500]
        if ctype != "application/json":  # aiohttp's own protocol-level refusals (bad header bytes)
            assert status == 400, (status, raw[:200])
            return status, None
        out = json.loads(raw)
        openapi_check("/v1/actions", "post", status, out)
        if status == 201:
            self.created[out["id"]] = out
        return status, out

    def assert_nothing_lost(self) -> None:
        for action_id, answered in self.created.items():
            status, _, raw = self.request(
                "GET", f"/v1/actions/{action_id}", headers={"Authorization": f"Bearer {self.token}"}
            )
            assert status == 200, raw
            stored = json.loads(raw)
            assert (stored["id"], stored["summary"]) == (action_id, answered["summary"])
        ids: list[int] = []
        cursor = ""
        while True:
            _, _, raw = self.request(
                "GET", f"/v1/actions?limit=500{cursor}", headers={"Authorization": f"Bearer {self.token}"}
            )
            page = json.loads(raw)
            ids += [a["id"] for a in page["items"]]
            if not page["next_cursor"]:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert sorted(ids) == sorted(self.created)
        print(f"fuzz: {len(self.created)} actions accepted, all read back")


def _make_database(kind: str, tmp: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp}/fuzz.db", None
    name = f"cs_fuzz_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()

    asyncio.run(create())
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", name


def _drop_database(name: str) -> None:
    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    asyncio.run(drop())


@pytest.fixture(params=DATABASES)
def served(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[ThreadedApp]:
    url, pg_name = _make_database(request.param, str(tmp_path))
    app = ThreadedApp(url)
    app.start()
    try:
        yield app
        app.assert_nothing_lost()
    finally:
        app.stop()
        if pg_name:
            _drop_database(pg_name)


# --- strategies ----------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**53 - 2, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
texts = st.text(max_size=40) | st.sampled_from(["", " ", "x", "\x00", "\ud800", "a" * 4000])
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.sampled_from(["proposed", "executed", "PROPOSED", ""]) | json_values,
    "service": st.sampled_from(["checkout-api", "search", "batch", "nope"]) | texts,
    "action_type": st.sampled_from(["scale_down", "restart", "drop_database", "rollback"]) | texts,
    "summary": texts | json_values,
    "rationale": texts,
    "environment": st.sampled_from(["production", "staging"]) | texts | json_values,
    "confidence": st.floats(allow_nan=True, allow_infinity=True) | json_values,
    "evidence": st.lists(
        st.fixed_dictionaries(
            {
                "label": texts,
                "url": st.sampled_from(["https://a.example/x", "http://b", "ftp://c", "", "not a url"])
                | texts,
            }
        ),
        max_size=3,
    )
    | json_values,
    "executed_at": st.datetimes().map(lambda d: d.isoformat()) | texts | json_values,
    "callback_url": st.sampled_from(["https://agent.example/cb", "x"]) | json_values,
    "external_id": texts | json_values,
    "model": st.fixed_dictionaries({}, optional={"provider": texts, "name": texts, "version": texts})
    | json_values,
    "metadata": st.dictionaries(st.text(max_size=8), json_values, max_size=5) | json_values,
}
action_like = st.fixed_dictionaries(
    {},
    optional={**FIELD_VALUES, "unexpected": json_values},
)
# One or two fields of a valid action changed to something plausible: most of these are accepted,
# so the database, not only the validator, sees odd text (NUL, surrogates, long, unicode).
odd_text = st.text(min_size=1, max_size=60) | st.sampled_from(
    ["nul\x00here", "lone \ud800 surrogate", "\ufeff", "\U0001f680 rocket", "x" * 2999]
)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "summary": odd_text,
    "rationale": odd_text,
    "action_type": odd_text,
    "environment": odd_text,
    "external_id": odd_text,
    "kind": st.sampled_from(["proposed", "executed"]),
    "confidence": st.floats(min_value=0, max_value=1) | st.integers(0, 1),
    "metadata": st.dictionaries(odd_text, json_values, max_size=4),
    "model": st.fixed_dictionaries(
        {}, optional={"provider": odd_text, "name": odd_text, "version": odd_text}
    ),
    "evidence": st.lists(
        st.fixed_dictionaries(
            {
                "label": odd_text,
                "url": st.sampled_from(
                    ["https://a.example/x?q=1", "http://b", "https://\u00e9xample.com/\u00e9"]
                ),
            }
        ),
        max_size=3,
    ),
}
one_change = st.sampled_from(sorted(PLAUSIBLE)).flatmap(lambda k: PLAUSIBLE[k].map(lambda v: {k: v}))
mostly_valid = st.builds(
    lambda a, b: {**proposal(service="batch"), **a, **b}, one_change, st.just({}) | one_change
)
header_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=60)


def _headers(app: ThreadedApp, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.token}", "Content-Type": "application/json", **(extra or {})}


@FUZZ
@given(body=json_values | action_like | mostly_valid | mostly_valid)
def test_arbitrary_json_never_5xx_never_lost(served: ThreadedApp, body: Any) -> None:
    status, out = served.post(json.dumps(body).encode(), _headers(served))
    assert status in (201, 400, 403, 422), out


@FUZZ
@given(
    raw=st.binary(max_size=300)
    | st.builds(lambda b, cut: b[:cut], st.just(json.dumps(proposal()).encode()), st.integers(0, 300))
)
def test_arbitrary_bytes_never_5xx(served: ThreadedApp, raw: bytes) -> None:
    status, _ = served.post(raw, _headers(served))
    assert status in (201, 400)


@FUZZ
@given(
    content_type=header_text | st.sampled_from(["application/json", "application/problem+json"]),
    key=st.none() | header_text,
    authorization=st.none() | header_text,
    extra=header_text,
)
def test_arbitrary_headers_never_5xx(
    served: ThreadedApp, content_type: str, key: str | None, authorization: str | None, extra: str
) -> None:
    headers = _headers(served, {"Content-Type": content_type, "X-Anything": extra})
    if key is not None:
        headers["Idempotency-Key"] = key
    if authorization is not None:
        headers["Authorization"] = authorization
    body = json.dumps(proposal(service="batch", summary=f"headers {uuid.uuid4().hex}")).encode()
    status, out = served.post(body, headers)
    assert status in (201, 400, 401, 409, 415, 422), out
