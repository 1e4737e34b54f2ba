"""The Block Kit builders, tested on their JSON: content, buttons, and Slack's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from handlers.blocks import card as blocks
from handlers.blocks import commands as answers
from handlers.blocks import kit, notices
from storage.models import Action

CREATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FROZEN = {
    "steps": [
        {"notify": "owner", "after": 0},
        {"notify": "secondary", "after": 300},
        {"notify": "leadership", "after": 900},
    ],
    "owner": "U0OWNER",
    "secondary": "dana@example.com",
    "channel": "C0CHECKOUT",
    "leadership": {"channel": "C0LEADERS", "users": ["U0VP"]},
    "timeout": 1800,
    "on_timeout": "deny",
    "rule_index": 1,
}
PEOPLE = {"dana@example.com": "U0DANA"}


def make(**over: Any) -> Action:
    fields: dict[str, Any] = dict(
        id=42,
        agent_id=1,
        kind="proposed",
        service="checkout-api",
        action_type="scale_down",
        summary="Scale checkout-api from 12 to 8 pods",
        rationale="CPU under 20% for 3 hours",
        environment="production",
        confidence=0.82,
        mode="approve",
        status="pending",
        frozen=dict(FROZEN),
        owner="U0OWNER",
        level="owner",
        created_at=CREATED,
        evidence=[{"label": "CPU dashboard", "url": "https://grafana.example.com/d/cpu"}],
        model={"provider": "anthropic", "name": "claude", "version": "2026-01"},
    )
    fields.update(over)
    return Action(**fields)


def valid(message: dict[str, Any]) -> dict[str, Any]:
    """Every block passes slack_sdk's own validation, and the message is within Slack's limits."""
    assert message["text"] and len(message["text"]) <= 3000
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        Block.parse(block).validate_json()  # type: ignore[union-attr]
        for field in block.get("fields") or []:
            assert len(field["text"]) <= 2000
    return message


def dump(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_proposed_card_has_everything_needed_to_decide() -> None:
    msg = valid(blocks.action_card(make(), "remediator", people=PEOPLE, audience="owner"))
    text = dump(msg)
    assert msg["blocks"][0]["type"] == "header" and "Approval needed" in msg["blocks"][0]["text"]["text"]
    for needle in (
        "Scale checkout-api from 12 to 8 pods",
        "remediator",
        "checkout-api",
        "production",
        "approve",
        "CPU under 20% for 3 hours",
        "82%",
        "<https://grafana.example.com/d/cpu|CPU dashboard>",
        "anthropic claude 2026-01",
        "<@U0OWNER>",
    ):
        assert needle in text, needle
    # the next step and the deadline, in Slack's reader-local date format
    assert "Escalates to secondary (<@U0DANA>) <!date^1767269100^" in text  # created + 5m
    assert "Deadline <!date^1767270600^" in text and "then deny by default" in text
    assert [(b["action_id"], b["value"], b["text"]["text"]) for b in buttons(msg)] == [
        ("approve", "42", "Approve"),
        ("override", "42", "Override"),
    ]
    assert "Scale checkout-api" in msg["text"]


def test_the_card_counts_rules_as_the_policy_file_and_policy_check_do() -> None:
    """rule_index 1 is the file's second rule: `countersign policy check` says "rule 2"."""
    assert "Action 42 · rule 2 ·" in dump(blocks.action_card(make(), "remediator", people=PEOPLE, audience="owner"))
    fallback = make(frozen={**FROZEN, "rule_index": None})
    assert "no rule matched (fallback)" in dump(blocks.action_card(fallback, "remediator", people=PEOPLE,
                                                                    audience="owner"))


def test_executed_card_asks_for_acknowledge_or_override() -> None:
    msg = valid(blocks.action_card(make(kind="executed", mode="acknowledge"), "remediator"))
    assert [b["action_id"] for b in buttons(msg)] == ["acknowledge", "override"]
    assert all(b["value"] == "42" for b in buttons(msg))
    assert "Acknowledge or override" in msg["blocks"][0]["text"]["text"]


def test_policy_violation_is_flagged() -> None:
    msg = valid(blocks.action_card(make(kind="executed", policy_violation=True, level="leadership"), "bot"))
    text = dump(msg)
    assert "Policy violation" in msg["blocks"][0]["text"]["text"]
    assert "needed approval before it ran" in text


