"""The agents' HTTP API as SPEC describes it, over real HTTP, on SQLite and PostgreSQL.

Every JSON answer is checked against the server's own OpenAPI document (`openapi_check`), so the
document cannot drift from what the server does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from sqlalchemy import func, select
from sqlmodel import col

from bot.api.openapi import document
from bot.demo.fakeslack import FakeSlack
from storage.models import Action, LedgerEntry, OutboxMessage
from storage.queries import agents
from tests.conftest import Running, proposal

DOC = document("http://test")
validate_spec(DOC)


def openapi_check(path: str, method: str, status: int, body: Any) -> None:
    """Validate one answer against the OpenAPI document: the status is documented, the body fits."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, undocumented"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": DOC["components"]})
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, f"{method} {path} {status} does not match the OpenAPI document: {errors[0]}"


async def post(
    running: Running,
    body: Any,
    *,
    raw: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST /v1/actions; checks the answer against the OpenAPI document."""
    hdrs = {
        "Authorization": f"Bearer {token or running.token}",
        "Content-Type": "application/json",
        **(headers or {}),
    }
    data = raw if raw is not None else json.dumps(body).encode()
    async with running.http.post(f"{running.url}/v1/actions", data=data, headers=hdrs) as resp:
        assert resp.content_type == "application/json"
        out = await resp.json()
    openapi_check("/v1/actions", "post", resp.status, out)
    return resp.status, out


async def get(running: Running, path: str, template: str, token: str | None = None) -> tuple[int, Any]:
    status, out = await running.get(path, token=token)
    openapi_check(template, "get", status, out)
    return status, out


async def count(running: Running, model: Any) -> int:
    async with running.svc.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


# --- POST /v1/actions: the happy paths ---------------------------------------------------------


async def test_proposal_answers_201_with_id_status_mode_owner_links(running: Running) -> None:
    status, body = await post(running, proposal())
    assert status == 201
    assert isinstance(body["id"], int)
    assert (body["status"], body["mode"], body["owner"], body["kind"]) == (
        "pending",
        "approve",
        "U0OWNER",
        "proposed",
    )
    assert body["links"]["self"] == f"{running.url}/v1/actions/{body['id']}"
    assert body["environment"] == "production" and body["agent"] == "remediator"
    assert body["escalation"]["level"] == "owner" and body["decision"] is None
    status, again = await get(running, f"/v1/actions/{body['id']}", "/v1/actions/{id}")
    assert status == 200 and again["id"] == body["id"] and again["summary"] == proposal()["summary"]
    assert again["evidence"] == [{"label": "CPU dashboard", "url": "https://grafana.example.com/d/cpu"}]


async def test_every_optional_field_is_stored_and_read_back(running: Running) -> None:
    body = proposal(
        kind="executed",
        environment="staging",
        action_type="restart",
        confidence=0,
        executed_at="2026-01-02T03:04:05Z",
        callback_url="https://agent.example.com/hook",
        external_id="run-42",
        model={"provider": "acme", "name": "ops-llm", "version": "2026-01"},
        metadata={"ticket": "INC-7", "pods": [1, 2, 3], "nested": {"ok": True, "ratio": 0.5, "none": None}},
    )
    status, out = await post(running, body)
    assert status == 201 and out["mode"] == "acknowledge" and out["status"] == "pending"
    _, got = await get(running, f"/v1/actions/{out['id']}", "/v1/actions/{id}")
    assert got["executed_at"] == "2026-01-02T03:04:05Z"
    assert got["confidence"] == 0 and got["environment"] == "staging"
    assert got["model"] == body["model"] and got["metadata"] == body["metadata"]
    assert got["callback_url"] == "https://agent.example.com/hook" and got["external_id"] == "run-42"


async def test_autonomous_action_is_recorded_with_policy_accountability(running: Running) -> None:
    status, out = await post(running, proposal(service="search"))
    assert status == 201 and out["status"] == "recorded" and out["mode"] == "autonomous"
    assert out["decision"]["accountability"] == "policy" and out["decision"]["via"] == "policy"
    # The catch-all is the policy file's fourth rule, as `countersign policy check` numbers it.
    assert "under rule 4:" in out["decision"]["reason"] and out["rule"]["index"] == 3


async def test_an_optional_field_sent_as_null_takes_its_default(running: Running) -> None:
    """A client that serialises None: `environment` null is production, `evidence` null is none."""
    status, out = await post(running, proposal(environment=None, evidence=None, confidence=None))
    assert status == 201, out
    _, got = await get(running, f"/v1/actions/{out['id']}", "/v1/actions/{id}")
    assert got["environment"] == "production" and got["evidence"] == [] and got["confidence"] is None


# --- POST /v1/actions: bad input names the field -----------------------------------------------


@pytest.mark.parametrize("field", ["kind", "service", "action_type", "summary", "rationale"])
async def test_a_missing_required_field_is_named(running: Running, field: str) -> None:
    body = proposal()
    del body[field]
    status, out = await post(running, body)
    assert status == 400 and out["error"]["code"] == "invalid_request"
    assert {"field": field, "message": "required"} in out["error"]["fields"]
    assert field in out["error"]["message"]


DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(40):
    _node["d"] = {}
    _node = _node["d"]

BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("kind", {"kind": "maybe"}, "kind"),
    ("empty summary", {"summary": "   "}, "summary"),
    ("summary not text", {"summary": 12}, "summary"),
    ("confidence above 1", {"confidence": 1.5}, "confidence"),
    ("confidence below 0", {"confidence": -0.01}, "confidence"),
    ("confidence as text", {"confidence": "high"}, "confidence"),
    ("confidence as boolean", {"confidence": True}, "confidence"),
    ("confidence huge integer", {"confidence": 10**400}, "confidence"),
    ("evidence without url", {"evidence": [{"label": "x"}]}, "evidence.0.url"),
    (
        "evidence with a bad url",
        {"evidence": [{"label": "x", "url": "javascript:alert(1)"}]},
        "evidence.0.url",
    ),
    (
        "evidence with an extra key",
        {"evidence": [{"label": "x", "url": "https://a.b", "n": 1}]},
        "evidence.0.n",
    ),
    ("evidence not a list", {"evidence": {"label": "x"}}, "evidence"),
    ("executed_at on a proposal", {"executed_at": "2026-01-01T00:00:00Z"}, "executed_at"),
    ("executed_at garbage", {"kind": "executed", "executed_at": "yesterday"}, "executed_at"),
    (
        "executed_at out of range",
        {"kind": "executed", "executed_at": "0001-01-01T00:00:00+01:00"},
        "executed_at",
    ),
    ("model unknown key", {"model": {"provider": "x", "weights": 1}}, "model.weights"),
    ("metadata not an object", {"metadata": [1, 2]}, "metadata"),
    ("metadata huge integer", {"metadata": {"n": 2**64}}, "metadata"),
    ("metadata too deep", {"metadata": DEEP}, "metadata"),
    ("unknown field", {"colour": "red"}, "colour"),
    ("NUL in summary", {"summary": "bad\x00byte"}, "summary"),
    ("NUL in a metadata key", {"metadata": {"k\x00": 1}}, "metadata"),
    ("NUL in metadata", {"metadata": {"a": ["ok", "no\x00"]}}, "metadata.a.1"),
    ("callback_url not a URL", {"callback_url": "not a url"}, "callback_url"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
async def test_a_bad_field_is_named_and_nothing_is_stored(
    running: Running, case: str, change: dict[str, Any], field: str
) -> None:
    status, out = await post(running, proposal(**change))
    assert status == 400, out
    assert field in [f["field"] for f in out["error"]["fields"]], out
    assert field in out["error"]["message"]
    assert await count(running, Action) == 0


RAW_BODIES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "invalid_json"),
    ("not JSON", b"{kind: proposed}", "invalid_json"),
    ("NaN", json.dumps(proposal()).replace("0.82", "NaN").encode(), "invalid_json"),
    ("Infinity", json.dumps(proposal()).replace("0.82", "-Infinity").encode(), "invalid_json"),
    ("overflowing float", json.dumps(proposal()).replace("0.82", "1e400").encode(), "invalid_request"),
    ("integer of 5000 digits", json.dumps(proposal()).replace("0.82", "9" * 5000).encode(), "invalid_json"),
    ("nested 100k deep", b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    ("bad UTF-8", json.dumps(proposal()).encode().replace(b"Scale", b"Sc\xff\xfele"), "invalid_json"),
    ("lone surrogate", json.dumps(proposal()).replace("Scale", "\\ud800Scale").encode(), "invalid_request"),
    ("array", b"[]", "invalid_request"),
    ("string", b'"proposed"', "invalid_request"),
    ("number", b"42", "invalid_request"),
    ("null", b"null", "invalid_request"),
]


@pytest.mark.parametrize(("case", "raw", "code"), RAW_BODIES, ids=[c[0] for c in RAW_BODIES])
async def test_a_body_that_is_not_an_action_is_400(
    running: Running, case: str, raw: bytes, code: str
) -> None:
    status, out = await post(running, None, raw=raw)
    assert (status, out["error"]["code"]) == (400, code), out
    assert await count(running, Action) == 0


@pytest.mark.parametrize("ctype", ["text/plain", "multipart/form-data; boundary=x", "application/xml"])
async def test_a_body_that_is_not_json_by_content_type_is_415(running: Running, ctype: str) -> None:
    status, out = await post(
        running, None, raw=json.dumps(proposal()).encode(), headers={"Content-Type": ctype}
    )
    assert status == 415 and "Content-Type" in out["error"]["message"]


async def test_curl_default_content_type_and_charset_are_accepted(running: Running) -> None:
    for ctype in ("application/x-www-form-urlencoded", "application/json; charset=utf-8"):
        status, _ = await post(running, proposal(), headers={"Content-Type": ctype})
        assert status == 201


# --- 413 -----------------------------------------------------------------------------------------

BIG = json.dumps(proposal(metadata={"blob": "x" * (1024 * 1024)})).encode()


async def test_a_body_over_1_mib_is_413(running: Running) -> None:
    status, out = await post(running, None, raw=BIG)
    assert status == 413 and out["error"]["code"] == "body_too_large"


async def test_a_chunked_body_over_1_mib_is_413(running: Running) -> None:
    async def chunks() -> Any:
        for i in range(0, len(BIG), 64 * 1024):
            yield BIG[i : i + 64 * 1024]

    headers = {"Authorization": f"Bearer {running.token}", "Content-Type": "application/json"}
    async with running.http.post(f"{running.url}/v1/actions", data=chunks(), headers=headers) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"
    assert await count(running, Action) == 0


async def raw_http(running: Running, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Speak HTTP/1.1 on a socket, to send what a well-behaved client library would not."""
    host, port = running.server.host, running.server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + body)
        await writer.drain()
        status_line = await reader.readline()
        rest = await asyncio.wait_for(reader.read(65536), 10)
        return int(status_line.split()[1]), rest
    finally:
        writer.close()


