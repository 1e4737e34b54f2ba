"""The agents' side of results: `report_result`, `@requires_approval` reporting by itself (an exception
means `failed`), `pauses()`, and the MCP `report_result` tool, against the running app."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from countersign_client import CountersignClient, requires_approval
from countersign_client.errors import ApiError
from countersign_client.mcp_server import build_server
from tests.conftest import Running

AUTONOMOUS: dict[str, Any] = {"service": "batch", "action_type": "scale_up", "rationale": "queue depth 5k"}


async def test_requires_approval_reports_success_and_failure_by_itself(running: Running) -> None:
    async with CountersignClient(running.url, running.token, backoff=0.01) as cs:
        @requires_approval(summary="Scale batch up", client=cs, **AUTONOMOUS)
        async def works() -> str:
            return "done"

        @requires_approval(summary="Scale batch up again", client=cs, **AUTONOMOUS)
        async def breaks() -> None:
            raise RuntimeError("quota exceeded")

        assert await works() == "done"
        with pytest.raises(RuntimeError, match="quota exceeded"):
            await breaks()
        items = (await cs.list_actions())["items"]
        results = {a["summary"]: (await cs.get(a["id"]))["result"] for a in items}
        assert results["Scale batch up"]["result"] == "succeeded"
        assert results["Scale batch up again"]["result"] == "failed"
        assert "RuntimeError: quota exceeded" in results["Scale batch up again"]["detail"]
        first = items[0]["id"]
        again = await cs.report_result(first, "failed", detail="RuntimeError: quota exceeded")
        assert again["result"] == "failed"  # the same body again: the same answer
        with pytest.raises(ApiError) as conflict:
            await cs.report_result(first, "rolled_back")
        assert conflict.value.status == 409
        assert await cs.pauses() == []


async def test_the_mcp_tool_reports_a_result(running: Running) -> None:
    status, action = await running.submit({"kind": "executed", "summary": "Scaled batch", **AUTONOMOUS})
    assert status == 201
    async with Client(build_server(lambda: CountersignClient(running.url, running.token, backoff=0.01))) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "report_result" in tools
        result = await client.call_tool("report_result", {"action_id": action["id"], "result": "rolled_back",
                                                          "detail": "p99 doubled"})
        assert not result.is_error, result.content
        bad = await client.call_tool("report_result", {"action_id": action["id"] + 1000, "result": "failed"})
        assert bad.is_error and "404" in str(bad.content)
    _, stored = await running.get(f"/v1/actions/{action['id']}")
    assert stored["result"]["result"] == "rolled_back" and stored["result"]["detail"] == "p99 doubled"
