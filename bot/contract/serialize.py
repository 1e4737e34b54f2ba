"""The JSON of a decision, as SPEC's `GET /v1/actions/{id}` and the callbacks give it.

The whole action's JSON (bot.actions.serialize) reads the escalation snapshot, a room above this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from storage.models import Action

# Where the person's name replaces the stored level word in `decision.by.name`: the policy's
# owner (autonomous) and a default at a person's level. At leadership `by` stands for the level.
PERSON_LEVELS = ("owner", "secondary")


class Person(NamedTuple):
    """Someone a policy names, as Slack knows them (bot.delivery.directory.people)."""

    user_id: str | None  # None: Slack does not know this email
    name: str | None  # None: not known (yet)


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def decision_json(action: Action) -> dict[str, Any] | None:
    """As recorded: `by` is what the decision stored (an email when the policy named one; see
    `with_person`, applied where the answer is read)."""
    if action.accountability is None:
        return None
    return {
        "outcome": action.outcome,
        "by": {"slack_user_id": action.decided_by, "name": action.decided_by_name},
        "accountability": action.accountability,
        "level": action.decision_level,
        "via": action.decision_via,
        "at": iso(action.decided_at),
        "reason": action.decision_reason,
    }


def _is_user(spec: str) -> bool:
    return spec[:1] in ("U", "W") and spec.isalnum()


def _names_person(decision: Mapping[str, Any]) -> bool:
    """Whether `by.name` should be the person's name rather than the stored one: the stored one is
    the level word ("owner") for a policy decision and a default, and a real name for a response."""
    return decision.get("accountability") == "policy" or (
        decision.get("accountability") == "default" and decision.get("level") in PERSON_LEVELS)


def decider_spec(decision: Mapping[str, Any] | None) -> str | None:
    """Whom `with_person` needs looked up for this decision: an email (SPEC's `by` is a Slack user
    id), or a user id whose name replaces the level word. None: the decision is shown as stored."""
    by = (decision or {}).get("by") or {}
    spec = by.get("slack_user_id")
    if not isinstance(spec, str) or not spec:
        return None
    if "@" in spec or (_names_person(decision or {}) and _is_user(spec)):
        return spec
    return None


def with_person(decision: dict[str, Any] | None, people: Mapping[str, Person]) -> dict[str, Any] | None:
    """`decision` with `by` as SPEC gives it: the Slack user id an email resolved to (the email
    when Slack does not know it), and the person's name where the stored one is a level word."""
    spec = decider_spec(decision)
    person = people.get(spec) if spec else None
    if decision is None or person is None:
        return decision
    by = dict(decision["by"])
    by["slack_user_id"] = person.user_id or by["slack_user_id"]
    if person.name and _names_person(decision):
        by["name"] = person.name
    return {**decision, "by": by}