def test_decided_card_shows_outcome_who_when_why_and_no_buttons() -> None:
    decided = make(
        status="denied",
        outcome="denied",
        decided_by="U0OWNER",
        decided_by_name="olive",
        decided_at=datetime(2026, 1, 1, 12, 3, tzinfo=UTC),
        accountability="explicit",
        decision_level="owner",
        decision_via="button",
        decision_reason="peak traffic <soon>",
    )
    msg = valid(blocks.action_card(decided, "remediator"))
    text = dump(msg)
    assert buttons(msg) == []
    assert "Denied" in msg["blocks"][0]["text"]["text"]
    assert "*denied* by <@U0OWNER> \u00b7 <!date^1767268980^" in text
    assert "*Reason:* peak traffic &lt;soon&gt;" in text
    assert "accountability explicit, level owner, via button" in text
    assert "Escalates to" not in text and "Deadline" not in text


def test_expired_card_says_default_accountability() -> None:
    expired = make(
        status="expired",
        outcome="denied",
        decided_by="U0VP",
        decided_by_name="leadership",
        decided_at=CREATED,
        accountability="default",
        decision_level="leadership",
        decision_via="timeout",
        decision_reason="no response before the timeout; on_timeout: deny",
    )
    msg = valid(blocks.action_card(expired, "remediator"))
    text = dump(msg)
    assert "Expired (denied by default)" in msg["blocks"][0]["text"]["text"]
    assert "nobody responded in time; accountability defaults to <@U0VP> (leadership)" in text
    assert buttons(msg) == []


def test_unacknowledged_executed_action_keeps_its_buttons() -> None:
    late = make(
        kind="executed",
        mode="acknowledge",
        outcome="unacknowledged",
        decided_by="U0VP",
        accountability="default",
        decision_level="leadership",
        level="leadership",
    )
    msg = valid(blocks.action_card(late, "remediator"))
    assert "Acknowledging now still records you" in dump(msg)
    assert [b["action_id"] for b in buttons(msg)] == ["acknowledge", "override"]


def test_escalated_card_says_to_whom() -> None:
    text = dump(valid(blocks.action_card(make(level="secondary"), "remediator", people=PEOPLE)))
    assert "Escalated to secondary*: <@U0DANA>" in text
    assert "Escalates to leadership (<#C0LEADERS>, <@U0VP>)" in text
    unresolved = dump(valid(blocks.action_card(make(level="secondary"), "remediator")))
    assert "Escalated to secondary*: dana@example.com" in unresolved


def test_leadership_card_mentions_the_leadership_users() -> None:
    msg = valid(blocks.action_card(make(level="leadership"), "remediator", audience="leadership"))
    assert msg["text"].startswith("<@U0VP> ")
    assert "<@U0VP> this action reached leadership" in dump(msg)
    channel_copy = valid(blocks.action_card(make(level="leadership"), "remediator"))
    assert not channel_copy["text"].startswith("<@U0VP>")


def test_fyi_for_an_autonomous_action() -> None:
    recorded = make(
        mode="autonomous",
        status="recorded",
        outcome="recorded",
        accountability="policy",
        decided_by="U0OWNER",
        decided_by_name="owner",
        decision_via="policy",
        decided_at=CREATED,
        decision_level="owner",
    )
    msg = valid(blocks.fyi(recorded, "autoscaler"))
    assert "Recorded (autonomous)" in msg["blocks"][0]["text"]["text"]
    assert "owns the rule that let the AI act alone" in dump(msg)
    assert buttons(msg) == []


