"""A relay that died between Slack's answer and the done-mark: the row's lease lapses, and the next
relay looks for the post by its metadata (conversations.history / conversations.replies) before
posting. Found: recorded as sent with Slack's ts, not posted again. Not found: posted once."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.delivery.resume import OUTBOX_EVENT, tagged
from bot.demo.fakeslack import FakeSlack, Fault
from bot.policy.rules import Policy
from storage.models import OutboxMessage, SlackMessage
from tests import conftest
from tests.conftest import Running, proposal
from tests.integration.test_outbox import about, drained, restart, rows
from tests.policies import CALM, FAST
from tests.slack_helpers import until as _until

until = functools.partial(_until, within=20.0)


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Policy:
    return conftest.test_policy(getattr(request, "param", FAST))


async def crash_after_send(running: Running, ids: list[int]) -> None:
    """Put rows back as a relay killed after Slack answered leaves them: still "sending", lease
    over, no result (what a kill -9 between the post and the done-mark commit leaves behind)."""
    now = running.svc.clock()
    async with running.svc.db.session() as session:
        await session.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_(ids)).values(
            status="sending", claimed_until=now - timedelta(seconds=1), next_attempt_at=now - timedelta(seconds=5),
            result=None, sent_at=None))
        await session.commit()


async def test_a_post_slack_already_has_is_recorded_not_sent_again(running: Running,
                                                                    fake_slack: FakeSlack) -> None:
    status, body = await running.submit(restart("resume1"))
    assert status == 201, body
    await until(lambda: drained(running))
    posted = about(fake_slack.posts(), "resume1")
    assert {c.args["channel"] for c in posted} == {"U0SEARCH", "C0SEARCH"}  # the DM and the channel card
    for call in posted:  # each post says which outbox row it delivers
        assert call.args["metadata"]["event_type"] == OUTBOX_EVENT
    sent = [r for r in await rows(running, action_id=body["id"]) if r.method == "chat.postMessage"]
    assert len(sent) == 2
    before = {r.id or 0: r.result or {} for r in sent}

    await crash_after_send(running, list(before))
    await until(lambda: drained(running))

    assert len(about(fake_slack.posts(), "resume1")) == 2, "re-posted what Slack already had"
    looked = fake_slack.calls_to("conversations.history")
    assert {c.args["channel"] for c in looked} >= {"DU0SEARCH", "C0SEARCH"}  # the DM is read in its IM
    assert all(str(c.args.get("include_all_metadata")) in ("1", "true", "True") for c in looked)
    for row in await rows(running, action_id=body["id"]):
        if row.id in before:
            assert row.status == "done" and row.result is not None
            assert row.result["ts"] == before[row.id]["ts"] and row.result["found_after_crash"] is True
    async with running.svc.db.session() as session:  # the card can still be updated in place
        copies = (await session.execute(select(SlackMessage).where(
            col(SlackMessage.action_id) == body["id"]))).scalars().all()
    assert {c.ts for c in copies} == {r["ts"] for r in before.values()}


async def test_a_post_that_never_reached_slack_is_sent_once(running: Running, fake_slack: FakeSlack) -> None:
    status, body = await running.submit(restart("resume2"))
    assert status == 201, body
    await until(lambda: drained(running))
    sent = [r.id or 0 for r in await rows(running, action_id=body["id"]) if r.method == "chat.postMessage"]
    fake_slack.history.clear()  # as if the kill came before the post left

    await crash_after_send(running, sent)
    await until(lambda: drained(running))

    assert len(about(fake_slack.posts(), "resume2")) == 4  # the first two, and each once more
    assert len(fake_slack.calls_to("conversations.history")) >= 2


async def test_a_web_api_without_history_still_gets_the_post_once_more(running: Running,
                                                                      fake_slack: FakeSlack) -> None:
    """A Web API stand-in that only posts (conversations.history / .open answer 404, not JSON) can
    never say whether the post arrived: the message is sent again rather than held forever."""
    status, body = await running.submit(restart("resume5"))
    assert status == 201, body
    await until(lambda: drained(running))
    sent = [r.id or 0 for r in await rows(running, action_id=body["id"]) if r.method == "chat.postMessage"]
    for method in ("conversations.history", "conversations.open"):
        fake_slack.inject(Fault(method=method, status=404, times=None))

    await crash_after_send(running, sent)
    await until(lambda: drained(running))

    assert len(about(fake_slack.posts(), "resume5")) == 4  # each once more: at least once, never lost
    for row in await rows(running, action_id=body["id"]):
        assert row.status == "done"


async def test_history_is_read_only_for_a_lapsed_lease(running: Running, fake_slack: FakeSlack) -> None:
    """The ordinary path costs nothing extra: no history read when no lease lapsed."""
    for i in range(3):
        status, _ = await running.submit(restart(f"plain{i}"))
        assert status == 201
    await until(lambda: drained(running))
    assert len(fake_slack.posts()) >= 6
    assert fake_slack.calls_to("conversations.history") == []


@pytest.mark.parametrize("policy", [CALM.replace("remind_every: 10m", "remind_every: 1s")], indirect=True)
async def test_a_reminder_slack_already_has_is_found_in_the_channel_not_sent_again(
        running: Running, fake_slack: FakeSlack) -> None:
    """A reminder replies under its card and is also sent to the conversation (reply_broadcast): it
    is found in conversations.history, as Slack lists such replies there (`thread_broadcast`)."""
    status, body = await running.submit(proposal(summary="Scale checkout-api down resume3"))
    assert status == 201, body

    async def reminded() -> list[OutboxMessage]:
        return [r for r in await rows(running, action_id=body["id"], status="done")
                if r.payload.get("kind") == "reminder" and (r.result or {}).get("ts")]

    [reminder, *_] = await until(reminded)
    await crash_after_send(running, [reminder.id or 0])
    await until(lambda: _done_again(running, reminder.id or 0))

    carrying = [c for c in fake_slack.posts() if reminder.id in tagged({"metadata": c.args.get("metadata")})]
    assert len(carrying) == 1, "re-posted a reminder Slack already had"
    assert carrying[0].args["thread_ts"] and carrying[0].args["reply_broadcast"] is True
    [again] = await rows(running, id=reminder.id)
    assert again.result is not None and again.result.get("found_after_crash") is True


async def _done_again(running: Running, outbox_id: int) -> bool:
    [row] = await rows(running, id=outbox_id)
    return row.status == "done"


async def test_a_post_whose_answer_was_lost_is_looked_for_by_any_replica(running: Running,
                                                                       fake_slack: FakeSlack) -> None:
    """A post that got no answer (a timeout) may be in Slack, and the row is 'pending' for anyone to
    retry: its `last_error` says so, and whichever relay claims it next (here a fresh one, as after
    a restart) looks for it first instead of posting it again."""
    status, body = await running.submit(restart("resume4"))
    assert status == 201, body
    await until(lambda: drained(running))
    [dm] = [r for r in await rows(running, action_id=body["id"]) if r.channel_key == "U0SEARCH"
            and r.method == "chat.postMessage"]
    running.runtime.relay._resumed.clear()  # the relay that saw the timeout is gone
    async with running.svc.db.session() as session:
        await session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == dm.id).values(
            status="pending", next_attempt_at=running.svc.clock(), claimed_until=None, result=None,
            sent_at=None, last_error="no answer: TimeoutError"))
        await session.commit()
    await until(lambda: _done_again(running, dm.id or 0))

    assert len(about(fake_slack.posts("U0SEARCH"), "resume4")) == 1, "re-posted a post Slack already had"
    [again] = await rows(running, id=dm.id)
    assert again.result is not None and again.result.get("found_after_crash") is True
