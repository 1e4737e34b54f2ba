"""`/ai-actions` with what people really type: an id with too many digits, a pasted wall of text, a
stats window in hours. Each gets a 200 and an ephemeral answer that says what is wrong (the request
guard answered 400 to the first two, which Slack shows as a bare error; `stats 24h` answered 7d)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.integration.test_commands import SLOW, dump, slash
from tests.socket_transport import TRANSPORTS

HUGE = "9" * 20  # more digits than any action id (a BIGINT) can have


@pytest.fixture
def policy() -> Policy:
    return make_policy(SLOW)  # minute-scale escalation: moving the clock by days expires nothing mid-test


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


HOPELESS = [  # (test id, what was typed, what the answer says)
    ("show-20-digits", f"show {HUGE}", f"There is no action {HUGE}"),
    ("show-hash-20-digits", f"show #{HUGE}", f"There is no action {HUGE}"),
    ("approve-20-digits", f"approve {HUGE} looks fine", f"There is no action {HUGE}"),
    ("override-20-digits", f"override {HUGE} not now", f"There is no action {HUGE}"),
    ("ack-3000-digits", "ack " + "7" * 3000, "There is no action " + "7" * 20 + "…"),  # repeated clipped
    ("show-superscript-two", "show ²", "Which action?"),  # a digit to str.isdigit(), not to int()
    ("recent-40-digits", "recent " + "9" * 40, "Last 1 AI actions"),  # as many as there are, at most 20
    ("text-over-4000", "show 1 " + "x" * 4000, "too long to read: 4,007 characters, at most 4,000"),
    ("reason-over-4000", "approve 1 " + "because " * 600, "too long to read"),
]


@pytest.mark.parametrize("transport", TRANSPORTS, indirect=True)
@pytest.mark.parametrize(("text", "says"), [(t, s) for _, t, s in HOPELESS], ids=[i for i, _, _ in HOPELESS])
async def test_hopeless_input_gets_an_ephemeral_answer(
        running: Running, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture, text: str, says: str) -> None:
    caplog.set_level(logging.INFO)
    status, body = await running.submit(proposal())
    assert status == 201, body
    answer = await slash(running, fake_slack, text)  # asserts the 200 within 3 s, and valid blocks
    assert answer["response_type"] == "ephemeral", "a mistake is not shared with the channel"
    assert says in dump(answer), dump(answer)[:400]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], "nothing went wrong"
    _, action = await running.get(f"/v1/actions/{body['id']}")
    assert action["status"] == "pending" and action["decision"] is None, "and nothing was decided"


async def test_stats_answers_the_window_asked_for(running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    status, body = await running.submit(proposal(summary="Three days ago"))
    assert status == 201, body
    clock.advance(timedelta(days=3).total_seconds())
    status, body = await running.submit(proposal(summary="Today"))
    assert status == 201, body
    clock.advance(10)  # a window is [since, until): the fake clock would otherwise stand on "Today"
    day = dump(await slash(running, fake_slack, "stats 24h"))
    assert "AI actions, last 24 hours" in day and "*1 actions* submitted" in day
    week = dump(await slash(running, fake_slack, "stats 7d"))
    assert "AI actions, last 7 days" in week and "*2 actions* submitted" in week
    assert "AI actions, last 7 days" in dump(await slash(running, fake_slack, "stats"))
    assert "AI actions, last 36 hours" in dump(await slash(running, fake_slack, "stats 1d12h"))
    assert "AI actions, last 90 days" in dump(await slash(running, fake_slack, "share stats 90d"))
    for word, says in (("weekly", "Cannot read the window `weekly`"), ("24", "Cannot read the window `24`"),
                       ("91d", "at most 90 days"), ("9" * 30 + "d", "at most 90 days"), ("0h", "at least 1 minute")):
        answer = await slash(running, fake_slack, f"stats {word}")
        assert says in dump(answer) and "AI actions" not in dump(answer), (word, dump(answer)[:300])
