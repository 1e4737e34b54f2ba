"""Queue App Home refreshes for the people an action concerns, in the caller's transaction.

Call `refresh_homes(session, action)` wherever an action changes for someone (a page, a decision,
a timeout). The relay renders the Home at send time (handlers.home), so it shows the state then.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery.messages import Kind, send
from bot.escalation.plan import DueStep
from bot.escalation.snapshot import snapshot_of
from storage.models import Action


def concerned(action: Action) -> list[str]:
    """The people paged so far (owner, secondary once escalated, leadership users) and the decider;
    admins are left out: their Home would refresh on every action."""
    snapshot = snapshot_of(action)
    admins = set(snapshot.admins)
    people = [p for p in snapshot.people_up_to(action.level or "owner") if p not in admins]
    if action.decided_by and action.accountability == "explicit":
        people.append(action.decided_by)
    return [p for p in dict.fromkeys(people) if p and (p[:1] in ("U", "W") or "@" in p)]


def refresh_homes(session: AsyncSession, action: Action) -> None:
    """A Kind.HOME message per person; `channel` holds the person (an email is resolved when sent)."""
    for person in concerned(action):
        send(session, Kind.HOME, channel=person, action_id=action.id, purpose="home")


def refresh_after_steps(session: AsyncSession, action: Action, fired: Sequence[DueStep]) -> None:
    """After escalation steps fired: a page or a timeout changes someone's Home; a reminder does not."""
    if any(step.kind != "remind" for step in fired):
        refresh_homes(session, action)
