"""docs/agents.md's examples, run as a new user runs them: each code block as its own Python
process with COUNTERSIGN_URL / COUNTERSIGN_TOKEN set, against the running app and the fake Slack,
with the owner answering in (fake) Slack. If the docs drift from the client, these fail."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from bot.actions.decisions import respond
from bot.demo.fakeslack import FakeSlack
from tests.conftest import Running

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "agents.md").read_text()


def example(heading: str) -> str:
    """The first ```python block under the `## heading`."""
    section = DOC.split(f"## {heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, heading
    return match.group(1)


async def start(running: Running, code: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "COUNTERSIGN_URL": running.url, "COUNTERSIGN_TOKEN": running.token,
           "PYTHONPATH": str(ROOT)}
    pipe = asyncio.subprocess.PIPE
    return await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env, cwd=str(ROOT),
                                                stdout=pipe, stderr=pipe)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def paged(running: Running, fake_slack: FakeSlack) -> int:
    await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER"), timeout=20)
    _, page = await running.get("/v1/actions?status=pending")
    return int(page["items"][0]["id"])


async def test_ten_line_agent_runs_once_the_owner_approves(running: Running, fake_slack: FakeSlack) -> None:
    code = example("A ten-line agent")
    assert len(code.strip().splitlines()) <= 10
    proc = await start(running, code)
    action_id = await paged(running, fake_slack)
    dm = fake_slack.posts("U0OWNER")[0].args["text"]
    assert "Scale checkout-api from 12 to 8 pods" in dm
    await asyncio.sleep(0.3)
    assert proc.returncode is None  # still waiting for the human
    await running.interact({
        "type": "block_actions", "user": {"id": "U0OWNER", "name": "olive"}, "team": {"id": "T1"},
        "actions": [{"action_id": "approve", "value": str(action_id), "type": "button", "block_id": "b"}],
        "response_url": fake_slack.response_url(), "trigger_id": "t1"})
    code_, output = await finish(proc)
    assert code_ == 0 and "approved: scaling checkout-api to 8 pods" in output, output


async def test_remediation_script_stops_when_denied(running: Running, fake_slack: FakeSlack) -> None:
    proc = await start(running, example("A remediation script that proposes a rollback and waits"))
    action_id = await paged(running, fake_slack)
    await respond(running.svc, action_id, user_id="U0OWNER", user_name="olive", response="override",
                  via="api", reason="v812 carries the tax fix; roll forward")
    code, output = await finish(proc)
    assert code == 1 and "not rolling back" in output and "roll forward" in output, output
    _, action = await running.get(f"/v1/actions/{action_id}")
    assert action["confidence"] == 0.86 and len(action["evidence"]) == 2
    assert action["model"]["provider"] == "anthropic"


async def test_autoscaler_reports_what_it_did(running: Running) -> None:
    code, output = await finish(await start(running, example("An autoscaler that reports what it did")))
    assert code == 0, output
    _, page = await running.get("/v1/actions?service=search")
    reported = page["items"][0]
    assert reported["kind"] == "executed" and reported["status"] == "recorded"
    assert reported["summary"] == "Scaled search from 4 to 8 replicas"
    assert reported["metadata"]["result"] == "succeeded"