@pytest.mark.parametrize("size", [3001, 20_000, 200_000])
def test_huge_inputs_are_clipped_never_rejected(size: int) -> None:
    huge = make(
        summary="S" * size,
        rationale="why & <!channel> " * (size // 16),
        evidence=[{"label": f"dash {i} | <x>", "url": f"https://e.example.com/{i}"} for i in range(500)],
        model={"provider": "p" * size, "name": "n", "version": "v"},
        service="s" * 300,
    )
    msg = valid(blocks.action_card(huge, "a" * 5000, people=PEOPLE, audience="leadership"))
    text = dump(msg)
    assert "<!channel>" not in text  # an agent cannot ping a whole channel
    assert "&lt;!channel&gt;" in text
    assert "full record with `/ai-actions show 42`" in text  # pointer to the full text
    assert "…and " in text and "more: `/ai-actions show 42`" in text
    assert buttons(msg)  # the buttons survive, whatever the size
    for block in msg["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150


def test_clip_never_cuts_an_entity_in_half() -> None:
    clipped = kit.clip("a" * 8 + "&amp;" + "b" * 10, 12)
    assert clipped == "a" * 8 + "…"
    assert kit.clip("short", 10) == "short"


def test_forbidden_report() -> None:
    msg = valid(
        notices.forbidden(
            {
                "agent": "cleanup-bot",
                "service": "checkout-api",
                "action_type": "drop_database",
                "environment": "production",
                "kind": "proposed",
                "summary": "Drop the orders db",
                "rationale": "disk full",
                "rule": {"match": {"action_type": ["drop_database"]}, "mode": "forbidden"},
            }
        )
    )
    text = dump(msg)
    assert "Refused by policy" in msg["text"] and "cleanup-bot" in msg["text"]
    assert "`drop_database`" in text and "answered 403" in text
    assert "(rule: action_type drop_database → forbidden)" in text


def test_reminder_notice_and_refusal() -> None:
    reminder = valid(notices.reminder(make(level="secondary"), level="secondary", people=PEOPLE))
    assert "Reminder for <@U0DANA>" in reminder["text"] and "action 42" in reminder["text"]
    note = valid(notices.notice("Paging <@U0OWNER> failed: users_not_found", 42))
    assert note["text"].startswith("Paging <@U0OWNER>")
    refusal = valid(notices.refusal("Action 42 was already decided: approved by <@U0OWNER>."))
    assert "approved by <@U0OWNER>" in refusal["text"]


@pytest.mark.parametrize("kind", ["proposed", "executed"])
def test_override_modal(kind: str) -> None:
    view = notices.override_modal(make(kind=kind, summary="x" * 5000), '{"action_id": 42}')
    View(**view).validate_json()
    assert view["callback_id"] == "override_modal" and view["private_metadata"] == '{"action_id": 42}'
    reason = next(b for b in view["blocks"] if b["type"] == "input")
    assert reason["block_id"] == "reason" and reason["element"]["action_id"] == "reason_input"
    assert reason.get("optional") is False and reason["element"]["multiline"] is True
    assert ("denies" if kind == "proposed" else "reverted") in json.dumps(view)


def test_mentions() -> None:
    assert kit.mention("U0OWNER") == "<@U0OWNER>"
    assert kit.mention("C0LEADERS") == "<#C0LEADERS>"
    assert kit.mention("dana@example.com", PEOPLE) == "<@U0DANA>"
    assert kit.mention("ghost@example.com") == "ghost@example.com"
    assert kit.mention(None) == "nobody"
    assert (
        kit.slack_date(CREATED) == "<!date^1767268800^{date_short_pretty} at {time}|2026-01-01 12:00 UTC>"
    )


def test_command_answers_mention_people_the_policy_gave_by_email() -> None:
    """`/ai-actions pending` (recent, mine, service): Slack shows a mention as the person's name,
    an email as text; the listener resolves `people_in` before rendering."""
    waiting = make(level="secondary")  # FROZEN's secondary is dana@example.com
    defaulted = make(id=43, status="expired", outcome="denied", accountability="default",
                     decided_by="dana@example.com", decided_by_name="secondary", decision_level="secondary",
                     decision_via="timeout", decided_at=CREATED)
    rows: list[tuple[Action, str | None]] = [(waiting, "remediator"), (defaulted, "remediator")]
    assert answers.people_in(a for a, _ in rows) == ["dana@example.com"] * 2
    text = dump(valid(answers.action_list("Pending", rows, empty="none", people=PEOPLE)))
    assert "waiting on secondary: <@U0DANA>" in text and "accountable <@U0DANA>" in text
    assert "dana@example.com" not in text
    assert "dana@example.com" in dump(answers.action_list("Pending", rows, empty="none"))  # unresolved: as given


def test_a_level_that_could_not_be_paged_is_shown() -> None:
    card = make(level="secondary", frozen={**FROZEN, "owner": "ghost@example.com"}, owner="ghost@example.com")
    text = dump(valid(blocks.action_card(card, "remediator", people=PEOPLE,
                                         failures={"owner": "ghost@example.com: users_not_found"})))
    assert "Could not page the owner (ghost@example.com): ghost@example.com: users_not_found" in text
    assert "Escalated to secondary*: <@U0DANA>" in text
