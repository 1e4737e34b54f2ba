"""The JSON of a decision, as SPEC's `GET /v1/actions/{id}` and the callbacks give it.

The whole action's JSON (bot.actions.serialize) reads the escalation snapshot, a room above this one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.models import Action


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def decision_json(action: Action) -> dict[str, Any] | None:
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
