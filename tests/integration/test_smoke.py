from bot.demo.fakeslack import FakeSlack
from tests.conftest import Running, proposal


async def test_proposal_pages_owner_and_approve_click_decides(running: Running, fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal())
    assert status == 201, body
    assert body["status"] == "pending" and body["mode"] == "approve" and body["owner"] == "U0OWNER"
    dm = await fake_slack.wait_for(lambda: fake_slack.posts("U0OWNER"))
    assert "Scale checkout-api" in dm[0].args["text"]
    await fake_slack.wait_for(lambda: fake_slack.posts("C0CHECKOUT"))
    resp = await running.interact({
        "type": "block_actions", "user": {"id": "U0OWNER", "name": "olive"}, "team": {"id": "T1"},
        "actions": [{"action_id": "approve", "value": str(body["id"]), "type": "button", "block_id": "b"}],
        "response_url": fake_slack.response_url(), "trigger_id": "t1",
    })
    assert resp.status == 200
    async def decided() -> bool:
        _, got = await running.get(f"/v1/actions/{body['id']}")
        return got["status"] == "approved"
    import asyncio
    for _ in range(100):
        if await decided():
            break
        await asyncio.sleep(0.05)
    _, got = await running.get(f"/v1/actions/{body['id']}")
    assert got["status"] == "approved"
    assert got["decision"]["by"]["slack_user_id"] == "U0OWNER"
    assert got["decision"]["accountability"] == "explicit"
    await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update"))