async def test_a_lying_content_length_over_1_mib_is_413_without_waiting_for_the_body(
    running: Running,
) -> None:
    head = (
        f"POST /v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {running.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    status, rest = await raw_http(running, head, b'{"kind": "proposed"')
    assert status == 413 and b"body_too_large" in rest


async def test_a_content_length_shorter_than_the_body_is_400_and_stores_nothing(running: Running) -> None:
    # The first 10 bytes are the body (not JSON); the rest is a malformed next request.
    body = json.dumps(proposal()).encode()
    head = (
        f"POST /v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {running.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n"
    ).encode()
    status, _ = await raw_http(running, head, body)
    assert status == 400
    assert await count(running, Action) == 0


# --- 401, 403, 422 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer nope", "Bearer cs_\u00e9t\u00e9"],
)
async def test_a_missing_or_bad_token_is_401(running: Running, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with running.http.post(f"{running.url}/v1/actions", json=proposal(), headers=headers) as resp:
        out = await resp.json()
    assert resp.status == 401 and out["error"]["code"] == "unauthorized"
    openapi_check("/v1/actions", "post", 401, out)
    status, _ = await get(running, "/v1/actions", "/v1/actions", token="cs_wrong")
    assert status == 401


async def test_a_revoked_token_is_401(running: Running) -> None:
    token, _ = await running.add_agent("short-lived")
    assert (await post(running, proposal(), token=token))[0] == 201
    async with running.svc.db.session() as session:
        await agents.revoke(session, "short-lived")
        await session.commit()
    status, out = await post(running, proposal(), token=token)
    assert status == 401 and "revoked" in out["error"]["message"]
    assert (await get(running, "/v1/actions", "/v1/actions", token=token))[0] == 401


async def test_forbidden_is_403_stored_nowhere_and_reported_to_the_service_channel(
    running: Running, fake_slack: FakeSlack
) -> None:
    status, out = await post(running, proposal(action_type="drop_database", summary="Drop the orders table"))
    assert status == 403 and out["error"]["code"] == "forbidden"
    assert "drop_database" in out["error"]["message"]
    assert await count(running, Action) == 0
    async with running.svc.db.session() as session:
        events = (await session.execute(select(col(LedgerEntry.event)))).scalars().all()
    assert "action.forbidden" in events
    report = await fake_slack.wait_for(lambda: fake_slack.posts("C0CHECKOUT"))
    assert "drop_database" in json.dumps(report[0].args)


@pytest.mark.parametrize(("over", "status", "mode"), [
    ({"environment": "Production"}, 201, "approve"),  # was autonomous: the catch-all rule
    ({"environment": "staging", "action_type": "Restart"}, 201, "acknowledge"),  # was autonomous
    ({"action_type": "DROP_DATABASE", "environment": "staging"}, 403, None),  # was autonomous
])
async def test_rules_match_environment_and_action_type_without_regard_to_case(
        running: Running, over: dict[str, str], status: int, mode: str | None) -> None:
    got, out = await post(running, proposal(**over))
    assert got == status, out
    if mode is not None:
        assert out["mode"] == mode and out["environment"] == over["environment"]  # stored as sent


async def test_unknown_service_is_422_naming_the_service(running: Running) -> None:
    status, out = await post(running, proposal(service="nope-api"))
    assert (
        status == 422 and out["error"]["code"] == "unknown_service" and "nope-api" in out["error"]["message"]
    )
    assert await count(running, Action) == 0


# --- GET /v1/actions/{id} and GET /v1/actions --------------------------------------------------


@pytest.mark.parametrize("action_id", ["999999", "abc", "-1", "1" * 40, "\u0661"])
async def test_an_unknown_action_is_404(running: Running, action_id: str) -> None:
    status, out = await running.get(f"/v1/actions/{action_id}")
    assert status == 404 and out["error"]["code"] == "not_found"
    openapi_check("/v1/actions/{id}", "get", 404, out)


@pytest.mark.parametrize("action_id", ["abc", "\u00b2", "\u0661"])
async def test_an_id_that_is_not_a_plain_number_is_404_on_every_action_route(running: Running,
                                                                              action_id: str) -> None:
    """"²" passed str.isdigit() but not int() (a 500 on the long poll), and "١" (Arabic-Indic one)
    read as action 1 there: every route reads the path's id the same way."""
    await post(running, proposal())
    status, out = await running.get(f"/v1/actions/{action_id}/decision")
    assert status == 404 and out["error"]["code"] == "not_found", out
    async with running.http.post(f"{running.url}/v1/actions/{action_id}/result", json={"result": "succeeded"},
                                 headers={"Authorization": f"Bearer {running.token}"}) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_listing_walks_every_action_once_newest_first(running: Running) -> None:
    made = []
    for i in range(11):
        service = ["checkout-api", "search", "batch"][i % 3]
        made.append((await post(running, proposal(service=service, summary=f"action {i}")))[1])
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"/v1/actions?limit=3{'&cursor=' + cursor if cursor else ''}"
        status, page = await get(running, query, "/v1/actions")
        assert status == 200 and len(page["items"]) <= 3
        seen += [a["id"] for a in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted((a["id"] for a in made), reverse=True) and pages == 4

    _, pending = await get(running, "/v1/actions?status=pending", "/v1/actions")
    assert {a["service"] for a in pending["items"]} == {"checkout-api"} and len(pending["items"]) == 4
    _, search = await get(running, "/v1/actions?service=search&status=recorded&limit=2", "/v1/actions")
    assert [a["summary"] for a in search["items"]] == ["action 10", "action 7"]
    _, rest = await get(running, f"/v1/actions?service=search&cursor={search['next_cursor']}", "/v1/actions")
    assert [a["summary"] for a in rest["items"]] == ["action 4", "action 1"] and rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("cursor=abc", "cursor"),
        ("status=done", "status"),
        ("service=check%00out-api", "service"),  # a NUL: a 500 on PostgreSQL
    ],
)
async def test_bad_list_parameters_are_400(running: Running, query: str, field: str) -> None:
    status, out = await get(running, f"/v1/actions?{query}", "/v1/actions")
    assert status == 400 and out["error"]["fields"][0]["field"] == field


