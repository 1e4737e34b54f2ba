"""One hostile agent over every message Countersign builds: whatever an agent writes (summary,
rationale, names, evidence, reasons) must never notify anyone or format in Slack, in any block's
mrkdwn nor in the `text` fallback (the notification itself).

plain_text objects (headers, buttons, modal chrome) are exempt: Slack shows them verbatim and
parses neither mentions nor formatting in them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.actions.serialize import action_json
from bot.policy.rules import parse_policy
from bot.reports.figures import Rates, Stats
from handlers.blocks import card, commands, digest, home, kit, notices, packs, record, storm
from storage.models import Action
from tests.policies import FAST

HOSTILE = "<!channel> <@U123> <!here> *bold* _it_ ~strike~ `code` <https://evil.example|click> & <#C666>"
# What must never reach a mrkdwn text as is: each would ping, link or format.
# A link's URL is not mrkdwn (Slack formats only its label), but must not close the link early.
URL = re.compile(r"<(https?://[^|>]*)\|")
LIVE = ("<!channel>", "<!here>", "<@U123>", "<#C666>", "<https://evil", "*bold*", "_it_", "~strike~", "`code`")
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FROZEN = {
    "steps": [{"notify": "owner", "after": 0}, {"notify": "secondary", "after": 300},
              {"notify": "leadership", "after": 900}],
    "owner": "U0OWNER", "secondary": "dana@example.com", "channel": "C0CHECKOUT",
    "leadership": {"channel": "C0LEADERS", "users": ["U0VP"]}, "timeout": 1800, "on_timeout": "deny",
    "rule_index": 1,
}
DECIDED = dict(decided_by="U0OWNER", decided_by_name=HOSTILE, decided_at=AT, decision_level="owner",
               decision_via="button", decision_reason=HOSTILE)


def hostile(**over: Any) -> Action:
    fields: dict[str, Any] = dict(
        id=42, agent_id=1, kind="proposed", service=HOSTILE, action_type=HOSTILE, summary=HOSTILE,
        rationale=HOSTILE, environment=HOSTILE, confidence=0.5, mode="approve", status="pending",
        frozen=dict(FROZEN), owner="U0OWNER", level="owner", created_at=AT,
        evidence=[{"label": HOSTILE, "url": f"https://x.example/{HOSTILE}"}, {"label": HOSTILE, "url": HOSTILE}],
        model={"provider": HOSTILE, "name": HOSTILE, "version": HOSTILE},
    )
    fields.update(over)
    return Action(**fields)


ACTIONS = {
    "pending": hostile(),
    "escalated": hostile(level="leadership"),
    "denied": hostile(status="denied", outcome="denied", accountability="explicit", **DECIDED),
    "expired": hostile(status="expired", outcome="denied", accountability="default",
                       **{**DECIDED, "decided_by": "C0LEADERS"}),
    "recorded": hostile(status="recorded", mode="autonomous", outcome="recorded", accountability="policy",
                        **DECIDED),
    "unacknowledged": hostile(kind="executed", mode="acknowledge", outcome="unacknowledged",
                              accountability="default", level="leadership", **DECIDED),
}
ROWS = [(a, HOSTILE) for a in ACTIONS.values()]
POLICY = parse_policy(FAST)


def _record() -> dict[str, Any]:
    rec = action_json(ACTIONS["denied"], HOSTILE)
    data = {k: HOSTILE for k in ("agent", "kind", "mode", "level", "target", "reason", "outcome",
                                 "accountability", "via", "response", "refusal", "url", "status", "by")}
    rec["timeline"] = [{"at": "2026-01-01T12:00:00Z", "event": e, "actor": HOSTILE, "data": data}
                       for e in ("action.submitted", "escalation.page", "escalation.reminder", "page.failed",
                                 "decision", "response.refused", "callback.delivered", HOSTILE)]
    return rec


def _digest() -> dict[str, Any]:
    item = {"id": 42, "service": HOSTILE, "action_type": HOSTILE, "summary": HOSTILE, "decided_by": HOSTILE,
            "decided_by_name": HOSTILE, "level": HOSTILE, "outcome": HOSTILE, "reason": HOSTILE,
            "decided_at": "2026-01-01T12:00:00Z", "response_seconds": 30.0}
    return {"day": "2026-01-01", "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "total": 3,
            "by_mode": {HOSTILE: 3}, "by_outcome": {HOSTILE: 3}, "median_response_seconds": 30.0,
            "responded": 3, "per_agent": {HOSTILE: vars(Rates(3, 1, 1, 1))},
            "per_service": {HOSTILE: vars(Rates(3))}, "slowest": [item], "overrides": [item],
            "defaults": [item], "head": {"hash": "abc", "seq": 9}, "timezone": HOSTILE}


def _stats() -> Stats:
    return Stats(since=AT, until=AT, total=1, by_mode=Counter({HOSTILE: 1}), by_outcome=Counter({HOSTILE: 1}),
                 per_agent={HOSTILE: Rates(1, 1)}, per_service={HOSTILE: Rates(1, 1)}, defaulted=1,
                 recent_defaults=[ACTIONS["expired"]])


REFUSED = {"agent": HOSTILE, "service": HOSTILE, "action_type": HOSTILE, "environment": HOSTILE, "kind": HOSTILE,
           "summary": HOSTILE, "rationale": HOSTILE, "rule": {"name": HOSTILE, "match": {"service": HOSTILE},
                                                              "mode": "forbidden"}}


def _card(action: Action, audience: str | None) -> Callable[[], dict[str, Any]]:
    return lambda: card.action_card(action, HOSTILE, audience=audience,
                                    failures={"owner": HOSTILE, HOSTILE: HOSTILE})


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    **{f"card {name} to {audience}": _card(a, audience)
       for name, a in ACTIONS.items() for audience in (None, "owner", "leadership")},
    "fyi": lambda: card.fyi(ACTIONS["recorded"], HOSTILE),
    "forbidden": lambda: notices.forbidden(REFUSED),
    "reminder": lambda: notices.reminder(ACTIONS["escalated"], level="leadership"),
    "refusal, already decided": lambda: notices.refused("already_decided", HOSTILE, ACTIONS["expired"]),
    "override modal": lambda: notices.override_modal(ACTIONS["pending"], "{}"),
    "recent": lambda: commands.action_list("Last 6 AI actions", ROWS, empty="No actions yet."),
    "mine": lambda: commands.mine_message(ROWS, ROWS),
    "service": lambda: commands.service_message(POLICY, "checkout-api", ROWS),
    "unknown service": lambda: commands.unknown_service(POLICY, HOSTILE),
    "unknown subcommand": lambda: commands.unknown_command(HOSTILE),
    "no such action": lambda: commands.no_action(HOSTILE),
    "stats": lambda: commands.stats_message(_stats(), "last 7 days"),
    "show (the record)": lambda: record.record_message(_record(), "https://cs.example"),
    "shared show": lambda: commands.shared(record.record_message(_record()), "U0OWNER", "/ai-actions"),
    "digest": lambda: digest.digest_message(_digest()),
    "home": lambda: home.home_blocks(POLICY, ROWS, 20, ROWS, {"checkout-api": "owner"}, AT),
    "storm parent": lambda: storm.storm_parent(HOSTILE, 30, 12, AT),
    "storm pack": lambda: storm.card_pack(ROWS),
    "leadership pack": lambda: storm.card_pack(ROWS, mentions=["<@U0VP>"]),
    "reminder pack": lambda: packs.reminder_pack([a for a, _ in ROWS], level="owner"),
    "notice pack": lambda: packs.notice_pack([notices.refused("already_decided", HOSTILE,
                                                              ACTIONS["expired"])["text"]] * 3),
}


def mrkdwn_texts(node: Any) -> Iterator[str]:
    """Every string Slack reads as mrkdwn: text objects of type mrkdwn (plain_text is shown as is)."""
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            yield node["text"]
        for key, value in node.items():
            if key == "text" and isinstance(value, str) and node.get("type") != "plain_text":
                yield value  # a message's fallback text
            elif not isinstance(value, str):
                yield from mrkdwn_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from mrkdwn_texts(item)


@pytest.mark.parametrize("name", BUILDERS)
def test_agent_text_never_pings_links_or_formats(name: str) -> None:
    built = BUILDERS[name]()
    texts = list(mrkdwn_texts(built))
    assert texts, "nothing to check"
    for text in texts:
        for url in URL.findall(text):
            assert not set(url) & set("<> |"), url
        text = URL.sub("<URL|", text)
        for live in LIVE:
            assert live not in text, f"{live!r} reaches Slack as is in {text!r}"
    if built.get("type") in ("modal", "home"):
        View(**built).validate_json()
    else:
        assert "&lt;!channel&gt;" in json.dumps(built)  # shown, escaped, not dropped
        for block in built["blocks"]:
            Block.parse(block).validate_json()  # type: ignore[union-attr]


def test_escape_keeps_snake_case_and_makes_marks_inert() -> None:
    assert kit.escape("scale_down") == "scale_down"
    assert kit.escape("<!here> & *x*") == "&lt;!here&gt; &amp; \u2217x\u2217"
    assert kit.escape("_a_ ~b~ `c`") == "\u02cda\u02cd \u223cb\u223c \u02cbc\u02cb"
    assert kit.link("https://e.example/<x>|y z", "a|*b*") == "<https://e.example/%3Cx%3E%7Cy%20z|a¦\u2217b\u2217>"
