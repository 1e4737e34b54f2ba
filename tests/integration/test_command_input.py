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
