"""What a deep queue may pack (bot.delivery.packing.pack_kind) and how the reminder, notice and
leadership packs look (handlers.blocks.packs, handlers.blocks.storm): every action named, the
leadership called once and only while something waits, and a full pack of worst-case lines within
Slack's limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.delivery.messages import Kind, card_purpose, reminder_purpose
from bot.delivery.packing import PACK_SIZES, pack_kind
from handlers.blocks.kit import MAX_BLOCKS, SECTION_MAX
from handlers.blocks.packs import notice_pack, reminder_pack
from handlers.blocks.storm import card_pack
from storage.models import Action, OutboxMessage

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FROZEN = {"steps": [{"notify": "owner", "after": 0}, {"notify": "leadership", "after": 600}],
          "owner": "U0OWNER", "channel": "C0CHECKOUT", "leadership": {"channel": "C0LEADERS", "users": ["U0VP"]},
          "timeout": 1800, "on_timeout": "deny", "rule_index": 1}


def action(n: int, summary: str = "Scale checkout-api down", **over: Any) -> Action:
    fields: dict[str, Any] = dict(id=n, agent_id=1, kind="proposed", service="checkout-api", action_type="scale_down",
                                  environment="production", summary=summary, rationale="quiet", mode="approve",
                                  status="pending", frozen=dict(FROZEN), owner="U0OWNER", level="owner",
                                  created_at=AT)
    fields.update(over)
    return Action(**fields)


def row(kind: Kind, purpose: str, action_id: int | None = 7, method: str = "chat.postMessage",
        **payload: Any) -> OutboxMessage:
    return OutboxMessage(id=1, target="slack", method=method, purpose=purpose, action_id=action_id,
                         payload={"kind": kind.value, "channel": "U0OWNER", **payload})


@pytest.mark.parametrize(("queued", "packs_as"), [
    (row(Kind.CARD, card_purpose("owner")), Kind.CARD),
    (row(Kind.CARD, card_purpose("leadership")), Kind.CARD),  # leadership cards pack too (once mentioned)
    (row(Kind.CARD, card_purpose(None)), Kind.CARD),
    (row(Kind.FYI, "fyi"), Kind.FYI),
    (row(Kind.REMINDER, reminder_purpose("remind:owner:1")), Kind.REMINDER),
    (row(Kind.NOTICE, "notice:refused", text="Action 7 was already decided"), Kind.NOTICE),
    (row(Kind.NOTICE, "notice", text=""), None),  # rendered from the action at send time: alone
    (row(Kind.REMINDER, "remind:x", action_id=None), None),
    (row(Kind.CARD, card_purpose("owner"), method="chat.update"), None),
    (row(Kind.STORM, "storm:parent"), None),
])
def test_what_a_deep_queue_packs(queued: OutboxMessage, packs_as: Kind | None) -> None:
    assert pack_kind(queued) == packs_as


def test_a_reminder_pack_names_every_action_and_who_it_is_for() -> None:
    msg = reminder_pack([action(n) for n in (3, 5, 8)], level="owner")
    assert msg["text"].startswith(":alarm_clock: Reminder for <@U0OWNER>: 3 actions still wait for a response")
    assert msg["text"].endswith("actions 3, 5, 8")
    body = str(msg["blocks"])
    assert all(f"*{n}*" in body for n in (3, 5, 8))
    assert "deadline" in body and "buttons on each action's card" in body


def test_a_leadership_pack_calls_its_users_once_and_only_while_one_waits() -> None:
    waiting = card_pack([(action(1, level="leadership"), "bot"), (action(2, level="leadership"), "bot")],
                        mentions=["<@U0VP>"])
    assert waiting["text"].count("<@U0VP>") == 1 and waiting["text"].startswith("<@U0VP> 2 actions")
    assert str(waiting["blocks"]).count("<@U0VP>") == 1
    decided = card_pack([(action(1, status="expired", outcome="denied"), "bot")], mentions=["<@U0VP>"])
    assert "<@U0VP>" not in str(decided)  # nobody needs to act: no page


def test_a_storm_pack_names_a_decider_the_policy_gave_by_email() -> None:
    """The pack mentions who decided; one the policy named by email was left out (not a user id)."""
    timed_out = action(1, status="expired", outcome="denied", decided_by="dana@example.com", decided_by_name="owner")
    by_button = action(2, status="approved", outcome="approved", decided_by="U0OWNER")
    pack = str(card_pack([(timed_out, "bot"), (by_button, "bot")], people={"dana@example.com": "U0DANA"}))
    assert "by <@U0DANA>" in pack and "by <@U0OWNER>" in pack and "dana@example.com" not in pack
    unresolved = str(card_pack([(timed_out, "bot")]))
    assert "dana@example.com" not in unresolved  # still no address printed where Slack found nobody


@pytest.mark.parametrize("build", ["reminders", "notices"])
def test_a_full_pack_of_worst_case_lines_fits_slack(build: str) -> None:
    if build == "reminders":
        msg = reminder_pack([action(n, summary="&" * 600, service="<" * 100)
                             for n in range(PACK_SIZES[Kind.REMINDER])], level="owner")
    else:
        msg = notice_pack(["&amp;" * 400] * PACK_SIZES[Kind.NOTICE])
    assert len(msg["blocks"]) <= MAX_BLOCKS
    assert "more blocks not shown" not in str(msg["blocks"])
    for block in msg["blocks"]:
        assert len(block.get("text", {}).get("text", "")) <= SECTION_MAX
        Block.parse(block).validate_json()  # type: ignore[union-attr]
