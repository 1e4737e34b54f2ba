"""Queries over actions, their responses, fired escalation steps and card locations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, Agent, EscalationStep, LedgerEntry, Response, SlackMessage, utcnow
from storage.queries import trust_rollup


async def get(session: AsyncSession, action_id: int) -> Action | None:
    return await session.get(Action, action_id)


async def get_with_agent(session: AsyncSession, action_id: int) -> tuple[Action, Agent] | None:
    row = (
        await session.execute(
            select(Action, Agent)
            .join(Agent, col(Agent.id) == col(Action.agent_id))
            .where(col(Action.id) == action_id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def page(
    session: AsyncSession,
    *,
    status: str | None = None,
    service: str | None = None,
    owner: str | None = None,
    agent_id: int | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[tuple[Action, Agent]]:
    """Newest first; `before_id` is the cursor (the id of the last item of the previous page)."""
    stmt = select(Action, Agent).join(Agent, col(Agent.id) == col(Action.agent_id))
    if status:
        stmt = stmt.where(col(Action.status) == status)
    if service:
        stmt = stmt.where(col(Action.service) == service)
    if owner:
        stmt = stmt.where(col(Action.owner) == owner)
    if agent_id is not None:
        stmt = stmt.where(col(Action.agent_id) == agent_id)
    if before_id is not None:
        stmt = stmt.where(col(Action.id) < before_id)
    stmt = stmt.order_by(col(Action.id).desc()).limit(limit)
    return [(a, g) for a, g in (await session.execute(stmt)).all()]


async def count_pending(session: AsyncSession, cap: int) -> int:
    """How many actions are pending, counted up to `cap` + 1 (`ix_actions_status_id`): the cost stays
    bounded however long the queue."""
    capped = select(col(Action.id)).where(col(Action.status) == "pending").limit(cap + 1).subquery()
    return int((await session.execute(select(func.count()).select_from(capped))).scalar_one())


async def fired_steps(session: AsyncSession, action_id: int) -> dict[str, datetime]:
    rows = await session.execute(
        select(col(EscalationStep.step), col(EscalationStep.fired_at)).where(
            col(EscalationStep.action_id) == action_id)
    )
    return {step: fired for step, fired in rows.all()}


async def step_notes(session: AsyncSession, action_id: int, prefix: str) -> list[tuple[str, str | None]]:
    """(step, note) of the action's escalation steps whose name starts with `prefix`."""
    rows = await session.execute(
        select(col(EscalationStep.step), col(EscalationStep.note)).where(
            col(EscalationStep.action_id) == action_id, col(EscalationStep.step).startswith(prefix)
        )
    )
    return [(step, note) for step, note in rows.all()]


async def decide(session: AsyncSession, action_id: int, *, expect_status: str, **fields: Any) -> bool:
    """Compare-and-set: the first decision wins; False if the action was no longer `expect_status`."""
    fields.setdefault("updated_at", utcnow())
    result = await session.execute(
        update(Action)
        .where(Action.id == action_id, Action.status == expect_status)  # type: ignore[arg-type]
        .values(version=Action.version + 1, **fields)
        .returning(col(Action.created_at))
        .execution_options(synchronize_session=False)
    )
    created = result.scalar_one_or_none()
    if created is None:
        return False
    # A decision or an expiry on an earlier day than the action's: that day's rollup is stale now.
    await trust_rollup.mark(session, created, fields.get("decided_at") or fields["updated_at"])
    return True


async def add_response(session: AsyncSession, response: Response) -> Response:
    session.add(response)
    await session.flush()
    return response


async def responses(session: AsyncSession, action_id: int) -> list[Response]:
    rows = await session.execute(
        select(Response).where(col(Response.action_id) == action_id).order_by(col(Response.id))
    )
    return list(rows.scalars())


async def ledger_entries(session: AsyncSession, action_id: int) -> list[LedgerEntry]:
    """The action's ledger entries, in chain order (its timeline)."""
    entries = await session.execute(
        select(LedgerEntry).where(LedgerEntry.action_id == action_id).order_by(LedgerEntry.seq)  # type: ignore[arg-type]
    )
    return list(entries.scalars())


async def slack_messages(session: AsyncSession, action_id: int) -> list[SlackMessage]:
    rows = await session.execute(select(SlackMessage).where(col(SlackMessage.action_id) == action_id))
    return list(rows.scalars())


async def remember_messages(session: AsyncSession, cards: list[tuple[int, str]], channel: str, ts: str) -> None:
    """Where several cards (action id, purpose) now live: one message (a pack, or one card). One
    read for all of them, whatever their number."""
    if not cards:
        return
    stmt = select(SlackMessage).where(col(SlackMessage.action_id).in_({a for a, _ in cards}))
    existing = {(m.action_id, m.purpose): m for m in (await session.execute(stmt)).scalars()}
    for action_id, purpose in cards:
        found = existing.get((action_id, purpose))
        if found is None:
            session.add(SlackMessage(action_id=action_id, purpose=purpose, channel=channel, ts=ts))
        else:
            found.channel, found.ts = channel, ts
            session.add(found)


async def remember_message(
    session: AsyncSession, action_id: int, purpose: str, channel: str, ts: str
) -> None:
    existing = (
        await session.execute(
            select(SlackMessage).where(col(SlackMessage.action_id) == action_id,
                                       col(SlackMessage.purpose) == purpose)
        )
    ).scalar_one_or_none()
    if existing is None:
        session.add(SlackMessage(action_id=action_id, purpose=purpose, channel=channel, ts=ts))
    else:
        existing.channel, existing.ts = channel, ts
        session.add(existing)
