"""A batch's new actions' first escalation steps, and their escalation state set before the INSERT.

A brand-new pending action pages its first level(s) at once (bot.escalation.paging.advance) and
gets its `level` and `next_at`. Set after the actions' INSERT, that state was an ORM UPDATE of
every new action at commit (a unit of work, ~4 % of the writer's CPU). In the usual case (every
step due at submission is a page to a configured target, and nothing more is due after them) the
state is known before the INSERT, so it goes into the INSERT; `advance` still runs and sets the
same values, and `forget_settled` then drops the rows it left unchanged from the session, so no
UPDATE is sent. Any other case (a page with no target fails closed, a timeout of 0, ...) keeps the
UPDATE: whatever `advance` decides is what is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm.attributes import instance_state

from bot.escalation.plan import DueStep, plan
from bot.escalation.snapshot import snapshot_of
from storage.models import Action
from storage.queries import ingest


def plan_ahead(actions: dict[int, Action | None], now: dict[int, datetime]) -> dict[int, tuple[DueStep, ...]]:
    """The steps due at once for each new pending action (by index); sets `level` and `next_at` of
    those whose state after paging is certain (see the module's docstring)."""
    due_at_once: dict[int, tuple[DueStep, ...]] = {}
    for i, action in actions.items():
        if action is None or action.status != "pending":
            continue
        snapshot, at = snapshot_of(action), now[i]
        chain = snapshot.chain
        due = plan(chain, action.created_at, {}, at).due
        due_at_once[i] = due
        if not all(step.kind == "page" and step.level and snapshot.target(step.level) for step in due):
            continue  # a page that fails closed brings the next level forward: let advance decide
        after = plan(chain, action.created_at, {step.key: at for step in due}, at)
        if after.due:
            continue
        # Straight into the row's fields, as storage.rows.new_row filled them: the object is not
        # in the session yet (SQLModel's __setattr__ cost ~15 us a field).
        fields = action.__dict__
        if due:  # advance's `reached`: the last level paged
            fields["level"] = due[-1].level
        fields["next_at"] = after.next_at
    return due_at_once


async def record(session: Any, actions: dict[int, Action | None], due: dict[int, tuple[DueStep, ...]],
                 now: dict[int, datetime]) -> dict[int, set[str]]:
    """The steps due at once (the owner's page), for every new action in one INSERT (after the
    actions' INSERT: they refer to them); action id -> the step keys recorded."""
    rows: list[tuple[int, str, str | None, datetime, datetime]] = []
    for i, steps in due.items():
        action = actions[i]
        assert action is not None and action.id is not None
        rows.extend((action.id, step.key, step.level, step.at, now[i]) for step in steps)
    recorded: dict[int, set[str]] = {}
    for action_id, key in await ingest.record_first_steps(session, rows):
        recorded.setdefault(action_id, set()).add(key)
    return recorded


def forget_settled(session: Any, actions: list[Action]) -> None:
    """After `advance`: a new action whose fields it set to the values inserted leaves the session,
    so the commit's flush has nothing to UPDATE (one it changed stays, and is updated as before).
    Compared by hand: SQLAlchemy's history API cost as much as the UPDATE it saved."""
    for action in actions:
        state = instance_state(action)
        now = state.dict
        if all(now.get(key) == old for key, old in state.committed_state.items()):
            session.expunge(action)
