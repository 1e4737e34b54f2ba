"""`decision.by` as SPEC gives it (bot.contract.serialize): whom it needs looked up, and how the
answer reads once the person is known. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from bot.contract.serialize import Person, decider_spec, with_person

PEOPLE = {"dana@example.com": Person("U0DANA", "Dana"), "U0OWNER": Person("U0OWNER", "Olive"),
          "vp@example.com": Person("U0VP", "Vic"), "ghost@example.com": Person(None, None)}


def decision(by: str, name: str, accountability: str, level: str) -> dict[str, Any]:
    return {"outcome": "denied", "by": {"slack_user_id": by, "name": name}, "accountability": accountability,
            "level": level, "via": "timeout", "at": None, "reason": None}


@pytest.mark.parametrize(("by", "name", "accountability", "level", "want"), [
    ("owner@x", "owner", "policy", "owner", "owner@x"),  # an email: always (SPEC's by is a user id)
    ("U0OWNER", "owner", "policy", "owner", "U0OWNER"),  # the policy's person: for the name
    ("U0DANA", "secondary", "default", "secondary", "U0DANA"),
    ("U0VP", "leadership", "default", "leadership", None),  # `by` stands for the level
    ("C0LEADERS", "leadership", "default", "leadership", None),
    ("vp@example.com", "leadership", "default", "leadership", "vp@example.com"),
    ("U0OWNER", "olive", "explicit", "owner", None),  # a response carries its own name
])
def test_whom_a_decision_needs_looked_up(by: str, name: str, accountability: str, level: str,
                                        want: str | None) -> None:
    assert decider_spec(decision(by, name, accountability, level)) == want


def by(answer: dict[str, Any] | None) -> Any:
    assert answer is not None
    return answer["by"]


def test_a_person_level_is_named_and_the_leadership_level_keeps_its_word() -> None:
    assert by(with_person(decision("dana@example.com", "secondary", "default", "secondary"), PEOPLE)) == {
        "slack_user_id": "U0DANA", "name": "Dana"}
    assert by(with_person(decision("U0OWNER", "owner", "policy", "owner"), PEOPLE)) == {
        "slack_user_id": "U0OWNER", "name": "Olive"}
    assert by(with_person(decision("vp@example.com", "leadership", "default", "leadership"), PEOPLE)) == {
        "slack_user_id": "U0VP", "name": "leadership"}
    unknown = decision("ghost@example.com", "owner", "policy", "owner")  # Slack does not know them
    assert with_person(unknown, PEOPLE) == unknown
    assert with_person(None, PEOPLE) is None