# --- documents, health, metrics ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/openapi.json"])
async def test_openapi_document_is_served_without_a_token_and_is_valid(running: Running, path: str) -> None:
    async with running.http.get(f"{running.url}{path}") as resp:
        served = await resp.json()
    assert resp.status == 200
    validate_spec(served)
    assert set(served["paths"]) >= {"/v1/actions", "/v1/actions/{id}", "/healthz", "/metrics"}
    assert served["components"]["schemas"]["ActionIn"]["required"] == [
        "kind",
        "service",
        "action_type",
        "summary",
        "rationale",
    ]


async def test_healthz_and_metrics(running: Running) -> None:
    await post(running, proposal())
    await post(running, proposal(action_type="drop_database"))
    async with running.http.get(f"{running.url}/healthz") as resp:
        health = await resp.json()
    assert (
        resp.status == 200 and health["status"] in ("ok", "degraded") and health["checks"]["database"] == "ok"
    )
    async with running.http.get(f"{running.url}/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert 'countersign_actions_submitted_total{kind="proposed",mode="approve"} 1.0' in text
    assert 'countersign_http_requests_total{method="POST",route="/v1/actions",status="403"} 1.0' in text


async def test_methods_and_paths_that_do_not_exist_answer_json(running: Running) -> None:
    headers = {"Authorization": f"Bearer {running.token}"}
    async with running.http.delete(f"{running.url}/v1/actions", headers=headers) as resp:
        assert resp.status == 405 and "error" in await resp.json()
    async with running.http.get(f"{running.url}/v1/nothing", headers=headers) as resp:
        assert resp.status == 404 and "error" in await resp.json()


async def test_a_201_is_in_the_database_with_its_first_page_queued(running: Running) -> None:
    status, out = await post(running, proposal())
    assert status == 201
    async with running.svc.db.session() as session:
        stored = await session.get(Action, out["id"])
        pages = (
            await session.execute(select(OutboxMessage).where(OutboxMessage.action_id == out["id"]))
        ).all()
    assert stored is not None and stored.status == "pending" and pages


async def test_client_disconnect_does_not_break_the_server(running: Running) -> None:
    head = (
        f"POST /v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {running.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(running.server.host, running.server.port)
    writer.write(head + b'{"kind":')
    await writer.drain()
    writer.close()
    try:
        async with running.http.get(f"{running.url}/healthz") as resp:
            assert resp.status == 200
    except aiohttp.ClientError:  # pragma: no cover - a failure of the server, not of the test
        pytest.fail("server died after a client hung up mid-body")
