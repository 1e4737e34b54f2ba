"""The decision rules themselves, pure (no database, no Slack): which responses an action still
takes and what each one makes of it. bot.actions.decisions applies them; the Block Kit builders
read them to draw only the buttons that can still work."""

from __future__ import annotations

from typing import Literal

from storage.models import Action

ResponseKind = Literal["approve", "override", "acknowledge"]

# (kind of action, response) -> resulting status (and outcome)
OUTCOMES: dict[tuple[str, str], str] = {
    ("proposed", "approve"): "approved",
    ("proposed", "override"): "denied",
    ("executed", "acknowledge"): "acknowledged",
    ("executed", "override"): "overridden",
}


def allowed_responses(action: Action) -> list[str]:
    """What may still be answered: nothing once decided; approve or acknowledge (by kind), or override."""
    if action.status != "pending":
        return []
    return ["approve", "override"] if action.kind == "proposed" else ["acknowledge", "override"]
