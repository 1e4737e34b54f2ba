"""The pure rules behind issue 15's fixes: which callback addresses are allowed, when paging is
unhealthy, when an action is unreachable, and which Slack payloads are malformed."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from bot import slack_guard
from bot.api.paging_health import slack_verdict
from bot.contract.callback_target import AllowList, address_refusal
from bot.escalation.snapshot import EscalationSnapshot

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.215.14", True), ("2606:4700::1111", True),
    ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False),
    ("fe80::1", False), ("fd00:ec2::254", False), ("::ffff:127.0.0.1", False), ("224.0.0.1", False),
])
def test_only_public_addresses_by_default(address: str, allowed: bool) -> None:
    assert AllowList.parse("").allows_address(ipaddress.ip_address(address)) is allowed


def test_the_allow_list_admits_cidrs_and_names() -> None:
    allow = AllowList.parse(" 10.20.0.0/16 , agent.internal., ::1")
    assert allow.allows_address(ipaddress.ip_address("10.20.3.4"))
    assert not allow.allows_address(ipaddress.ip_address("10.21.0.1"))
    assert allow.allows_address(ipaddress.ip_address("::1"))
    assert allow.allows_host("Agent.Internal")
    assert address_refusal("agent.internal", [ipaddress.ip_address("10.9.9.9")], allow) is None
    assert "10.9.9.9" in (address_refusal("x.example", [ipaddress.ip_address("10.9.9.9")], allow) or "")


def test_token_errors_and_runs_of_permanent_failures() -> None:
    assert slack_verdict([]) == "ok"
    assert "invalid_auth" in slack_verdict([(False, "invalid_auth", AT)])
    assert slack_verdict([(True, None, AT), (False, "token_revoked", AT)]) == "ok"  # a success since
    two: list[tuple[bool, str | None, datetime]] = [(False, "channel_not_found", AT)] * 2
    assert slack_verdict(two) == "ok"
    assert "channel_not_found" in slack_verdict([*two, (False, "not_in_channel", AT)])
    assert slack_verdict([(False, "HTTP 503: service_unavailable", AT)] * 5) == "ok"  # the breaker's


def test_unreachable_only_when_every_level_failed() -> None:
    snap = EscalationSnapshot.from_json({"steps": [{"notify": "owner", "after": 0},
                                                   {"notify": "secondary", "after": 60}],
                                         "owner": "U1", "secondary": "U2"})
    assert not snap.unreachable({})
    assert not snap.unreachable({"owner": "invalid_auth"})
    assert snap.unreachable({"owner": "invalid_auth", "secondary": "invalid_auth"})


@pytest.mark.parametrize("raw", [
    b"payload={not", b"payload=%5B%5D", b"payload=%7B%22type%22%3A%22block_actions%22%7D", b"\xff\xfe",
])
def test_malformed_payloads_are_named(raw: bytes) -> None:
    with pytest.raises(slack_guard.Malformed):
        slack_guard.parse(raw, "application/x-www-form-urlencoded")


async def test_a_foreign_workspace_is_refused_once_pinned() -> None:
    class Slack:
        async def auth_test(self) -> dict[str, str]:
            return {"team_id": "T1"}

    workspace = slack_guard.Workspace()
    assert workspace.refusal("T2", None) is None  # not pinned yet: nothing to compare with
    await workspace.learn(Slack())
    assert workspace.refusal("T1", None) is None and workspace.refusal(None, None) is None
    assert "T2" in (workspace.refusal("T2", None) or "")
    assert "E9" in (workspace.refusal("T1", "E9") or "")
