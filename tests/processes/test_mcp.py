"""The MCP tools, driven by the mcp package's own client: in process, and over stdio against a real
`countersign mcp` subprocess, both talking HTTP to the running app (fake Slack, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from bot.actions.decisions import respond
from bot.demo.fakeslack import FakeSlack
from countersign_client import CountersignClient, CountersignError
from countersign_client.mcp_server import build_server
from tests.conftest import Running

ROOT = Path(__file__).resolve().parents[2]
PROPOSAL = {"service": "checkout-api", "action_type": "rollback", "summary": "Roll back checkout-api to v811",
            "rationale": "5xx at 12% since deploy 812", "confidence": 0.9,
            "evidence": [{"label": "error rate", "url": "https://grafana.example.com/d/5xx"}]}


def in_process(running: Running) -> Client:
    return Client(build_server(lambda: CountersignClient(running.url, running.token, backoff=0.01)))


def over_stdio(running: Running) -> Client:
    """`countersign mcp` as an MCP host launches it: the installed console script, config from env."""
    script = Path(sys.executable).with_name("countersign")
    command = str(script) if script.exists() else (shutil.which("countersign") or "countersign")
    env = {"COUNTERSIGN_URL": running.url, "COUNTERSIGN_TOKEN": running.token,
           "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    return Client(StdioServerParameters(command=command, args=["mcp"], env=env, cwd=str(ROOT)))


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None, result
    return result.structured_content


async def owner_paged(running: Running, fake_slack: FakeSlack) -> int:
    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER"))
    _, page = await running.get("/v1/actions?status=pending")
    return int(page["items"][0]["id"])


async def test_request_approval_waits_for_the_owners_click(running: Running, fake_slack: FakeSlack) -> None:
    async with in_process(running) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"request_approval", "report_action", "get_decision"} <= set(tools)
        assert "rationale" in tools["request_approval"].input_schema["required"]
        waiting = asyncio.create_task(call(client, "request_approval", {**PROPOSAL, "wait_seconds": 20}))
        action_id = await owner_paged(running, fake_slack)
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await running.interact({
            "type": "block_actions", "user": {"id": "U0OWNER", "name": "olive"}, "team": {"id": "T1"},
            "actions": [{"action_id": "approve", "value": str(action_id), "type": "button", "block_id": "b"}],
            "response_url": fake_slack.response_url(), "trigger_id": "t1"})
        decision = await asyncio.wait_for(waiting, 10)
    assert decision["action_id"] == action_id and decision["status"] == "approved"
    assert decision["may_proceed"] is True and decision["decided_by"] == "olive"
    assert "APPROVED" in decision["message"]


async def test_pending_then_get_decision_sees_the_denial(running: Running, fake_slack: FakeSlack) -> None:
    async with in_process(running) as client:
        first = await call(client, "request_approval",
                           {**PROPOSAL, "wait_seconds": 0.2, "request_key": "k-1"})
        assert first["status"] == "pending" and first["may_proceed"] is False
        assert "get_decision" in first["message"]
        again = await call(client, "request_approval", {**PROPOSAL, "wait_seconds": 0, "request_key": "k-1"})
        assert again["action_id"] == first["action_id"]  # a retried tool call does not page twice
        await respond(running.svc, first["action_id"], user_id="U0OWNER", user_name="olive",
                      response="override", via="api", reason="freeze until Monday")
        decided = await call(client, "get_decision", {"action_id": first["action_id"], "wait_seconds": 5})
    assert decided["status"] == "denied" and decided["may_proceed"] is False
    assert decided["reason"] == "freeze until Monday" and "Do not proceed" in decided["message"]
    await asyncio.sleep(0.3)
    assert len(fake_slack.posts("U0OWNER")) == 1


async def test_stdio_subprocess_reports_refuses_and_errors(running: Running) -> None:
    async with over_stdio(running) as client:
        report = await call(client, "report_action", {
            "service": "batch", "action_type": "scale_up", "summary": "Scaled batch workers 4 -> 8",
            "rationale": "queue depth 5k", "metadata": {"from": 4, "to": 8}})
        assert report["status"] == "recorded" and report["policy_violation"] is False
        violation = await call(client, "report_action", {**PROPOSAL, "summary": "Rolled back checkout-api"})
        assert violation["policy_violation"] is True and "POLICY VIOLATION" in violation["message"]
        refused = await call(client, "request_approval", {**PROPOSAL, "action_type": "drop_database"})
        assert refused["status"] == "refused" and refused["may_proceed"] is False
        unknown = await client.call_tool("request_approval", {**PROPOSAL, "service": "nope"})
        assert unknown.is_error and "unknown_service" in str(unknown.content)
    _, stored = await running.get(f"/v1/actions/{report['action_id']}")
    assert stored["kind"] == "executed" and stored["metadata"] == {"from": 4, "to": 8}
    assert stored["agent"] == "remediator"


MODEL = {"provider": "anthropic", "name": "claude-sonnet-4", "version": "20250514"}
OPTIONAL = ("callback_url", "external_id", "model", "metadata")


async def test_stdio_tools_carry_every_optional_field_of_the_api(running: Running) -> None:
    """model, external_id, callback_url and metadata, as POST /v1/actions takes them, through both
    submitting tools of a real `countersign mcp` (they were not tool parameters: an LLM agent could
    not say which model version made the call), checked by the same rules as the API."""
    async with over_stdio(running) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"request_approval", "get_decision", "report_action", "report_result"}
        for name in ("request_approval", "report_action"):
            assert set(OPTIONAL) <= set(tools[name].input_schema["properties"]), name
        asked = await call(client, "request_approval", {
            **PROPOSAL, "wait_seconds": 0, "model": MODEL, "external_id": "incident-4711/step-2",
            "callback_url": "https://agent.example.com/decided", "metadata": {"run": 7}})
        reported = await call(client, "report_action", {
            "service": "batch", "action_type": "scale_up", "summary": "Scaled batch workers 4 -> 8",
            "rationale": "queue depth 5k", "model": {"name": "gpt-4.1"}, "external_id": "run-88",
            "callback_url": "https://agent.example.com/acked"})
        refusals = {field: await client.call_tool("request_approval", {**PROPOSAL, "wait_seconds": 0, **bad})
                    for field, bad in (("callback_url", {"callback_url": "not a url"}),
                                       ("external_id", {"external_id": "x" * 201}),
                                       ("model", {"model": {**MODEL, "temperature": "0.2"}}))}
    _, stored = await running.get(f"/v1/actions/{asked['action_id']}")
    assert stored["model"] == MODEL and stored["external_id"] == "incident-4711/step-2"
    assert stored["callback_url"] == "https://agent.example.com/decided" and stored["metadata"] == {"run": 7}
    _, stored = await running.get(f"/v1/actions/{reported['action_id']}")
    assert stored["kind"] == "executed"  # the API keeps a model's missing keys as null, as for its own POST
    assert stored["model"] == {"provider": None, "name": "gpt-4.1", "version": None}
    assert stored["external_id"] == "run-88" and stored["callback_url"] == "https://agent.example.com/acked"
    for field, refused in refusals.items():
        assert refused.is_error and field in str(refused.content), (field, refused.content)
    _, page = await running.get("/v1/actions")
    assert len(page["items"]) == 2, "a refused call submitted nothing"


def test_cli_refuses_to_start_without_a_token() -> None:
    from typer.testing import CliRunner

    from bot.cli.main import app

    result = CliRunner().invoke(app, ["mcp"], env={"COUNTERSIGN_TOKEN": ""})
    assert result.exit_code == 2 and "COUNTERSIGN_TOKEN" in result.output


@pytest.mark.parametrize("url", ["localhost:3000", "countersign.internal", "ftp://countersign.internal", "http://"])
def test_cli_refuses_to_start_with_a_url_that_is_not_http(url: str) -> None:
    """Without http(s):// every tool call failed with a bare "Error executing tool request_approval"
    (aiohttp's NonHttpUrlClientError, whose text the MCP server keeps to itself) and a traceback."""
    from typer.testing import CliRunner

    from bot.cli.main import app

    result = CliRunner().invoke(app, ["mcp"], env={"COUNTERSIGN_TOKEN": "cs_x", "COUNTERSIGN_URL": url})
    assert result.exit_code == 2, result.output
    assert "must be like http://localhost:3000" in result.output and repr(url) in result.output
    with pytest.raises(CountersignError, match="COUNTERSIGN_URL"):
        CountersignClient(url, "cs_x")


async def test_report_result_names_its_three_results_in_the_schema(running: Running) -> None:
    """An LLM reads the schema: `result` was a free string, and a wrong word took a round trip to learn."""
    async with in_process(running) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = tools["report_result"].input_schema["properties"]["result"]
        assert result.get("enum") == ["succeeded", "failed", "rolled_back"], result
        refused = await client.call_tool("report_result", {"action_id": 1, "result": "worked"})
    assert refused.is_error and "'succeeded', 'failed' or 'rolled_back'" in str(refused.content)


@pytest.mark.parametrize("status", ["approved", "recorded"])
def test_decision_says_proceed_only_when_allowed(status: str) -> None:
    from countersign_client.mcp_server import decision_of

    base = {"id": 1, "owner": "U0OWNER", "links": {"self": "/v1/actions/1"}}
    assert decision_of({**base, "status": status, "decision": {"by": {"name": "o"}}}).may_proceed
    for other in ("denied", "pending"):
        assert not decision_of({**base, "status": other, "decision": None}).may_proceed
    expired = {"outcome": "denied", "by": {"name": "leadership"}}
    assert not decision_of({**base, "status": "expired", "decision": expired}).may_proceed
    approved = {**expired, "outcome": "approved"}  # the policy's on_timeout: approve
    assert decision_of({**base, "status": "expired", "decision": approved}).may_proceed
