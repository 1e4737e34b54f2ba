"""`/ai-actions share …` posts the answer to the channel, but never a mistake: a missing or unreadable
id, an unknown service, a bad window or a refused decision is answered to the asker alone (ephemeral,
without the "Shared by" line), while a successful `share show ID` still goes to the channel."""

from __future__ import annotations

import pytest

from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.integration.test_commands import SLOW, dump, slash


@pytest.fixture
def policy() -> Policy:
    return make_policy(SLOW)


@pytest.mark.parametrize(("text", "says"), [
    ("share show 987654", "There is no action 987654"),
    ("share show #987654", "There is no action 987654"),
    ("share show 12345678901234567890123", "There is no action 12345678901234567890"),
    ("share show abc", "Which action?"),
    ("share show", "Which action?"),
    ("share service no-such-service", "There is no service `no-such-service`"),
    ("share service", "Which service?"),
    ("share who-owns no-such-service", "There is no service `no-such-service`"),
    ("share who-owns", "Which service?"),
    ("share stats 1000d", "must be at least 1 minute and at most 90 days"),
    ("share stats soon", "Cannot read the window"),
    ("share approve 987654", "There is no action 987654"),
    ("share approve", "Which action?"),
    ("share override 987654", "There is no action 987654"),
    ("share trust nobody-by-that-name", "No agent or service is called `nobody-by-that-name`"),
    ("share pause checkout-api -5m too soon", ":warning:"),
    ("share pause no-such-service 1h reason", ":warning:"),
    ("share resume", "Which pause?"),
])
async def test_a_shared_mistake_is_answered_privately(
    running: Running, fake_slack: FakeSlack, text: str, says: str
) -> None:
    answer = await slash(running, fake_slack, text)
    assert says in dump(answer), dump(answer)
    assert answer["response_type"] == "ephemeral", f"{text!r} was posted to the channel"
    assert "Shared by" not in dump(answer)


async def test_a_shared_refusal_is_answered_privately(running: Running, fake_slack: FakeSlack) -> None:
    """A decision the rules refuse (not the asker's to make, or an override without a reason)."""
    status, body = await running.submit(proposal())
    assert status == 201, body
    refused = await slash(running, fake_slack, f"share approve {body['id']}", user="U0STRANGER")
    assert refused["response_type"] == "ephemeral" and ":no_entry_sign:" in dump(refused)
    no_reason = await slash(running, fake_slack, f"share override {body['id']}")
    assert no_reason["response_type"] == "ephemeral" and "An override needs a reason" in dump(no_reason)
    assert "Shared by" not in dump(refused) + dump(no_reason)
    stranger = await slash(running, fake_slack, "share pause checkout-api 1h testing", user="U0STRANGER")
    assert stranger["response_type"] == "ephemeral" and "You may not pause" in dump(stranger)
    paused = await slash(running, fake_slack, "share pause checkout-api 1h deploy freeze")  # the owner may
    assert paused["response_type"] == "in_channel" and "Paused `checkout-api`" in dump(paused)


async def test_a_shared_answer_still_goes_to_the_channel(running: Running, fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal(summary="Scale checkout-api to 8 pods"))
    assert status == 201, body
    shown = await slash(running, fake_slack, f"share show {body['id']}")
    assert shown["response_type"] == "in_channel" and "Scale checkout-api to 8 pods" in dump(shown)
    assert "Shared by <@U0OWNER>" in dump(shown)
    owner = await slash(running, fake_slack, "share who-owns checkout-api")
    assert owner["response_type"] == "in_channel" and "Shared by <@U0OWNER>" in dump(owner)
    private = await slash(running, fake_slack, "show 987654")  # not shared: ephemeral as ever
    assert private["response_type"] == "ephemeral"
